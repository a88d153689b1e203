"""The python-backend model of a cpu version folder: the shared template as model.py, and beside it the
runtime files it imports (registry.RUNTIMES lists them per runtime), copied byte for byte from
triton_repo/runtimes/, so the served model runs the loader and runner the build measured the artifact
with. The manifest hashes them with the rest of the version.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from triton_repo.core.errors import TritonRepoError
from triton_repo.runtimes.registry import entry_of

TEMPLATE = "onnx_model.py"
MODEL_FILE = "model.py"


def python_model_files(runtime: str) -> dict[str, bytes]:
    """Each file of a version folder served with `runtime` (onnxruntime, openvino) by the python backend,
    other than the model's data: model.py and the runtime's files, by name."""
    try:
        entry = entry_of(runtime)
    except ValueError as error:
        raise TritonRepoError(f"staging a cpu model: {error} (a bug)") from None
    template = resources.files("triton_repo.repo") / "templates" / TEMPLATE
    shipped = resources.files("triton_repo.runtimes")
    return {
        MODEL_FILE: template.read_bytes(),
        **{name: (shipped / name).read_bytes() for name in entry.files},
    }


def write_python_model(version_dir: Path, runtime: str) -> list[str]:
    """Write model.py and the runtime files beside it into `version_dir`; their names."""
    files = python_model_files(runtime)
    for name, content in files.items():
        (version_dir / name).write_bytes(content)
    return list(files)
