"""Write Triton model directories into a staging area, validate them, then publish atomically.

A model directory appears in the repository complete or not at all: it is built beside the repository
(same filesystem), checked, and renamed into place; an existing one is swapped with renameat2's
RENAME_EXCHANGE, so a server scanning the repository never sees a half-written model.
"""

from __future__ import annotations

import ctypes
import datetime
import json
import os
import shutil
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from builders.fingerprint import sha256_file
from builders.golden import GoldenCase, load_golden, sample_case, save_golden
from builders.onnx_runtime import cpu_session
from builders.repository.config import (
    ONNX_FILE,
    WARMUP_DIR,
    cpu_model_config,
    parse_config,
    to_text,
    warmup_rows,
)
from builders.verify import compare
from triton_repo.errors import CheckFailed, TritonRepoError
from triton_repo.spec import LoadedSpec, Tolerance

MANIFEST = "manifest.json"
GOLDEN_FILE = "golden.npz"
VERSION = "1"


@dataclass(frozen=True)
class StagedModel:
    name: str  # the Triton model name, e.g. digits_fp32
    source_model: str  # the spec's name, e.g. digits
    precision: str
    path: Path  # the directory in the staging area
    manifest_entry: dict = field(hash=False)


def staging_root(repository: Path) -> Path:
    """Beside the repository, so that publishing is a rename on one filesystem."""
    return repository.resolve().parent / f".{repository.resolve().name}.staging"


def stage_cpu_model(
    loaded: LoadedSpec,
    precision: str,
    onnx_path: Path,
    sample: GoldenCase,
    tolerances: dict[str, Tolerance],
    staging: Path,
) -> StagedModel:
    """<name>_<precision>: config.pbtxt, 1/model.onnx, 1/model.py (shared template), 1/golden.npz, warmup/.

    `sample` holds the golden inputs and the outputs this artifact must produce when served; `tolerances`
    are the per-output limits `triton-repo infer` checks them with.
    """
    spec = loaded.spec
    name = f"{spec.name}_{precision}"
    model_dir = new_model_dir(staging, name)
    version_dir = model_dir / VERSION
    shutil.copyfile(onnx_path, version_dir / ONNX_FILE)
    template = resources.files("builders.repository") / "templates" / "onnxruntime_model.py"
    (version_dir / "model.py").write_text(template.read_text())
    save_golden([sample], version_dir / GOLDEN_FILE)  # what `triton-repo infer` sends and expects
    rows = warmup_rows(loaded, sample.inputs)
    (model_dir / WARMUP_DIR).mkdir()
    for input_name, row in rows.items():
        (model_dir / WARMUP_DIR / input_name).write_bytes(row.tobytes())
    config = cpu_model_config(loaded, name, rows)
    (model_dir / "config.pbtxt").write_text(to_text(config))
    validate_staged(loaded, model_dir, config, tolerances)
    entry = {
        "source_model": spec.name,
        "precision": precision,
        "spec": str(loaded.path),
        "version": int(VERSION),
        "golden": f"{VERSION}/{GOLDEN_FILE}",
        "tolerances": {o: {"atol": t.atol, "rtol": t.rtol} for o, t in tolerances.items()},
        "files": file_hashes(model_dir),
    }
    return StagedModel(name, spec.name, precision, model_dir, entry)


def new_model_dir(staging: Path, name: str) -> Path:
    """An empty staged model directory with its version directory (a leftover one is removed)."""
    model_dir = staging / name
    if model_dir.exists():
        shutil.rmtree(model_dir)
    (model_dir / VERSION).mkdir(parents=True)
    return model_dir


def file_hashes(model_dir: Path) -> dict[str, str]:
    """sha256 of every file below a model directory, by relative path: what the manifest records."""
    return {
        str(p.relative_to(model_dir)): sha256_file(p) for p in sorted(model_dir.rglob("*")) if p.is_file()
    }


def served_tolerances(loaded: LoadedSpec, precision: str) -> dict[str, Tolerance]:
    """fp32: each output's own tolerance; lower precisions: the larger of that and the precision's."""
    spec = loaded.spec
    tolerances = {}
    for output in spec.outputs:
        own = output.tolerance
        wider = spec.precision.tolerances.get(precision) if precision != "fp32" else None
        tolerances[output.name] = (
            own
            if wider is None
            else Tolerance(atol=max(own.atol, wider.atol), rtol=max(own.rtol, wider.rtol))
        )
    return tolerances


