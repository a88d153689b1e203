"""triton_repo.builders.precision.cpu_int8 on a tiny Conv/MatMul/Gemm model built with onnx.helper (no server)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from triton_repo.builders.precision.cpu_int8 import CpuInt8Settings, map_node_names, quantize_for_cpu  # noqa: E402
from triton_repo.core.errors import TritonRepoError  # noqa: E402

INTEGER_OPS = {"MatMulInteger", "ConvInteger", "DynamicQuantizeLinear", "QuantizeLinear", "DequantizeLinear"}


def _tiny_model(path: Path) -> Path:
    """image [batch,1,8,8] -> Conv -> Relu -> Flatten -> MatMul fc1 (+bias) -> Relu -> MatMul fc2 -> Gemm."""
    rng = np.random.default_rng(0)

    def weight(name: str, *shape: int) -> onnx.TensorProto:
        return numpy_helper.from_array(rng.normal(0.0, 0.3, shape).astype(np.float32), name)

    nodes = [
        helper.make_node("Conv", ["image", "conv_w", "conv_b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["cr"], name="relu0"),
        helper.make_node("Flatten", ["cr"], ["f"], name="flatten"),
        helper.make_node("MatMul", ["f", "fc1_w"], ["h"], name="fc1"),
        helper.make_node("Add", ["h", "fc1_b"], ["hb"], name="fc1_bias"),
        helper.make_node("Relu", ["hb"], ["hr"], name="relu1"),
        helper.make_node("MatMul", ["hr", "fc2_w"], ["g"], name="fc2"),
        helper.make_node("Gemm", ["g", "head_w", "head_b"], ["logits"], name="head"),
    ]
    weights = [weight("conv_w", 4, 1, 3, 3), weight("conv_b", 4), weight("fc1_w", 256, 32)]
    weights += [weight("fc1_b", 32), weight("fc2_w", 32, 16), weight("head_w", 16, 10), weight("head_b", 10)]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.save(model, str(path))
    return path


def _images(count: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.0, 1.0, (count, 1, 8, 8)).astype(np.float32)


def _run(path: Path, images: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"image": images})[0]


@pytest.fixture
def fp32(tmp_path: Path) -> Path:
    return _tiny_model(tmp_path / "fp32.onnx")


@pytest.fixture
def out_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty output folder; ORT's own temp folders go to tmp_path/systmp so leftovers can be seen."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "systmp"))
    (tmp_path / "systmp").mkdir()
    (tmp_path / "out").mkdir()
    return tmp_path / "out"


def _assert_clean(out_dir: Path, output: Path) -> None:
    assert sorted(p.name for p in out_dir.iterdir()) == [output.name]
    assert list((out_dir.parent / "systmp").iterdir()) == []


@pytest.mark.parametrize("mode", ["dynamic", "static"])
def test_quantizes_with_integer_ops_and_stays_close(fp32: Path, out_dir: Path, mode: str) -> None:
    output = out_dir / "model.onnx"
    calibration = {"image": _images(30, seed=1)}  # 30 rows in batches of 8: the last batch is short
    result = quantize_for_cpu(fp32, output, CpuInt8Settings(mode=mode), calibration, batch_size=8)
    assert result == output
    op_types = {node.op_type for node in onnx.load(str(output)).graph.node}
    assert op_types & INTEGER_OPS, op_types
    images = _images(16, seed=2)
    expected, actual = _run(fp32, images), _run(output, images)
    error, scale = np.abs(actual - expected), np.abs(expected).max()
    assert np.median(error) <= 0.02 * scale and error.max() <= 0.25 * scale  # static clips unseen logits
    _assert_clean(out_dir, output)


@pytest.mark.parametrize("mode", ["dynamic", "static"])
def test_excluded_nodes_stay_float(fp32: Path, out_dir: Path, mode: str) -> None:
    output = out_dir / "model.onnx"
    settings = CpuInt8Settings(mode=mode, exclude_nodes=("fc1", "conv"))
    quantize_for_cpu(fp32, output, settings, {"image": _images(8, seed=1)})
    model = onnx.load(str(output))
    nodes = {node.name: node for node in model.graph.node}
    floats = {t.name for t in model.graph.initializer if t.data_type == TensorProto.FLOAT}
    assert nodes["fc1"].op_type == "MatMul" and nodes["fc1"].input[1] in floats
    assert nodes["conv"].op_type == "Conv" and nodes["conv"].input[1] in floats
    assert "fc2" not in nodes or nodes["fc2"].input[1] not in floats  # the rest is still quantized
    _assert_clean(out_dir, output)


def test_unknown_exclude_name_is_one_line_error(fp32: Path, out_dir: Path) -> None:
    settings = CpuInt8Settings(mode="dynamic", exclude_nodes=("fc1", "/no/such/MatMul"))
    with pytest.raises(TritonRepoError, match="/no/such/MatMul") as caught:
        quantize_for_cpu(fp32, out_dir / "model.onnx", settings, None)
    assert "\n" not in str(caught.value) and "fc1," not in str(caught.value)
    assert list(out_dir.iterdir()) == []


def test_bad_settings_are_user_errors(fp32: Path, out_dir: Path) -> None:
    for settings in (CpuInt8Settings(mode="fp8"), CpuInt8Settings(mode="dynamic", optimize="gpt9")):
        with pytest.raises(TritonRepoError):
            quantize_for_cpu(fp32, out_dir / "model.onnx", settings, None)
    with pytest.raises(TritonRepoError, match="calibration"):
        quantize_for_cpu(fp32, out_dir / "model.onnx", CpuInt8Settings(mode="static"), None)


def test_failed_quantization_leaves_no_files(fp32: Path, out_dir: Path) -> None:
    output = out_dir / "model.onnx"
    output.write_bytes(b"previous")
    with pytest.raises(Exception):  # noqa: B017 - the calibration data has the wrong input name
        quantize_for_cpu(fp32, output, CpuInt8Settings(mode="static"), {"pixels": _images(4, seed=1)})
    assert output.read_bytes() == b"previous"
    _assert_clean(out_dir, output)


def test_names_of_fused_nodes_map_to_the_fusion() -> None:
    original = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
            helper.make_node("Add", ["h", "b"], ["y"], name="bias"),
            helper.make_node("Relu", ["y"], ["z"], name="relu"),
        ],
        "original",
        [],
        [],
    )
    rewritten = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w", "b"], ["y"], name="fused"), original.node[2]],
        "rewritten",
        [],
        [],
    )
    assert map_node_names(original, rewritten, ("mm", "relu")) == ["fused", "relu"]


def test_smoothing_is_exact_in_fp32_and_quantizes(fp32: Path, out_dir: Path) -> None:
    from triton_repo.builders.precision.cpu_int8 import smooth

    calibration = {"image": _images(16, seed=1)}
    smoothed = smooth(fp32, out_dir.parent / "smoothed.onnx", 0.7, calibration, 8)
    mul_names = [n.name for n in onnx.load(str(smoothed)).graph.node if n.op_type == "Mul"]
    assert len(mul_names) == 2  # one per MatMul input (fc1, fc2); the Gemm and the Conv are left alone
    images = _images(8, seed=2)
    np.testing.assert_allclose(_run(smoothed, images), _run(fp32, images), rtol=1e-4, atol=1e-4)
    output = out_dir / "model.onnx"
    settings = CpuInt8Settings(mode="dynamic", op_types=("MatMul",), smooth_alpha=0.7, exclude_nodes=("fc2",))
    quantize_for_cpu(fp32, output, settings, calibration)
    nodes = {node.name: node.op_type for node in onnx.load(str(output)).graph.node}
    assert nodes["fc2"] == "MatMul" and "MatMulInteger" in nodes.values()
    _assert_clean(out_dir, output)
