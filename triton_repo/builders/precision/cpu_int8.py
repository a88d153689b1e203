"""CPU INT8: quantize an FP32 ONNX model with ONNX Runtime (dynamic, or static QDQ calibrated on data).

Pipeline: [transformer optimizer] -> [SmoothQuant] -> [quant_pre_process, static only] -> quantize.
Exclusions name nodes of the FP32 graph. The rewrites before quantizing may fuse or rename nodes, so each
excluded name that no longer exists is mapped to the rewritten node that now computes it: the producer
of the first tensor downstream of the excluded node that survived. That node (a fusion containing the
excluded one, e.g. a fused Attention for a query MatMul) stays float; unchanged names map to themselves.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from triton_repo.builders.precision.accuracy import row_batches
from triton_repo.core.errors import TritonRepoError
from triton_repo.runtimes.onnxruntime_cpu import cpu_session

MODES = ("static", "dynamic")
OPTIMIZERS = ("bert",)


@dataclass(frozen=True)
class CpuInt8Settings:
    """`mode` "static": QDQ U8S8 with ranges calibrated once; "dynamic": activation ranges per batch at run time."""

    mode: str
    per_channel: bool = True
    optimize: str | None = None  # a transformer optimizer model type ("bert") run first, or None
    exclude_nodes: tuple[str, ...] = ()  # node names of the FP32 graph to keep in float
    op_types: tuple[str, ...] | None = None  # op types to quantize; None: the quantizer's default
    reduce_range: bool = False  # 7-bit weights (only useful on CPUs without VNNI)
    smooth_alpha: float | None = None  # SmoothQuant strength (e.g. 0.7) for MatMul inputs; needs calibration


def quantize_for_cpu(
    fp32_onnx: Path,
    output: Path,
    settings: CpuInt8Settings,
    calibration: dict[str, np.ndarray] | None,
    batch_size: int = 8,
) -> Path:
    """Write the INT8 model to `output` (one self-contained file, replaced atomically) and return it."""
    import onnx

    _check_settings(settings, calibration)
    original = onnx.load(str(fp32_onnx), load_external_data=False)
    _check_excluded(original, settings.exclude_nodes, fp32_onnx)
    output.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    handle, name = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".partial", dir=output.parent)
    os.close(handle)
    partial = Path(name)
    try:
        prepared = _prepare(fp32_onnx, work, settings, calibration, batch_size)
        graph = onnx.load(str(prepared), load_external_data=False).graph
        excluded = map_node_names(original.graph, graph, settings.exclude_nodes)
        if settings.mode == "dynamic":
            _quantize_dynamic(prepared, partial, settings, excluded)
        else:
            assert calibration is not None
            _quantize_static(prepared, partial, settings, excluded, calibration, batch_size)
        os.replace(partial, output)
    finally:
        partial.unlink(missing_ok=True)
        shutil.rmtree(work, ignore_errors=True)
    return output


def _check_settings(settings: CpuInt8Settings, calibration: dict[str, np.ndarray] | None) -> None:
    """Raise a one-line TritonRepoError for an unknown mode or optimizer, or static without data."""
    if settings.mode not in MODES:
        raise TritonRepoError(f"cpu int8: unknown mode {settings.mode!r}; use one of {', '.join(MODES)}")
    if settings.optimize is not None and settings.optimize not in OPTIMIZERS:
        raise TritonRepoError(
            f"cpu int8: unknown optimize {settings.optimize!r}; use one of {', '.join(OPTIMIZERS)} or none"
        )
    if (settings.mode == "static" or settings.smooth_alpha is not None) and not calibration:
        raise TritonRepoError(
            "cpu int8: static quantization and smooth_alpha need calibration inputs; give some or drop them"
        )


def _check_excluded(model, names: tuple[str, ...], path: Path) -> None:
    """Every excluded name must be a node of the FP32 graph."""
    present = {node.name for node in model.graph.node}
    missing = [name for name in names if name not in present]
    if missing:
        raise TritonRepoError(
            f"cpu int8: exclude_nodes {', '.join(missing)} not found in {path}; use node names of that graph"
        )


PER_CHANNEL_OPSET = 13  # DequantizeLinear's `axis` (per-channel scales) arrived in opset 13


def _per_channel_opset(source: Path, target: Path) -> Path:
    """`source` converted to opset 13 when it is older (Paddle2ONNX and older exporters write 11 or 12):
    ONNX Runtime's quantizer writes per-channel Q/DQ with an `axis` those opsets do not have."""
    import onnx
    from onnx import version_converter

    model = onnx.load(str(source), load_external_data=False)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), PER_CHANNEL_OPSET)
    if opset >= PER_CHANNEL_OPSET:
        return source
    onnx.save(version_converter.convert_version(model, PER_CHANNEL_OPSET), str(target))
    return target


