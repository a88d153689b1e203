"""`triton-repo init SOURCE [FOLDER]`: a model folder from a model file, checked before anything is
written, and never over a user's file."""

from __future__ import annotations

import dataclasses
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from triton_repo.builders.scaffold.hugging_face import FOLDER, HfModel, read_folder
from triton_repo.builders.scaffold.propose import Proposal, propose_metric
from triton_repo.builders.scaffold.record import ModelProbe
from triton_repo.builders.scaffold.states import find_states
from triton_repo.builders.scaffold.torch_source import (
    CHECKPOINT_SUFFIXES,
    FactoryRef,
    GivenInput,
    TorchModel,
    export_for_probe,
    parse_factory,
)
from triton_repo.builders.scaffold.write_spec import SpecExtras, model_py, spec_yaml
from triton_repo.core.errors import SpecError, TritonRepoError

WRITTEN = ("model.yaml", "model.py")
LINK_ABOVE = 1 << 20  # files this large are hard-linked into the model folder where they can be


@dataclass(frozen=True)
class Initialised:
    folder: Path
    name: str
    probe: ModelProbe
    proposal: Proposal
    files: tuple[Path, ...]
    notes: tuple[str, ...] = ()  # how a PyTorch source was built, run and exported
    stateful: bool = False  # written with a sequence section: checked on streams, no accuracy gate yet


GENERIC_STEMS = {"model", "inference", "infer", "network", "net", "export", "exported", "onnx"}
GENERIC_STEMS |= {"checkpoint", "weights", "best", "last", "pytorch_model", "state_dict", "final"}


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


@dataclass(frozen=True)
class _Source:
    """What init was given: an ONNX file; a PyTorch factory (FILE.py:FUNCTION) and its checkpoint; or a
    Hugging Face folder, served through a factory init writes."""

    named_by: Path  # the file the model is named after
    onnx: Path | None = None
    factory: FactoryRef | None = None
    checkpoint: Path | None = None
    hf: HfModel | None = None

    def files(self) -> dict[str, Path]:
        """{name in the model folder: the user's file or folder}."""
        if self.onnx is not None:
            return {"model.onnx": self.onnx}
        if self.hf is not None:
            return {FOLDER: self.hf.folder}
        files = {self.factory_module + ".py": self.factory.file}
        if self.checkpoint is not None:
            files[self.checkpoint.name] = self.checkpoint
        return files

    def generated(self) -> dict[str, str]:
        """{name in the model folder: text} init writes besides model.yaml and model.py."""
        if self.hf is None:
            return {}
        files = {"network.py": self.hf.network_py}
        if self.hf.labels:
            files["labels.txt"] = "\n".join(self.hf.labels) + "\n"
        return files

    @property
    def factory_module(self) -> str:
        if self.hf is not None:
            return "network"
        stem = self.factory.file.stem
        return "network" if stem == "model" else stem  # model.py is the data stub

    @property
    def function(self) -> str:
        return "build" if self.hf is not None else self.factory.function

    @property
    def note(self) -> str:
        if self.onnx is not None:
            return self.onnx.name
        if self.hf is not None:
            return f"the Hugging Face folder {self.hf.folder.name} ({self.hf.architecture or self.hf.task})"
        note = f"{self.factory.file.name}:{self.factory.function}"
        return note + (f" with {self.checkpoint.name}" if self.checkpoint is not None else "")


def init_model(
    source: Path,
    folder: Path | None,
    models_dir: Path,
    seconds: float = 60,
    factory: str | None = None,
    inputs: tuple[GivenInput, ...] = (),
) -> Initialised:
    """Probe `source`, write FOLDER/model.yaml, model.py and the model's files (default folder:
    models_dir/<name>), after loading the spec and the data stub's sample as `build` will."""
    given = _readable(source, factory, inputs)
    name = model_name(given.named_by, folder)
    if folder is not None and folder.name != name:
        raise SpecError(
            f"{folder}: a spec is named as its folder, and '{folder.name}' is not a model name (lowercase "
            f"letters, digits and _, starting with a letter): use {folder.with_name(name)}"
        )
    folder = folder if folder is not None else models_dir / name
    _refuse_overwrite(folder, {**given.files(), **dict.fromkeys(given.generated(), None)})
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{name}-init-", dir=folder.parent) as scratch:
        draft = Path(scratch) / name  # a spec must be named as its folder
        draft.mkdir()
        probe, entry, notes = _probe_in(given, draft, seconds, inputs)
        if probe.runs and all(run.error for run in probe.runs):
            raise SpecError(
                f"{source}: the model did not run at any size tried ({probe.runs[0].error}); nothing was "
                "written: `triton-repo inspect` shows every run"
            )
        probe, states = find_states(probe)
        proposal = propose_metric(probe)
        extras = _extras(given.hf, probe) if states is None else SpecExtras(states=states)
        (draft / "model.yaml").write_text(spec_yaml(name, entry, probe, proposal, given.note, extras))
        (draft / "model.py").write_text(model_py(name, given.note, probe, extras.text, states))
        _check_draft(draft)
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        for file_name in (*WRITTEN, *given.files(), *given.generated()):
            target = folder / file_name
            if target.exists():  # the same model file, already in the folder
                continue
            (draft / file_name).rename(target)
            written.append(target)
        (folder / "data").mkdir(exist_ok=True)  # where model.py reads the user's examples
    notes = (*given.hf.notes, *notes) if given.hf is not None else notes
    notes = (*notes, states.note) if states is not None else notes
    return Initialised(folder, name, probe, proposal, tuple(written), notes, states is not None)


