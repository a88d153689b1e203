"""ONNX Runtime's CPU QuantizeLinear on FLOAT16 input truncates toward zero instead of rounding to nearest
even (microsoft/onnxruntime#18576, fixed by PR #32452; 1.24 truncates, 1.32 rounds). On a truncating
runtime every FP16 Q/DQ graph (the TensorRT INT8 artifact with FP16 high precision) is measured half a
quantization step off on every activation: MiniLM's min cosine reads 0.80 where TensorRT's rounding gives
0.95. Where the runtime truncates, the graph is measured with each FP16 QuantizeLinear computed in FP32
(input and scale cast exactly, then rounded as the ONNX spec says); the artifact itself is not changed.
Needs the `onnx` package (the build environment); without it the graph is returned as it is.
onnxruntime_cpu.load_measured runs every artifact on measured_graph's result.
"""

from __future__ import annotations

import functools

import numpy as np


@functools.cache
def runtime_truncates() -> bool:
    """Probe this ONNX Runtime: quantize 0.75 (FP16) with scale 1; nearest rounding gives 1, truncation 0."""
    try:
        import onnxruntime as ort
        from onnx import TensorProto, helper
    except ImportError:
        return False
    graph = helper.make_graph(
        [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"])],
        "probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT16, [1])],
        [helper.make_tensor_value_info("q", TensorProto.INT8, [1])],
        [
            helper.make_tensor("s", TensorProto.FLOAT16, [], [1.0]),
            helper.make_tensor("z", TensorProto.INT8, [], [0]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    model.ir_version = min(model.ir_version, 9)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (quantized,) = session.run(None, {"x": np.array([0.75], dtype=np.float16)})
    return int(quantized[0]) == 0


def measured_graph(path: str):
    """The artifact's path, or its bytes with FP16 QuantizeLinear computed in FP32 where this ONNX Runtime
    truncates FP16 quantization."""
    if not runtime_truncates():
        return path
    import onnx

    model = onnx.load(path)
    rewritten = exact_fp16_quantize(model)
    return path if rewritten is model else rewritten.SerializeToString()


def exact_fp16_quantize(model):
    """`model` (an onnx.ModelProto) with every FLOAT16 QuantizeLinear fed FP32 copies of its input and
    scale; the same model when it has none. Semantics are the ONNX spec's; only the runtime's rounding
    bug is avoided."""
    import onnx
    from onnx import TensorProto, helper

    fp16_scales = _fp16_tensors(model)
    nodes = []
    changed = 0
    for node in model.graph.node:
        if (
            node.op_type == "QuantizeLinear"
            and node.domain in ("", "ai.onnx")
            and node.input[1] in fp16_scales
        ):
            inputs = list(node.input)
            for position in (0, 1):
                cast = f"{node.name or node.output[0]}/fp32_{position}"
                nodes.append(
                    helper.make_node("Cast", [inputs[position]], [cast], to=TensorProto.FLOAT, name=cast)
                )
                inputs[position] = cast
            copy = onnx.NodeProto()
            copy.CopyFrom(node)
            del copy.input[:]
            copy.input.extend(inputs)
            nodes.append(copy)
            changed += 1
        else:
            nodes.append(node)
    if not changed:
        return model
    rewritten = onnx.ModelProto()
    rewritten.CopyFrom(model)
    del rewritten.graph.node[:]
    rewritten.graph.node.extend(nodes)
    return rewritten


def _fp16_tensors(model) -> set[str]:
    import onnx
    from onnx import TensorProto

    inferred = onnx.shape_inference.infer_shapes(model).graph
    names = {t.name for t in model.graph.initializer if t.data_type == TensorProto.FLOAT16}
    for node in model.graph.node:
        if node.op_type == "Constant":
            for attribute in node.attribute:
                if attribute.name == "value" and attribute.t.data_type == TensorProto.FLOAT16:
                    names.update(node.output)
    names.update(
        v.name
        for v in [*inferred.value_info, *model.graph.input]
        if v.type.tensor_type.elem_type == TensorProto.FLOAT16
    )
    return names