def _prepare(
    fp32_onnx: Path,
    work: Path,
    settings: CpuInt8Settings,
    calibration: dict[str, np.ndarray] | None,
    batch_size: int,
) -> Path:
    """Transformer optimizer, then SmoothQuant, then ORT's pre-processing for static, each if asked."""
    current = fp32_onnx
    if settings.per_channel:
        current = _per_channel_opset(current, work / "opset13.onnx")
    if settings.optimize is not None:
        from onnxruntime.transformers.optimizer import optimize_model

        optimized = optimize_model(str(current), model_type=settings.optimize, opt_level=0, use_gpu=False)
        current = work / "optimized.onnx"
        optimized.save_model_to_file(str(current))
    if settings.smooth_alpha is not None:
        assert calibration is not None
        current = smooth(current, work / "smoothed.onnx", settings.smooth_alpha, calibration, batch_size)
    if settings.mode == "static":
        from onnxruntime.quantization.shape_inference import quant_pre_process

        prepared = work / "prepared.onnx"
        quant_pre_process(str(current), str(prepared), skip_symbolic_shape=True)
        current = prepared
    return current


def smooth(
    source: Path, target: Path, alpha: float, calibration: dict[str, np.ndarray], batch_size: int
) -> Path:
    """SmoothQuant (exact in FP32): x @ W -> (x / s) @ (s * W), s = max|x|^alpha / max|W|^(1 - alpha) per
    input channel, so that activation outliers move into the (per-channel quantized) weights."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(source))
    groups = _weight_matmuls(model.graph)
    amax = _activation_absmax(model, list(groups), calibration, batch_size)
    weights = {tensor.name: tensor for tensor in model.graph.initializer}
    for tensor, nodes in groups.items():
        arrays = [numpy_helper.to_array(weights[node.input[1]]) for node in nodes]
        amax_w = np.abs(np.concatenate(arrays, axis=1)).max(axis=1)
        scale = np.maximum(amax[tensor], 1e-5) ** alpha / np.maximum(amax_w, 1e-5) ** (1.0 - alpha)
        scale = scale.astype(np.float32)
        name = f"{tensor}/smooth"
        model.graph.initializer.append(numpy_helper.from_array(1.0 / scale, f"{name}/inverse_scale"))
        for node, array in zip(nodes, arrays, strict=True):
            weights[node.input[1]].CopyFrom(numpy_helper.from_array(array * scale[:, None], node.input[1]))
            node.input[0] = name
        first = min(list(model.graph.node).index(node) for node in nodes)
        mul = helper.make_node("Mul", [tensor, f"{name}/inverse_scale"], [name], name=name)
        model.graph.node.insert(first, mul)
    onnx.save_model(model, str(target))
    return target


def _weight_matmuls(graph) -> dict[str, list]:
    """MatMul nodes with a 2-D float weight used only by them, grouped by their (shared) activation input."""
    constants = {t.name for t in graph.initializer}
    weights = {t.name: t for t in graph.initializer if len(t.dims) == 2 and t.data_type == 1}
    uses: dict[str, int] = {}
    for node in graph.node:
        for tensor in node.input:
            uses[tensor] = uses.get(tensor, 0) + 1
    groups: dict[str, list] = {}
    for node in graph.node:
        if node.op_type != "MatMul" or node.input[0] in constants:
            continue
        if node.input[1] in weights and uses[node.input[1]] == 1:
            groups.setdefault(node.input[0], []).append(node)
    return groups


def _activation_absmax(model, tensors: list[str], calibration: dict[str, np.ndarray], batch_size: int):
    """Per-channel (last axis) max |value| of each tensor over the calibration batches."""
    import onnx

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    outputs = {output.name for output in probe.graph.output}
    probe.graph.output.extend(
        onnx.helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None)
        for t in tensors
        if t not in outputs
    )
    session = cpu_session(probe.SerializeToString())
    amax: dict[str, np.ndarray] = {}
    for batch in row_batches(calibration, batch_size):
        for tensor, value in zip(tensors, session.run(tensors, batch), strict=True):
            channel = np.abs(value.reshape(-1, value.shape[-1])).max(axis=0)
            amax[tensor] = np.maximum(amax[tensor], channel) if tensor in amax else channel
    return amax


def map_node_names(original, rewritten, names: tuple[str, ...]) -> list[str]:
    """Names in `rewritten` of the nodes that compute the `original` nodes called `names`."""
    kept = {node.name for node in rewritten.node}
    producer = {out: node.name for node in rewritten.node for out in node.output}
    consumers: dict[str, list] = {}
    for node in original.node:
        for tensor in node.input:
            consumers.setdefault(tensor, []).append(node)
    by_name = {node.name: node for node in original.node}
    mapped: list[str] = []
    for name in names:
        found = [name] if name in kept else _downstream_producers(by_name[name], consumers, producer)
        mapped.extend(found)
    return sorted(set(mapped))


def _downstream_producers(node, consumers: dict[str, list], producer: dict[str, str]) -> list[str]:
    """Producers (in the rewritten graph) of the first tensors after `node` that survived the rewrite."""
    found, seen, pending = set(), set(), list(node.output)
    while pending:
        tensor = pending.pop()
        if tensor in seen:
            continue
        seen.add(tensor)
        if tensor in producer:
            found.add(producer[tensor])
            continue
        for consumer in consumers.get(tensor, []):
            pending.extend(consumer.output)
    return sorted(found)


def _quantize_dynamic(source: Path, target: Path, settings: CpuInt8Settings, excluded: list[str]) -> None:
    """Weights INT8 (per channel if asked), activations quantized at run time to UINT8."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(source),
        str(target),
        op_types_to_quantize=list(settings.op_types) if settings.op_types else None,
        per_channel=settings.per_channel,
        reduce_range=settings.reduce_range,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=excluded,
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )


def _quantize_static(
    source: Path,
    target: Path,
    settings: CpuInt8Settings,
    excluded: list[str],
    calibration: dict[str, np.ndarray],
    batch_size: int,
) -> None:
    """QDQ, UINT8 activations (MinMax over `calibration`), INT8 weights; MatMuls only with a constant B."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    quantize_static(
        str(source),
        str(target),
        _reader(calibration, batch_size),
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=list(settings.op_types) if settings.op_types else None,
        per_channel=settings.per_channel,
        reduce_range=settings.reduce_range,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=excluded,
        calibrate_method=CalibrationMethod.MinMax,
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT, "MatMulConstBOnly": True},
    )


def _reader(calibration: dict[str, np.ndarray], batch_size: int):
    """A CalibrationDataReader over `calibration`, `batch_size` rows at a time."""
    from onnxruntime.quantization import CalibrationDataReader

    class _Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = row_batches(calibration, batch_size)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._batches, None)

    return _Batches()