def inspect_source(
    source: Path, seconds: float = 60, factory: str | None = None, inputs: tuple[GivenInput, ...] = ()
) -> tuple[ModelProbe, tuple[str, ...]]:
    """What init learns from a PyTorch source or a Hugging Face folder (`inspect`), in a scratch folder
    removed after: the probe (states found) and how the source was read."""
    given = _readable(source, factory, inputs)
    with tempfile.TemporaryDirectory(prefix="triton-repo-inspect-") as scratch:
        draft = Path(scratch) / "model"
        draft.mkdir()
        probe, _, notes = _probe_in(given, draft, seconds, inputs)
    probe, states = find_states(dataclasses.replace(probe, source=source))
    hf = given.hf.notes if given.hf is not None else ()
    return probe, (*hf, *notes, *((states.note,) if states else ()))


def _probe_in(given: _Source, draft: Path, seconds: float, inputs: tuple[GivenInput, ...]):
    """_probe with the source's files in `draft` (the model folder to be), scratch files beside it."""
    for file_name, path in given.files().items():
        _link_or_copy(path, draft / file_name)
    for file_name, text in given.generated().items():
        (draft / file_name).write_text(text)
    hinted = bool(inputs)  # sizes the user gave are tried first and preferred as opt
    if given.hf is not None and not inputs:
        inputs = given.hf.inputs
    return _probe(given, draft, draft.parent, seconds, inputs, hinted)


def _probe(
    given: _Source, draft: Path, scratch: Path, seconds: float, inputs: tuple[GivenInput, ...], hinted: bool
):
    """The probe record, the spec's source entry and notes on how the source was read."""
    from triton_repo.builders.scaffold.probe import probe_onnx

    if given.onnx is not None:
        return probe_onnx(draft / "model.onnx", seconds), {"onnx": "model.onnx"}, ()
    checkpoint = given.checkpoint.name if given.checkpoint is not None else None
    module, function = given.factory_module, given.function
    timeout = max(seconds, 120.0)
    onnx_path = scratch / "probe.onnx"
    names = (given.hf.output,) if given.hf is not None else ()
    model = TorchModel(draft, module, function, checkpoint, inputs, names)
    exported = export_for_probe(model, onnx_path, timeout)
    probe = probe_onnx(onnx_path, seconds, exported.examples if hinted else None)
    notes = exported.notes
    fixed = _fixed_by_export(exported, probe)
    if fixed and exported.exporter == "torchscript":  # the tracer baked a size in: try the dynamo exporter
        try:
            retried = export_for_probe(model, onnx_path, timeout, ("dynamo",))
        except SpecError:
            retried = None
        hints = retried.examples if hinted and retried is not None else None
        second = probe_onnx(onnx_path, seconds, hints) if retried is not None else None
        if second is not None and len(_fixed_by_export(retried, second)) < len(fixed):
            note = f"the TorchScript export fixed {', '.join(fixed)}, which ran at several sizes in PyTorch: "
            exported, probe, notes = retried, second, (*retried.notes, note + "exported with dynamo")
        else:
            notes = (*notes, f"{', '.join(fixed)} ran at several sizes in PyTorch, but not once exported")
    elif fixed:
        notes = (*notes, f"{', '.join(fixed)} ran at several sizes in PyTorch, but not once exported")
    probe = _as_exported(probe)
    entry = {"factory": f"{module}:{function}"}
    if checkpoint is not None:
        entry["checkpoint"] = checkpoint
    if exported.exporter != "torchscript":
        entry.update(exporter=exported.exporter, opset=exported.opset)
    return probe, entry, notes


def _as_exported(probe: ModelProbe) -> ModelProbe:
    """The probe's words for a file it read, said of init's own export of the PyTorch model."""

    def said(text: str) -> str:
        return text.replace("' in the file)", "' in init's export)")

    axes = {name: dataclasses.replace(axis, why=said(axis.why)) for name, axis in probe.axes.items()}
    return dataclasses.replace(probe, axes=axes, notes=tuple(said(note) for note in probe.notes))


