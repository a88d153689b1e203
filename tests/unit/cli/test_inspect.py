"""`triton-repo inspect MODEL`: the probe's tables on stdout, or its record as JSON; a file that is not a
model is one line and exit code 2; nothing is written."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from triton_repo.cli import cli, main


def row(table: str, *cells: str) -> bool:
    """Whether the table has a row of exactly these cells."""
    pattern = r"│\s*" + r"\s*│\s*".join(map(re.escape, cells)) + r"\s*│"
    return any(re.fullmatch(pattern, line) for line in table.splitlines())


@pytest.fixture
def tiny_model(tmp_path):
    """x [N, 4] -> y [N, 4, 1]: a batch axis, and an output whose declared rank is wrong."""
    graph = helper.make_graph(
        [helper.make_node("Unsqueeze", ["x", "axes"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
        [numpy_helper.from_array(np.array([2], np.int64), "axes")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "tiny.onnx"
    onnx.save(model, path)
    return path


def test_inspect_prints_the_tensors_axes_runs_and_notes_and_writes_nothing(tiny_model, tmp_path):
    result = CliRunner().invoke(cli, ["inspect", str(tiny_model)], terminal_width=200)
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert f"{tiny_model}: inputs and outputs" in text
    assert row(text, "in", "x", "float32", "[N, 4]", "[batch, 4]", "fed standard normal values")
    declared = "the file declares [N, 4]; it returns [batch, 4, 1]"
    assert row(text, "out", "y", "float32", "[N, 4]", "[batch, 4, 1]", declared)
    assert "batched: max_batch_size 16" in text
    assert row(
        text, "batch", "1", "4", "16", "", "", "dim 0 of every input (x) is dynamic (named 'N' in the file)"
    )
    assert row(text, "1", "x [1, 4]", "y [1, 4, 1]")
    assert row(text, "5", "x [16, 4]", "y [16, 4, 1]")  # the max run: every axis at its max
    assert "- batch: min 1, opt 4, max 16 (the largest size tried)" in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.onnx"]


def test_inspect_json_is_the_probe_record(tiny_model):
    result = CliRunner().invoke(cli, ["inspect", str(tiny_model), "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["source"] == str(tiny_model) and record["batched"] is True
    assert [o["dims"] for o in record["outputs"]] == [["batch", 4, 1]]
    assert record["axes"]["batch"] == {
        "name": "batch",
        "min": 1,
        "opt": 4,
        "max": 16,
        "why": "dim 0 of every input (x) is dynamic (named 'N' in the file)",
        "multiple_of": 1,
        "output_only": False,
    }
    assert record["runs"][0] == {"inputs": {"x": [1, 4]}, "outputs": {"y": [1, 4, 1]}, "error": None}


def test_inspect_on_a_file_that_is_not_a_model_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("hello\n")
    monkeypatch.setattr(sys, "argv", ["triton-repo", "inspect", str(notes)])
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert lines == [
        f"error: {notes}: not an ONNX model (a text file); inspect and init take an ONNX file, a PyTorch "
        "checkpoint with --factory, FILE.py:FUNCTION or a Hugging Face folder"
    ]


def test_inspect_on_a_model_folder_probes_its_onnx_source():
    folder = Path(__file__).resolve().parents[2] / "corpus" / "tf2onnx_names"
    result = CliRunner().invoke(cli, ["inspect", str(folder), "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["source"] == str(folder / "model.onnx")
    assert [i["name"] for i in record["inputs"]] == ["input:0", "2nd/temperature-scale"]


def test_inspect_builds_a_pytorch_source_in_a_scratch_folder_and_finds_its_states(tmp_path):
    factory = Path(__file__).resolve().parents[2] / "corpus" / "lstm_state" / "model.py"
    shapes = ("--input", "series:3x10x3", "--input", "h0:2x3x16", "--input", "c0:2x3x16")
    result = CliRunner().invoke(cli, ["inspect", f"{factory}:build", *shapes])
    assert result.exit_code == 0, result.output
    assert (
        "stateful: h0 -> h_out, c0 -> c_out" in result.output
        and "batched: max_batch_size 64" in result.output
    )
    assert f"{factory}:build: inputs and outputs" in result.output.replace("\n", "")
