"""Matrix FLOPs for the roofline on graphs as exporters other than PyTorch's write them, and the guard that
keeps a failing diagnostic from ending a build."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from triton_repo.builders.precision.roofline import constant_shapes, matrix_flops, matrix_node_flops
from triton_repo.core import log

PADDLE = Path(__file__).resolve().parents[2] / "corpus" / "paddle_detector" / "model.onnx"


def test_paddle_style_graph_counts_every_conv_and_conv_transpose_from_its_real_shapes():
    """Constant-node weights, weights listed as graph inputs, dotted names, Resize, dynamic H and W."""
    graph = onnx.load(str(PADDLE)).graph
    weights = {t.name for t in graph.initializer}
    assert weights & {i.name for i in graph.input}  # the older exporters' layout is really in the file
    assert any(n.op_type == "Constant" for n in graph.node)
    x = np.zeros((1, 3, 16, 16), np.float32)
    flops = matrix_node_flops(PADDLE, {"x": x})
    assert flops == {
        "p2o.Conv.0": 2.0 * (8 * 8 * 8) * 3 * 9,  # out [1, 8, 8, 8], weight [8, 3, 3, 3]
        "p2o.Conv.1": 2.0 * (8 * 4 * 4) * 8 * 9,  # out [1, 8, 4, 4], weight [8, 8, 3, 3]
        "p2o.ConvTranspose.0": 2.0 * (8 * 4 * 4) * 4 * 4,  # every input element into 4 x 2 x 2
        "p2o.Conv.2": 2.0 * (16 * 16) * 4,  # after Resize x2: out [1, 1, 16, 16], weight [1, 4, 1, 1]
    }
    bigger = matrix_flops(PADDLE, {"x": np.zeros((2, 3, 32, 48), np.float32)})
    assert bigger == pytest.approx(2 * 6 * sum(flops.values()))  # twice the rows, six times the pixels


def test_constant_shapes_reads_initializers_and_constant_nodes():
    shapes = constant_shapes(onnx.load(str(PADDLE)).graph)
    assert shapes["conv2d_0.w_0"] == (8, 3, 3, 3)  # a Constant node
    assert shapes["conv2d_1.w_0"] == (8, 8, 3, 3)  # an initializer
    assert shapes["p2o.Resize.roi"] == (0,)


def test_a_failing_diagnostic_warns_in_one_line_logs_the_traceback_and_returns_its_default(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(log, "_log_file", None)
    log.open_log(tmp_path / "build.log")

    def broken():
        raise KeyError("conv2d_420.w_0")

    assert log.diagnostic("ocrdet: roofline", broken, default={}) == {}
    warning = capsys.readouterr().err.strip()
    assert warning == "warning: ocrdet: roofline skipped: KeyError: 'conv2d_420.w_0'"
    written = (tmp_path / "build.log").read_text()
    assert "Traceback (most recent call last)" in written and "in broken" in written


def test_a_step_names_itself_on_an_unexpected_error_and_the_innermost_step_wins():
    with (
        pytest.raises(ZeroDivisionError) as raised,
        log.failing_as("ocrdet: build"),
        log.step("ocrdet: export to ONNX and golden data"),
    ):
        1 / 0  # noqa: B018
    assert log.where_failed(raised.value) == "ocrdet: export to ONNX and golden data"
    assert log.one_line(ValueError("first\nsecond")) == "ValueError: first"
    assert len(log.one_line(ValueError("x" * 5000))) == 300
