"""triton_repo.builders.precision.debug: layer-wise FP32 vs INT8 errors find the one layer planted with a bad scale."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from triton_repo.builders.precision.debug import LayerwiseReport, layerwise_errors, write_chart
from triton_repo.core.errors import TritonRepoError

LAYERS = 4
PLANTED = 2  # the layer whose weight gets a terrible quantization scale
WIDTH = 16


def save(nodes: list, initializers: list, path: Path, outputs: dict[str, int]) -> Path:
    """Write a graph with one float input x [batch, 16] and 2-d outputs (name -> elem type)."""
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", WIDTH])],
        [helper.make_tensor_value_info(name, dtype, ["batch", None]) for name, dtype in outputs.items()],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def chain(weights: list[np.ndarray], path: Path, scales: list[float | None], prefix: str = "") -> Path:
    """x -> [fc_i: MatMul -> relu_i: Relu] * LAYERS -> y; a weight with a scale goes through Q/DQ."""
    nodes, inits, current = [], [], "x"
    for i, (w, scale) in enumerate(zip(weights, scales, strict=True)):
        weight = f"w{i}"
        inits.append(numpy_helper.from_array(w, weight))
        if scale is not None:
            inits += [
                numpy_helper.from_array(np.array(scale, np.float32), f"w{i}_scale"),
                numpy_helper.from_array(np.array(0, np.int8), f"w{i}_zp"),
            ]
            nodes += [
                helper.make_node(
                    "QuantizeLinear", [weight, f"w{i}_scale", f"w{i}_zp"], [f"w{i}_q"], f"w{i}_q"
                ),
                helper.make_node("DequantizeLinear", [f"w{i}_q", f"w{i}_scale", f"w{i}_zp"], [f"w{i}_dq"]),
            ]
            weight = f"w{i}_dq"
        out = "y" if i == LAYERS - 1 else f"{prefix}relu{i}_out"
        nodes += [
            helper.make_node("MatMul", [current, weight], [f"{prefix}fc{i}_out"], f"fc{i}"),
            helper.make_node("Relu", [f"{prefix}fc{i}_out"], [f"{prefix}{out}"], f"relu{i}"),
        ]
        current = f"{prefix}{out}"
    return save(nodes, inits, path, {f"{prefix}y": TensorProto.FLOAT})


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[dict[str, np.ndarray]]]:
    """An FP32 chain and an 'INT8' copy: good per-tensor scales everywhere but one coarse layer."""
    tmp = tmp_path_factory.mktemp("debug_int8")
    rng = np.random.default_rng(0)
    weights = [rng.normal(0, WIDTH**-0.5, (WIDTH, WIDTH)).astype(np.float32) for _ in range(LAYERS)]
    scales = [float(np.abs(w).max()) / 127 for w in weights]
    scales[PLANTED] = float(np.abs(weights[PLANTED]).max()) / 2  # 5 levels: a terrible scale
    fp32 = chain(weights, tmp / "fp32.onnx", [None] * LAYERS)
    quantized = chain(weights, tmp / "int8.onnx", scales)
    feeds = [{"x": rng.normal(size=(4, WIDTH)).astype(np.float32)} for _ in range(2)]
    return fp32, quantized, feeds


@pytest.fixture(scope="module")
def report(models: tuple[Path, Path, list]) -> LayerwiseReport:
    return layerwise_errors(*models)


def test_ranking_blames_the_planted_layer(report: LayerwiseReport) -> None:
    assert report.ranked()[0].node == f"fc{PLANTED}"
    assert report.first_jump() is not None and report.first_jump().node == f"fc{PLANTED}"
    assert report.ranked(1) == report.ranked()[:1]


def test_errors_before_the_planted_layer_are_small(report: LayerwiseReport) -> None:
    planted = next(n for n in report.nodes if n.node == f"fc{PLANTED}")
    before = [n for n in report.nodes if n.index < planted.index]
    assert len(before) == 2 * PLANTED
    assert all(n.error < 0.02 and n.cosine > 0.999 for n in before)
    assert planted.error > 0.1 and planted.added > 0.1
    later = [n for n in report.nodes if n.index > planted.index]
    assert all(n.error > 0.05 for n in later)  # downstream inherits the error ...
    assert all(n.added < planted.added / 2 for n in later)  # ... without adding as much


def test_matched_counts_the_shared_tensors(report: LayerwiseReport) -> None:
    # 4 MatMul + 4 Relu outputs in both graphs; the Q/DQ weight tensors exist only in the quantized one
    assert report.matched == 2 * LAYERS
    assert report.fp32_tensors == 2 * LAYERS
    assert [n.tensor for n in report.nodes][-1] == "y"
    assert set(report.outputs) == {"y"} and report.outputs["y"] == report.nodes[-1].error


def test_chart_and_json(report: LayerwiseReport, tmp_path: Path) -> None:
    png = tmp_path / "chart" / "layerwise.png"
    write_chart(report, png, "toy chain: fp32 vs int8")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 1000
    data = json.loads(json.dumps(report.to_json()))
    assert [n["node"] for n in data["nodes"]] == [f"{op}{i}" for i in range(LAYERS) for op in ("fc", "relu")]
    assert data["matched"] == 2 * LAYERS and set(data["outputs"]) == {"y"}


def test_no_common_tensor_names_is_a_clear_error(models: tuple[Path, Path, list], tmp_path: Path) -> None:
    fp32, _, feeds = models
    weights = [numpy_helper.to_array(t) for t in onnx.load(str(fp32)).graph.initializer]
    renamed = chain(weights, tmp_path / "renamed.onnx", [None] * LAYERS, prefix="q_")
    with pytest.raises(TritonRepoError, match="shares no float tensor name"):
        layerwise_errors(fp32, renamed, feeds)


def test_shape_and_integer_tensors_are_skipped(tmp_path: Path) -> None:
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], "relu"),
        helper.make_node("Shape", ["r"], ["s"], "shape"),
        helper.make_node("Reshape", ["r", "s"], ["y"], "reshape"),
        helper.make_node("ArgMax", ["y"], ["idx"], "argmax", axis=1),
    ]
    model = save(nodes, [], tmp_path / "same.onnx", {"y": TensorProto.FLOAT, "idx": TensorProto.INT64})
    report = layerwise_errors(model, model, [{"x": np.ones((2, WIDTH), np.float32)}])
    assert [n.node for n in report.nodes] == ["relu", "reshape"]
    assert report.matched == report.fp32_tensors == 2
    assert all(n.error == 0 and n.cosine == pytest.approx(1.0) for n in report.nodes)
    assert report.first_jump() is None


def test_no_feeds_is_a_clear_error(models: tuple[Path, Path, list]) -> None:
    with pytest.raises(TritonRepoError, match="at least one feed"):
        layerwise_errors(models[0], models[1], [])