def validate_staged(loaded: LoadedSpec, model_dir: Path, config, tolerances: dict[str, Tolerance]) -> None:
    """The staged directory must parse back to the same config and its ONNX must reproduce the golden sample."""
    parsed = parse_config(model_dir / "config.pbtxt")
    if parsed != config:
        raise TritonRepoError(f"{model_dir}/config.pbtxt does not parse back to the generated config (a bug)")
    for warmup in parsed.model_warmup:
        for input_name, data in warmup.inputs.items():
            path = model_dir / WARMUP_DIR / data.input_data_file
            tensor = next(t for t in loaded.spec.inputs if t.name == input_name)
            expected = int(np.prod(data.dims)) * np.dtype(tensor.dtype).itemsize
            if not path.is_file() or path.stat().st_size != expected:
                raise TritonRepoError(f"{path}: warmup file missing or not {expected} bytes (a bug)")
    session = cpu_session(model_dir / VERSION / ONNX_FILE)
    sample = sample_case(load_golden(model_dir / VERSION / GOLDEN_FILE))
    names = [o.name for o in loaded.spec.outputs]
    for output, actual in zip(names, session.run(names, sample.inputs), strict=True):
        diff = compare(actual, sample.outputs[output], tolerances[output])
        if not diff.passed:
            raise CheckFailed(
                f"{model_dir.name}: staged ONNX output '{output}' differs from golden: max abs diff {diff.max_abs:.3g}"
            )


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two directories (Linux renameat2). False when the kernel or libc lacks it."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except AttributeError:
        return False
    result = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    return result == 0


def publish(
    staged: list[StagedModel], repository: Path, tool_versions: dict[str, str], retire: tuple[str, ...] = ()
) -> list[str]:
    """Move each staged model into the repository atomically, then rewrite the repository manifest.

    A model whose files are identical to the published ones is left alone. Models named in `retire`
    (variants a build refused) are removed, so a server never keeps serving one that no longer passes.
    Returns the names published.
    """
    repository.mkdir(parents=True, exist_ok=True)
    manifest_path = repository / MANIFEST
    manifest = read_manifest(repository) if manifest_path.is_file() else {"format": 1, "models": {}}
    changed = [
        model
        for model in staged
        if manifest["models"].get(model.name, {}).get("files") != model.manifest_entry["files"]
        or not (repository / model.name).is_dir()
    ]
    for model in changed:
        target = repository / model.name
        if not target.exists():
            model.path.rename(target)
        elif _exchange(model.path, target):
            shutil.rmtree(model.path)  # now holds the previous directory
        else:
            previous = model.path.with_name(model.name + ".old")
            target.rename(previous)
            model.path.rename(target)
            shutil.rmtree(previous)
    retired = [name for name in retire if name in manifest["models"] or (repository / name).is_dir()]
    for name in retired:
        if (repository / name).is_dir():
            gone = repository / f".{name}.retired"
            (repository / name).rename(gone)  # out of the server's sight in one step, then deleted
            shutil.rmtree(gone)
        manifest["models"].pop(name, None)
    if not changed and not retired:
        return []
    now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    for model in changed:
        manifest["models"][model.name] = {**model.manifest_entry, "published_at": now}
    manifest["tools"] = tool_versions
    tmp = manifest_path.with_name(MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    tmp.replace(manifest_path)
    return [model.name for model in changed]


def read_manifest(repository: Path) -> dict:
    path = repository / MANIFEST
    if not path.is_file():
        raise TritonRepoError(f"{path}: no repository manifest; build the repository first (make build-repo)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise TritonRepoError(
            f"{path}: not valid JSON ({error.msg} at line {error.lineno}); rebuild the repository"
        ) from None


def verify_published(repository: Path) -> int:
    """Every file of every published model must hash to what manifest.json recorded when it was
    published, and no model directory may hold a file the manifest does not list. Returns the number of
    files checked; raises TritonRepoError naming the first file that was modified, removed or added."""
    manifest = read_manifest(repository)
    checked = 0
    for model, entry in sorted(manifest["models"].items()):
        folder = repository / model
        recorded = entry.get("files", {})
        present = (
            {
                str(p.relative_to(folder))
                for p in folder.rglob("*")
                if p.is_file() and "__pycache__" not in p.parts  # the python backend compiles model.py
            }
            if folder.is_dir()
            else set()
        )
        for relative, digest in sorted(recorded.items()):
            path = folder / relative
            if relative not in present:
                problem = "is missing"
            elif sha256_file(path) != digest:
                problem = "was modified after it was published (its sha256 differs from manifest.json)"
            else:
                checked += 1
                continue
            raise TritonRepoError(f"{path} {problem}; rebuild with `make build-repo` (or restore the file)")
        extra = sorted(present - set(recorded))
        if extra:
            raise TritonRepoError(
                f"{folder / extra[0]} is not in manifest.json (added after publishing); remove it or rebuild"
            )
    return checked
