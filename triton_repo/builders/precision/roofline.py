"""FLOPs of a model's matrix work (MatMul, Gemm, Conv) at a given input, for the report's roofline column:
achieved GFLOP/s = FLOPs / measured time, against the CPU's peak for the pair's arithmetic."""

from __future__ import annotations

from pathlib import Path

import numpy as np

MATRIX_OPS = ("MatMul", "Gemm", "Conv", "ConvTranspose")


# integer ops of quantizers that rewrite the graph instead of inserting Q/DQ
_INTEGER_OPS = (
    "MatMulInteger",
    "ConvInteger",
    "QLinearMatMul",
    "QLinearConv",
    "DynamicQuantizeLinear",
    "MatMulIntegerToFloat",
    "DynamicQuantizeMatMul",
)
# ops a quantizer may put between a DequantizeLinear and the MatMul/Conv it feeds (weight layout, type)
_PASS_THROUGH = ("Transpose", "Reshape", "Cast", "Identity", "Unsqueeze", "Squeeze", "Flatten")


def matrix_flops(fp32_onnx: Path, inputs: dict[str, np.ndarray]) -> float:
    """2 x multiply-adds of every MatMul, Gemm and Conv of the FP32 graph at `inputs`, from the shapes the
    graph really has there (the graph runs once in-process with those tensors marked as outputs)."""
    return float(sum(matrix_node_flops(fp32_onnx, inputs).values()))


def int8_fraction(node_flops: dict[str, float], quantized_onnx: Path) -> float | None:
    """The share of the FP32 graph's matrix FLOPs that a Q/DQ graph runs in INT8: a MatMul/Gemm/Conv whose
    data and weight inputs both come from a DequantizeLinear (TensorRT's rule for an INT8 kernel). None
    for a graph quantized by rewriting ops (ONNX Runtime's dynamic quantization); 0 for one a quantizer
    left without any Q/DQ."""
    import onnx

    graph = onnx.load(str(quantized_onnx), load_external_data=False).graph
    producer = {out: node for node in graph.node for out in node.output}
    if any(node.op_type in _INTEGER_OPS for node in graph.node):
        return None

    def dequantized(name: str) -> bool:
        node = producer.get(name)
        while node is not None and node.op_type in _PASS_THROUGH:
            node = producer.get(node.input[0])
        return node is not None and node.op_type == "DequantizeLinear"

    total = sum(node_flops.values())
    if not total:
        return None
    int8 = sum(
        node_flops.get(node.name, 0.0)
        for node in graph.node
        if node.op_type in MATRIX_OPS and len(node.input) > 1 and all(dequantized(i) for i in node.input[:2])
    )
    return int8 / total


def matrix_node_flops(fp32_onnx: Path, inputs: dict[str, np.ndarray]) -> dict[str, float]:
    """matrix_flops per node name. Only activations are run for their shapes: weights, whether initializers
    (also when an older exporter lists them as graph inputs) or Constant nodes (Paddle's exporter), are
    read from the file, since a runtime cannot return a constant as an output."""
    import onnx
    from polygraphy.backend.onnx import bytes_from_onnx, modify_outputs

    from triton_repo.runtimes.onnxruntime_cpu import cpu_session

    model = onnx.load(str(fp32_onnx))
    nodes = [n for n in model.graph.node if n.op_type in MATRIX_OPS]
    if not nodes:
        return {}
    constants = constant_shapes(model.graph)
    wanted = sorted({name for n in nodes for name in [*n.input, *n.output] if name and name not in constants})
    shapes = dict(constants)
    if wanted:
        session = cpu_session(bytes_from_onnx(modify_outputs(model, outputs=wanted)))
        fed = {name: value for name, value in inputs.items() if name not in constants}
        for name, value in zip(wanted, session.run(wanted, fed), strict=True):
            shapes[name] = value.shape
    return {node.name: _node_flops(node, shapes) for node in nodes}


def constant_shapes(graph) -> dict[str, tuple[int, ...]]:
    """Shapes of the graph's constant tensors: initializers and the outputs of Constant nodes."""
    shapes = {t.name: tuple(t.dims) for t in graph.initializer}
    for node in graph.node:
        if node.op_type != "Constant":
            continue
        value = next((a for a in node.attribute if a.name == "value"), None)
        if value is not None:
            shapes[node.output[0]] = tuple(value.t.dims)
        elif node.attribute and node.attribute[0].name in ("value_floats", "value_ints"):
            shapes[node.output[0]] = (len(node.attribute[0].floats or node.attribute[0].ints),)
        else:  # value_float, value_int, value_string: a scalar
            shapes[node.output[0]] = ()
    return shapes


def _node_flops(node, shapes: dict[str, tuple[int, ...]]) -> float:
    attributes = {a.name: a for a in node.attribute}
    if node.op_type == "MatMul":
        a, b = shapes[node.input[0]], shapes[node.input[1]]
        m, k = (a[-2], a[-1]) if len(a) > 1 else (1, a[-1])
        n = b[-1] if len(b) > 1 else 1
        batch = np.prod(np.broadcast_shapes(a[:-2], b[:-2])) if len(a) > 2 or len(b) > 2 else 1
        return 2.0 * batch * m * k * n
    if node.op_type == "Gemm":
        a, b = shapes[node.input[0]], shapes[node.input[1]]
        trans_a = attributes["transA"].i if "transA" in attributes else 0
        trans_b = attributes["transB"].i if "transB" in attributes else 0
        m, k = (a[1], a[0]) if trans_a else (a[0], a[1])
        n = b[0] if trans_b else b[1]
        return 2.0 * m * k * n
    out, weight = shapes[node.output[0]], shapes[node.input[1]]
    group = attributes["group"].i if "group" in attributes else 1
    if node.op_type == "ConvTranspose":  # weight [C_in, C_out/group, k...]: every input element spreads
        return 2.0 * float(np.prod(shapes[node.input[0]])) * weight[1] * float(np.prod(weight[2:]))
    return 2.0 * float(np.prod(out)) * weight[1] * float(np.prod(weight[2:])) * (1 if group else 1)
