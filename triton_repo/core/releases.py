"""The NGC release the gpu target is pinned to, and what each release ships: the only table of it.

A TensorRT plan runs only on the TensorRT version that built it (unless built version-compatible), so the
engines are built in `nvcr.io/nvidia/tensorrt:YY.MM-py3` and served by `nvcr.io/nvidia/tritonserver:YY.MM-py3`
of the same release, named once in `.env` (TRITON_RELEASE=YY.MM) and read by docker compose and by this
module. Same-tag TensorRT and tritonserver containers ship the same TensorRT (a Triton maintainer in
triton-inference-server/server#5812: "The corresponding TensorRT container of the same NGC version should
always have a compatible TensorRT version").

Sources for the table (checked when it was written; add a row only with a source):
- Triton server version per container: the GitHub release titles, e.g. "Release 2.59.0 corresponding to
  NGC container 25.06" (https://github.com/triton-inference-server/server/releases/tag/v2.59.0), and
  build.py's DEFAULT_TRITON_VERSION_MAP (2.56.0 <-> 25.03), so 2.54.0 <-> 25.01.
- TensorRT per container: NVIDIA's Frameworks Support Matrix and container release notes
  (https://docs.nvidia.com/deeplearning/frameworks/support-matrix/index.html) are the authority. What was
  reachable when this table was written: the Triton docs' "Release Compatibility Matrix"
  (https://docs.nvidia.com/deeplearning/triton-inference-server/user-guide/docs/introduction/compatibility.html)
  lists 10.8.0.43 for 25.01 (its trtllm-python-py3 table), and public projects pinning
  nvcr.io/nvidia/tensorrt:25.01-py3 and :25.06-py3 record TensorRT 10.8.0.43 and 10.11.0.33.
- ONNX Runtime in the tritonserver image: the same compatibility page's "ONNX Runtime Versions" table.
The engines service also compares `tensorrt.__version__` with this table before building, so a wrong row
stops the build with a message naming this file instead of producing plans the server cannot load.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from triton_repo.core.errors import TritonRepoError

ENV_FILE = Path(".env")
ENV_KEY = "TRITON_RELEASE"


@dataclass(frozen=True)
class Release:
    name: str  # YY.MM, the NGC tag
    triton: str  # Triton Inference Server version in the tritonserver image
    tensorrt: str  # TensorRT in both the tensorrt and the tritonserver image of this release
    onnxruntime: str  # ONNX Runtime of the tritonserver image's onnxruntime backend

    @property
    def tritonserver_image(self) -> str:
        return f"nvcr.io/nvidia/tritonserver:{self.name}-py3"

    @property
    def tensorrt_image(self) -> str:
        return f"nvcr.io/nvidia/tensorrt:{self.name}-py3"


RELEASES: dict[str, Release] = {
    release.name: release
    for release in (
        Release("25.01", triton="2.54.0", tensorrt="10.8.0.43", onnxruntime="1.20.1"),
        Release("25.06", triton="2.59.0", tensorrt="10.11.0.33", onnxruntime="1.22.0"),
    )
}


def release(name: str) -> Release:
    """The table row for `name` (YY.MM); a release without a row is refused, naming the known ones."""
    if name not in RELEASES:
        raise TritonRepoError(
            f"NGC release {name!r} is not in triton_repo/core/releases.py (known: {', '.join(RELEASES)}); "
            "add its row with the TensorRT version from the NGC release notes, or pin a known release in .env"
        )
    return RELEASES[name]


def read_pinned_release(env_file: Path = ENV_FILE) -> Release:
    """The release named by `TRITON_RELEASE=YY.MM` in `.env` (the one docker compose reads)."""
    if not env_file.is_file():
        raise TritonRepoError(f"{env_file}: missing; it pins the NGC release (a line {ENV_KEY}=YY.MM)")
    values = []
    for number, line in enumerate(env_file.read_text().splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        key, sep, value = stripped.partition("=")
        if sep and key.strip() == ENV_KEY:
            values.append((number, value.strip().strip("'\"")))
    if len(values) != 1:
        found = "no" if not values else f"{len(values)} (lines {', '.join(str(n) for n, _ in values)})"
        raise TritonRepoError(f"{env_file}: expected exactly one {ENV_KEY}=YY.MM line, found {found}")
    number, value = values[0]
    if not re.fullmatch(r"\d{2}\.\d{2}", value):
        raise TritonRepoError(
            f"{env_file}:{number}: {ENV_KEY}={value!r} is not an NGC release tag like 25.06"
        )
    return release(value)


def _numbers(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version)[:4])


def plan_runs_on(built_with: str, runtime: str, version_compatible: bool) -> str | None:
    """Why a plan built with TensorRT `built_with` cannot run on `runtime`, or None when it can.

    A plan loads only on the exact TensorRT that built it; a version-compatible plan (TensorRT >= 8.6)
    also on any later runtime.
    """
    built, run = _numbers(built_with), _numbers(runtime)
    if built == run:
        return None
    if not version_compatible:
        return (
            f"built with TensorRT {built_with}, the server runs {runtime}; a plan loads only on the TensorRT "
            "that built it: rebuild it in the engines service of the pinned release (make engines)"
        )
    if built < (8, 6):
        return f"built with TensorRT {built_with}; version compatibility needs TensorRT 8.6 or later"
    if built > run:
        return (
            f"version-compatible plan built with TensorRT {built_with} cannot run on the older {runtime}: "
            "rebuild it with the pinned release's TensorRT (make engines)"
        )
    return None
