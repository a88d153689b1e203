"""`triton-repo init SOURCE [FOLDER]`: a model folder from a model file, checked before anything is
written, and never over a user's file."""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from triton_repo.builders.scaffold.propose import Proposal, propose_metric
from triton_repo.builders.scaffold.record import ModelProbe
from triton_repo.builders.scaffold.write_spec import model_py, spec_yaml
from triton_repo.core.errors import SpecError, TritonRepoError

WRITTEN = ("model.yaml", "model.py")


@dataclass(frozen=True)
class Initialised:
    folder: Path
    name: str
    probe: ModelProbe
    proposal: Proposal
    files: tuple[Path, ...]


GENERIC_STEMS = {"model", "inference", "infer", "network", "net", "export", "exported", "onnx"}


def model_name(source: Path, folder: Path | None = None) -> str:
    """A spec name: the folder's (a spec is named as its folder), else the file's stem, or its folder's
    when the stem says nothing (model.onnx); lowercase, [a-z0-9_], starting with a letter."""
    stem = source.stem.lower()
    if folder is not None:
        stem = folder.name.lower()
    elif stem.split(".")[0] in GENERIC_STEMS and source.resolve().parent.name:
        stem = source.resolve().parent.name.lower()
    name = re.sub(r"[^a-z0-9_]+", "_", stem).strip("_")
    if not name or not name[0].isalpha():
        name = f"model_{name}".rstrip("_")
    return name[:63]


def init_model(source: Path, folder: Path | None, models_dir: Path, seconds: float = 60) -> Initialised:
    """Probe `source`, write FOLDER/model.yaml, model.py and the model file (default folder:
    models_dir/<name>), after loading the spec and the data stub's sample as `build` will."""
    onnx_path = _readable(source)
    name = model_name(onnx_path, folder)
    if folder is not None and folder.name != name:
        raise SpecError(
            f"{folder}: a spec is named as its folder, and '{folder.name}' is not a model name (lowercase "
            f"letters, digits and _, starting with a letter): use {folder.with_name(name)}"
        )
    folder = folder if folder is not None else models_dir / name
    onnx_name = "model.onnx"
    _refuse_overwrite(folder, onnx_path, onnx_name)
    from triton_repo.builders.scaffold.probe import probe_onnx

    probe = probe_onnx(onnx_path, seconds)
    if probe.runs and all(run.error for run in probe.runs):
        raise SpecError(
            f"{source}: the model did not run at any size tried ({probe.runs[0].error}); nothing was "
            "written: `triton-repo inspect` shows every run"
        )
    proposal = propose_metric(probe)
    note = f"{source.name}"
    texts = {
        "model.yaml": spec_yaml(name, onnx_name, probe, proposal, note),
        "model.py": model_py(name, note, probe),
    }
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{name}-init-", dir=folder.parent) as scratch:
        draft = Path(scratch) / name  # a spec must be named as its folder
        draft.mkdir()
        for file_name, text in texts.items():
            (draft / file_name).write_text(text)
        _link_or_copy(onnx_path, draft / onnx_name)
        _check_draft(draft)
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        for file_name in (*WRITTEN, onnx_name):
            target = folder / file_name
            if target.exists():  # the same model file, already in the folder
                continue
            (draft / file_name).rename(target)
            written.append(target)
        (folder / "data").mkdir(exist_ok=True)  # where model.py reads the user's examples
    return Initialised(folder, name, probe, proposal, tuple(written))


def _readable(source: Path) -> Path:
    if not source.exists():
        raise SpecError(f"{source}: no such file; give an ONNX model file (.onnx)")
    if source.is_dir():
        if (source / "config.json").is_file():
            raise SpecError(
                f"{source}: a Hugging Face folder; init reads ONNX files for now: export it to ONNX "
                "(optimum-cli export onnx) and run init on model.onnx"
            )
        raise SpecError(f"{source}: a folder; give the model file itself (an .onnx file)")
    if source.suffix.lower() in (".pt", ".pth", ".bin", ".safetensors", ".ckpt"):
        raise SpecError(
            f"{source}: a PyTorch checkpoint holds weights, not the network; init reads ONNX files: export "
            "it to ONNX, or write the spec by hand with source.factory and source.checkpoint (docs/spec.md)"
        )
    return source


def _refuse_overwrite(folder: Path, onnx_path: Path, onnx_name: str) -> None:
    for file_name in WRITTEN:
        if (folder / file_name).exists():
            raise SpecError(
                f"{folder / file_name} exists; init never overwrites your files: give another folder, "
                "or move it away"
            )
    existing = folder / onnx_name
    if existing.exists() and not _same_file(existing, onnx_path):
        raise SpecError(f"{existing} exists and is another file; give another folder")


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    from triton_repo.core.fingerprint import sha256_file

    return sha256_file(a) == sha256_file(b)


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        target.hardlink_to(source)
    except OSError:
        shutil.copy2(source, target)


def _check_draft(draft: Path) -> None:
    """The spec loads and its sample fits the inputs, as `build` will check them; else a bug in init."""
    from triton_repo.core.references import load_arrays
    from triton_repo.core.spec import load_spec

    try:
        loaded = load_spec(draft / "model.yaml")
        load_arrays(loaded, "sample")
    except TritonRepoError as error:
        raise TritonRepoError(
            f"init wrote a spec its own check refuses ({error}); nothing was written; please report it "
            "with `triton-repo inspect --json` of this model"
        ) from None
