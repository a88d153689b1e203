"""Export stage: PyTorch -> model.onnx, plus golden.npz (inputs and FP32 PyTorch outputs per shape)."""

from __future__ import annotations

import json
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from triton_repo.builders.model_files import checked_source_onnx, load_checkpoint
from triton_repo.core.errors import SpecError
from triton_repo.core.fingerprint import folder_fingerprint, package_version, sha256_file
from triton_repo.core.golden import SAMPLE_CASE, GoldenCase, case_label, save_golden
from triton_repo.core.golden_streams import SEQUENCE_FILE, check_streams, run_streams, save_streams
from triton_repo.core.log import info
from triton_repo.core.references import inputs_at, load_arrays, load_callable
from triton_repo.core.spec import LoadedSpec

STAGE_VERSION = "export-1"  # a stateful model's export also writes sequence.npz (see core/golden_streams.py)


@dataclass(frozen=True)
class ExportResult:
    onnx_path: Path
    golden_path: Path
    cases: int
    seconds: float
    cached: bool
    fingerprint: str
    onnx_sha256: str


def _tool_versions() -> str:
    # from the packages' metadata, which is what their __version__ says: importing torch costs seconds
    return f"torch={package_version('torch')};onnx={package_version('onnx')};{STAGE_VERSION}"


def export(loaded: LoadedSpec, out_dir: Path) -> ExportResult:
    """Export the spec's model to `out_dir/model.onnx` and write `out_dir/golden.npz`.

    Skipped when `out_dir/export.json` records the same fingerprint of the model folder and tools.
    """
    start = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path, golden_path, record_path = (
        out_dir / "model.onnx",
        out_dir / "golden.npz",
        out_dir / "export.json",
    )
    # precision.yaml and tuning.yaml only steer later stages; editing them must not re-export the model.
    fingerprint = folder_fingerprint(
        loaded.folder, _tool_versions(), skip_files=frozenset({"precision.yaml", "tuning.yaml"})
    )
    if record_path.is_file() and onnx_path.is_file() and golden_path.is_file():
        record = json.loads(record_path.read_text())
        onnx_sha256 = sha256_file(onnx_path)
        if record.get("fingerprint") == fingerprint and record.get("onnx_sha256") == onnx_sha256:
            return ExportResult(onnx_path, golden_path, record["cases"], 0.0, True, fingerprint, onnx_sha256)
    record_path.unlink(missing_ok=True)

    sample = load_arrays(loaded, "sample")
    source = loaded.spec.source
    if source.factory is not None:
        module = _build_module(loaded)
        _export_torch(loaded, module, sample, onnx_path)
        run = _torch_runner(loaded, module)
    else:
        _save_single_file(loaded, checked_source_onnx(loaded), onnx_path)
        run = _onnxruntime_runner(onnx_path)
    _check_onnx(loaded, onnx_path)

    cases = [GoldenCase(SAMPLE_CASE, sample, run(sample))]
    for sizes in loaded.spec.shape_points():
        inputs = inputs_at(loaded, sample, sizes)
        cases.append(GoldenCase(case_label(sizes), inputs, run(inputs)))
    save_golden(cases, golden_path)
    if loaded.spec.sequence is not None:  # the golden streams, the state carried by the reference
        streams = check_streams(loaded, load_arrays(loaded, "sequence", check=False))
        save_streams(run_streams(loaded, streams, run), out_dir / SEQUENCE_FILE)
    onnx_sha256 = sha256_file(onnx_path)
    record = {"fingerprint": fingerprint, "onnx_sha256": onnx_sha256, "cases": len(cases)}
    record_path.write_text(json.dumps(record, indent=2))
    seconds = time.perf_counter() - start
    return ExportResult(onnx_path, golden_path, len(cases), seconds, False, fingerprint, onnx_sha256)


def _build_module(loaded: LoadedSpec):
    import torch

    module = load_callable(loaded, loaded.spec.source.factory, "source.factory")()
    if not isinstance(module, torch.nn.Module):
        raise SpecError(
            f"{loaded.path}: source.factory: {loaded.spec.source.factory} returned "
            f"{type(module).__name__}, expected a torch.nn.Module"
        )
    if loaded.spec.source.checkpoint is not None:
        how = load_checkpoint(loaded, module)
        info(f"{loaded.spec.name}: weights from {loaded.spec.source.checkpoint} ({how})")
    return module.eval().float()


def _dynamic_axes(loaded: LoadedSpec) -> dict[str, dict[int, str]]:
    spec = loaded.spec
    return {
        tensor.name: {i: dim for i, dim in enumerate(tensor.dims) if isinstance(dim, str)}
        for tensor in [*spec.inputs, *spec.outputs]
    }