def _fixed_by_export(exported, probe: ModelProbe) -> list[str]:
    """Input dims PyTorch ran at two sizes that the exported graph takes at one size only."""
    tensors = {tensor.name: tensor for tensor in probe.inputs}
    fixed = []
    for name, index in exported.places:
        dims = tensors[name].dims if name in tensors else ()
        dim = dims[index] if index < len(dims) else None
        axis = probe.axes.get(dim) if isinstance(dim, str) else None
        if axis is None or axis.min == axis.max:
            fixed.append(f"dim {index} of {name}")
    return fixed


def _readable(source: Path, factory: str | None, inputs: tuple[GivenInput, ...]) -> _Source:
    text = str(source)
    if factory is None and ":" in text and text.rpartition(":")[0].endswith(".py"):
        ref = parse_factory(text)  # SOURCE is FILE.py:FUNCTION: a network that holds its own weights
        return _Source(ref.file, factory=ref)
    if not source.exists():
        raise SpecError(
            f"{source}: no such file; give an ONNX file, a PyTorch checkpoint with --factory, or "
            "FILE.py:FUNCTION"
        )
    if source.is_dir():
        if (source / "config.json").is_file():
            return _hugging_face(source)
        raise SpecError(f"{source}: a folder; give the model file itself (an .onnx file or a checkpoint)")
    if source.suffix.lower() in CHECKPOINT_SUFFIXES:
        if factory is None:
            raise SpecError(
                f"{source}: a PyTorch checkpoint holds weights, not the network: give the code that builds "
                "it with --factory FILE.py:FUNCTION (init loads the weights into what it returns)"
            )
        return _Source(source, factory=parse_factory(factory), checkpoint=source)
    if factory is not None or inputs:
        option = "--factory" if factory is not None else "--input"
        raise SpecError(f"{source}: {option} is for a PyTorch source (a checkpoint or FILE.py:FUNCTION)")
    return _Source(source, onnx=source)


def _hugging_face(source: Path) -> _Source:
    return _Source(source, hf=read_folder(source))


def _extras(hf: HfModel | None, probe: ModelProbe) -> SpecExtras:
    """What a Hugging Face folder adds: class names, a text or image ensemble, text data for the stub."""
    if hf is None:
        return SpecExtras()
    outputs = {tensor.name for tensor in probe.outputs}
    labels = {hf.output: "labels.txt"} if hf.labels and hf.output in outputs else {}
    if hf.image is not None and probe.batched:
        step = {"kind": "image", "output": "pixel_values", **hf.image}
        ensemble = {"preprocess": step, "samples": "model:images"}
        return SpecExtras(
            labels, ensemble, "takes encoded images (PNG, JPEG), as preprocessor_config.json says"
        )
    if hf.tokenizer is None or not probe.batched:
        return SpecExtras(labels)
    step = {"kind": "tokenize", "tokenizer": hf.tokenizer, "ids": "input_ids", "mask": "attention_mask"}
    if hf.pad_id:
        step["pad_id"] = hf.pad_id
    axis = next((probe.axes[d] for t in probe.inputs for d in t.dims[1:] if d in probe.axes), None)
    text = {"tokenizer": hf.tokenizer, "ids": "input_ids", "mask": "attention_mask", "pad_id": hf.pad_id}
    text["max"] = axis.max if axis is not None else 128
    why = f"takes text (one string per batch row), tokenized with {hf.tokenizer}"
    return SpecExtras(labels, {"preprocess": step, "samples": "model:texts"}, why, text)


def _refuse_overwrite(folder: Path, files: dict[str, Path | None]) -> None:
    for file_name in WRITTEN:
        if (folder / file_name).exists():
            raise SpecError(
                f"{folder / file_name} exists; init never overwrites your files: give another folder, "
                "or move it away"
            )
    for file_name, path in files.items():
        existing = folder / file_name
        if existing.exists() and (path is None or path.is_dir() or not _same_file(existing, path)):
            raise SpecError(f"{existing} exists and is another file; give another folder")


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    from triton_repo.core.fingerprint import sha256_file

    return sha256_file(a) == sha256_file(b)


def _link_or_copy(source: Path | str, target: Path | str) -> None:
    source, target = Path(source), Path(target)  # copytree passes str
    if source.is_dir():  # a Hugging Face folder: its files linked where they can be
        shutil.copytree(source, target, copy_function=_link_or_copy)
        return
    if source.stat().st_size >= LINK_ABOVE:  # weights: linked, not duplicated
        try:
            target.hardlink_to(source)
            return
        except OSError:
            pass
    shutil.copy2(source, target)  # code and configs: copied, so editing one never edits the other


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
