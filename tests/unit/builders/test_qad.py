"""QAD's pieces that need no training: the spec, kept nodes to modules, eval rows kept out of training,
the INT8 share of the matrix work, and measuring FP16 Q/DQ graphs where ONNX Runtime truncates."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from conftest import minimal_spec
from onnx import TensorProto, helper, numpy_helper

from triton_repo.builders.precision.qad import module_for_node, row_digests, training_batches
from triton_repo.builders.precision.roofline import int8_fraction
from triton_repo.core.errors import SpecError
from triton_repo.core.spec import parse_spec
from triton_repo.runtimes.fp16_quantize import exact_fp16_quantize, runtime_truncates


def _parse(tmp_path, data):
    path = tmp_path / data["name"] / "model.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    return parse_spec(data, path).spec


def _int8_spec(**int8) -> dict:
    spec = minimal_spec()
    spec["source"] = {"factory": "model:build"}
    spec["data"] |= {"eval": "eval.npz", "calibration": "calib.npz", "train": "train.npz"}
    spec["accuracy"] = {"metric": "cosine_min"}
    spec["precision"] = {"int8": int8}
    return spec


def test_recover_qad_with_its_settings(tmp_path):
    spec = _parse(tmp_path, _int8_spec(recover="qad", qad={"steps": 50, "learning_rate": 2e-5}))
    assert spec.precision.int8.recover == "qad"
    assert (spec.precision.int8.qad.steps, spec.precision.int8.qad.batch_size) == (50, 8)


def test_qad_needs_a_pytorch_source(tmp_path):
    data = _int8_spec(recover="qad")
    data["source"] = {"onnx": "model.onnx"}
    with pytest.raises(SpecError, match="needs source.factory"):
        _parse(tmp_path, data)


def test_data_train_without_qad_is_refused(tmp_path):
    with pytest.raises(SpecError, match="data.train is read only by precision.int8.recover: qad"):
        _parse(tmp_path, _int8_spec())


def test_bad_qad_settings_are_refused(tmp_path):
    with pytest.raises(SpecError, match="steps"):
        _parse(tmp_path, _int8_spec(recover="qad", qad={"steps": -1}))
    with pytest.raises(SpecError, match="loss"):
        _parse(tmp_path, _int8_spec(recover="qad", qad={"loss": "hinge"}))


@pytest.mark.parametrize(
    ("node", "module"),
    [
        (
            "/encoder/encoder/layer.0/attention/self/query/MatMul",
            "encoder.encoder.layer.0.attention.self.query",
        ),
        ("/layer1/layer1.0/conv1/Conv", "layer1.0.conv1"),
        ("/fc/Gemm", "fc"),
        ("/l2/Gemm", "l2"),
    ],
)
def test_kept_nodes_map_to_the_modules_their_scope_names(node, module):
    assert module_for_node(node) == module


def test_training_refuses_any_eval_row():
    rng = np.random.default_rng(0)
    evaluation = {"x": rng.standard_normal((6, 4)).astype(np.float32)}
    calibration = {"x": rng.standard_normal((5, 4)).astype(np.float32)}
    train = {"x": np.concatenate([rng.standard_normal((7, 4)), evaluation["x"][2:4]]).astype(np.float32)}
    eval_rows = frozenset(row_digests(evaluation))
    batches = training_batches(calibration, None, eval_rows, 4)
    assert [len(b["x"]) for b in batches] == [4, 1]
    assert not {d for b in batches for d in row_digests(b)} & eval_rows
    with pytest.raises(SpecError, match=r"data.train shares 2 row\(s\) with data.eval"):
        training_batches(calibration, train, eval_rows, 4)


def _gemm_model(quantize_weight: bool, quantize_input: bool) -> onnx.ModelProto:
    """x [2,8] @ W [8,8] with optional Q/DQ on each side (per-tensor, FP32)."""
    nodes, inits = [], [numpy_helper.from_array(np.eye(8, dtype=np.float32), "w")]
    inits += [
        numpy_helper.from_array(np.array(0.1, np.float32), "s"),
        numpy_helper.from_array(np.array(0, np.int8), "z"),
    ]
    data, weight = "x", "w"
    if quantize_input:
        nodes += [
            helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
            helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"]),
        ]
        data = "xd"
    if quantize_weight:
        nodes += [
            helper.make_node("QuantizeLinear", ["w", "s", "z"], ["wq"]),
            helper.make_node("DequantizeLinear", ["wq", "s", "z"], ["wd"]),
        ]
        nodes.append(helper.make_node("Transpose", ["wd"], ["wt"]))  # a layout op between DQ and the MatMul
        weight = "wt"
    nodes.append(helper.make_node("MatMul", [data, weight], ["y"], name="/fc/MatMul"))
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 8])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])


def test_int8_share_counts_matrix_ops_with_both_inputs_dequantized(tmp_path):
    flops = {"/fc/MatMul": 256.0}
    for weight, data, share in ((True, True, 1.0), (True, False, 0.0), (False, False, 0.0)):
        path = tmp_path / f"{weight}{data}.onnx"
        onnx.save(_gemm_model(weight, data), str(path))
        assert int8_fraction(flops, path) == share


def _fp16_quantize_model() -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], name="q")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT16, [None])],
        [helper.make_tensor_value_info("q", TensorProto.INT8, [None])],
        [
            helper.make_tensor("s", TensorProto.FLOAT16, [], [0.05625]),
            helper.make_tensor("z", TensorProto.INT8, [], [0]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    model.ir_version = 9
    return model


def test_fp16_quantize_is_measured_with_nearest_even_rounding():
    """Whatever this ONNX Runtime does with FP16 QuantizeLinear, the rewritten graph rounds as the spec says."""
    x = (np.random.default_rng(0).standard_normal(4096) * 2).astype(np.float16)
    model = _fp16_quantize_model()
    expected = np.clip(np.rint(x.astype(np.float32) / np.float32(np.float16(0.05625))), -128, 127)

    def run(m):
        return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(
            None, {"x": x}
        )[0]

    as_is = run(model)
    assert np.array_equal(as_is, expected) != runtime_truncates()  # the probe tells truncation apart
    rewritten = exact_fp16_quantize(model)
    assert rewritten is not model and sum(n.op_type == "Cast" for n in rewritten.graph.node) == 2
    np.testing.assert_array_equal(run(rewritten), expected)


def test_graphs_without_fp16_quantize_are_left_alone():
    model = _gemm_model(True, True)
    assert exact_fp16_quantize(model) is model