def _export_torch(loaded: LoadedSpec, module, sample: dict[str, np.ndarray], onnx_path: Path) -> None:
    import torch

    spec = loaded.spec
    args = tuple(torch.from_numpy(sample[t.name]) for t in spec.inputs)
    scratch = onnx_path.parent / "export-tmp"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer warnings are noise here; verify checks every shape
            torch.onnx.export(
                module,
                args,
                str(scratch / "model.onnx"),
                input_names=[t.name for t in spec.inputs],
                output_names=[t.name for t in spec.outputs],
                dynamic_axes=_dynamic_axes(loaded),
                opset_version=spec.source.opset,
                dynamo=spec.source.exporter == "dynamo",
            )
        _save_single_file(loaded, scratch / "model.onnx", onnx_path)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


_PROTOBUF_LIMIT = 2_000_000_000


def _save_single_file(loaded: LoadedSpec, exported: Path, onnx_path: Path) -> None:
    """One self-contained model.onnx: the dynamo exporter may write weights as external data beside it.
    Weights an older exporter also lists as graph inputs are left as weights only (what clients cannot
    send anyway), since ModelOpt's AutoCast refuses a graph whose inputs change names."""
    import onnx

    model = onnx.load(str(exported), load_external_data=True)
    if model.ByteSize() > _PROTOBUF_LIMIT:
        raise SpecError(
            f"{loaded.path}: the exported model is {model.ByteSize() / 1e9:.1f} GB; models over 2 GB "
            "(ONNX external data) are not supported yet"
        )
    _drop_initializer_inputs(model)
    tmp = onnx_path.with_name("model.tmp.onnx")
    onnx.save_model(model, str(tmp), save_as_external_data=False)
    tmp.replace(onnx_path)


def _drop_initializer_inputs(model) -> None:
    """Remove graph inputs that are initializers (IR >= 4 lets a graph list weights as overridable inputs;
    IR 3 required it, so such a graph is left as it is)."""
    if model.ir_version < 4:
        return
    weights = {t.name for t in model.graph.initializer}
    kept = [value for value in model.graph.input if value.name not in weights]
    if len(kept) < len(model.graph.input):
        del model.graph.input[:]
        model.graph.input.extend(kept)


def _torch_runner(loaded: LoadedSpec, module):
    """The reference: FP32 PyTorch, no autocast, outputs mapped to the spec's output names."""
    import torch

    names = [t.name for t in loaded.spec.outputs]

    def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        args = [torch.from_numpy(inputs[t.name]) for t in loaded.spec.inputs]
        with torch.no_grad(), torch.autocast("cpu", enabled=False):
            result = module(*args)
        if isinstance(result, dict):
            values = [result[name] for name in names]
        elif isinstance(result, list | tuple):
            values = list(result)
        else:
            values = [result]
        if len(values) != len(names):
            raise SpecError(
                f"{loaded.path}: outputs: the model returns {len(values)} tensors, the spec names {names}"
            )
        return {name: value.detach().numpy().copy() for name, value in zip(names, values, strict=True)}

    return run


def _onnxruntime_runner(onnx_path: Path):
    from triton_repo.runtimes.onnxruntime_cpu import cpu_session

    session = cpu_session(onnx_path)
    names = [o.name for o in session.get_outputs()]

    def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(names, session.run(names, inputs), strict=True))

    return run


_ONNX_TO_NUMPY = {
    1: "float32",
    10: "float16",
    11: "float64",
    7: "int64",
    6: "int32",
    5: "int16",
    3: "int8",
    2: "uint8",
    9: "bool",
}


def _check_onnx(loaded: LoadedSpec, onnx_path: Path) -> None:
    """onnx.checker, then the graph's inputs and outputs must be the spec's names and dtypes."""
    import onnx

    try:
        onnx.checker.check_model(str(onnx_path))
    except onnx.checker.ValidationError as error:
        raise SpecError(f"{loaded.path}: the ONNX model is invalid: {str(error).splitlines()[0]}") from None
    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    initializers = {i.name for i in graph.initializer}
    found = {
        v.name: _ONNX_TO_NUMPY.get(v.type.tensor_type.elem_type, "other")
        for v in graph.input
        if v.name not in initializers
    }
    found_outputs = {v.name: _ONNX_TO_NUMPY.get(v.type.tensor_type.elem_type, "other") for v in graph.output}
    for kind, tensors, graph_tensors in (
        ("inputs", loaded.spec.inputs, found),
        ("outputs", loaded.spec.outputs, found_outputs),
    ):
        for tensor in tensors:
            if tensor.name not in graph_tensors:
                raise SpecError(
                    f"{loaded.path}: {kind}: '{tensor.name}' is not in the ONNX graph, which has {sorted(graph_tensors)}"
                )
            if graph_tensors[tensor.name] != tensor.dtype:
                raise SpecError(
                    f"{loaded.path}: {kind}: '{tensor.name}' is {graph_tensors[tensor.name]} in the ONNX graph, "
                    f"the spec says {tensor.dtype}"
                )
