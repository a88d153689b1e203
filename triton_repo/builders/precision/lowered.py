"""What a precision artifact runs differently from the FP32 graph: the op types it computes in FP16 or
INT8. Named in the line that refuses a variant its runtime crashed on, and used to choose what FP16
keeps in FP32 for the runtime that serves it."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

# Recurrent ops accumulate rounding error over every time step, and ONNX Runtime CPU crashes running a
# ModelOpt FP16 GRU: every FP16 artifact keeps them in FP32.
RECURRENT_OPS = frozenset({"GRU", "LSTM", "RNN"})
_CONTROL_FLOW = frozenset({"Loop", "Scan", "If"})
_FLOAT16 = 10  # onnx.TensorProto.FLOAT16
_BFLOAT16 = 16
_INTEGER_OPS = frozenset(
    {
        "MatMulInteger",
        "ConvInteger",
        "QLinearConv",
        "QLinearMatMul",
        "QGemm",
        "QAttention",
        "DynamicQuantizeMatMul",
        "QLinearAdd",
        "QLinearMul",
    }
)
_QDQ = frozenset({"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"})
_SHAPE_ONLY = frozenset({"Shape", "Size"})  # read a tensor's shape, compute nothing in its precision


def lowered_op_types(onnx_path: Path) -> tuple[str, Counter]:
    """('FP16' | 'BF16' | 'INT8' | '', op type -> node count) of the nodes an artifact computes in low precision.

    FP16/BF16: nodes (Cast aside) with a half-precision input or output. INT8: nodes fed by a
    DequantizeLinear, and integer kernels (MatMulInteger, QLinearConv, ...).
    """
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    graph = model.graph
    if any(node.op_type in _QDQ or node.op_type in _INTEGER_OPS for node in graph.node):
        dequantized = {out for n in graph.node if n.op_type == "DequantizeLinear" for out in n.output}
        counts = Counter(
            node.op_type
            for node in graph.node
            if node.op_type in _INTEGER_OPS
            or (node.op_type not in _QDQ | _SHAPE_ONLY and any(i in dequantized for i in node.input))
        )
        return "INT8", counts
    try:
        inferred = onnx.shape_inference.infer_shapes(model).graph
    except Exception:  # noqa: BLE001 - a graph shape inference rejects still has initializer types
        inferred = graph
    types = {t.name: t.data_type for t in graph.initializer}
    for value in (*inferred.value_info, *inferred.input, *inferred.output):
        types[value.name] = value.type.tensor_type.elem_type
    counts: dict[int, Counter] = {_FLOAT16: Counter(), _BFLOAT16: Counter()}
    for node in graph.node:
        if node.op_type == "Cast" or node.op_type in _SHAPE_ONLY:
            continue
        for half in counts:
            if any(types.get(name) == half for name in (*node.input, *node.output) if name):
                counts[half][node.op_type] += 1
    for half, label in ((_FLOAT16, "FP16"), (_BFLOAT16, "BF16")):
        if counts[half]:
            return label, counts[half]
    return "", Counter()


def describe_lowered(onnx_path: Path, shown: int = 4) -> str:
    """'it has GRU, MatMul, Add and 3 more op types in FP16': recurrent and control flow first."""
    precision, counts = lowered_op_types(onnx_path)
    if not counts:
        return "it computes nothing in lower precision"
    ranked = sorted(
        counts,
        key=lambda op: (op not in RECURRENT_OPS, op not in _CONTROL_FLOW, -counts[op], op),
    )
    listed = ", ".join(ranked[:shown])
    more = f" and {len(ranked) - shown} more op types" if len(ranked) > shown else ""
    return f"it has {listed}{more} in {precision}"
