"""Probing an ONNX model (`probe_onnx`): tiny graphs built here with onnx.helper, each showing one thing
the probe must find by running the model in a child process; then the corpus's ONNX files against their
hand-written model.yaml."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import onnx
import pytest
import yaml
from onnx import TensorProto, helper, numpy_helper

from triton_repo.builders.scaffold.onnx_io import read_graph
from triton_repo.builders.scaffold.probe import probe_as_dict, probe_graph, probe_onnx
from triton_repo.core.errors import TritonRepoError

CORPUS = Path(__file__).resolve().parents[2] / "corpus"
FLOAT, INT64 = TensorProto.FLOAT, TensorProto.INT64


def save(path: Path, nodes, inputs, outputs, initializers=()) -> Path:
    graph = helper.make_graph(
        nodes,
        path.stem,
        [helper.make_tensor_value_info(*i) for i in inputs],
        [helper.make_tensor_value_info(*o) for o in outputs],
        [numpy_helper.from_array(np.asarray(array), name) for name, array in initializers],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def test_a_dim_param_shared_by_two_inputs_is_one_axis_named_after_it(tmp_path):
    path = save(
        tmp_path / "shared.onnx",
        [
            helper.make_node("ReduceSum", ["frames_in", "axis"], ["summed"], keepdims=0),
            helper.make_node("Add", ["summed", "weights"], ["out"]),
        ],
        [("frames_in", FLOAT, ["N", "frames", 4]), ("weights", FLOAT, ["N", "frames"])],
        [("out", FLOAT, ["N", "frames"])],
        [("axis", np.array([2], np.int64))],
    )
    probe = probe_onnx(path)
    assert list(probe.axes) == ["batch", "frames"]
    assert [t.dims for t in probe.inputs] == [("batch", "frames", 4), ("batch", "frames")]
    assert probe.outputs[0].dims == ("batch", "frames")
    assert probe.axes["frames"].why == "dim_param 'frames' of frames_in, weights"
    assert (probe.axes["frames"].min, probe.axes["frames"].max) == (1, 256)
    assert probe.batched and probe.axes["batch"].opt == 4
    assert [t.note for t in probe.inputs] == ["fed standard normal values"] * 2


def test_two_unnamed_dims_that_must_agree_become_one_axis(tmp_path):
    path = save(
        tmp_path / "tokens.onnx",
        [
            helper.make_node("Cast", ["input_ids"], ["ids"], to=FLOAT),
            helper.make_node("Cast", ["attention_mask"], ["mask"], to=FLOAT),
            helper.make_node("Mul", ["ids", "mask"], ["scores"]),
        ],
        [("input_ids", INT64, [None, None]), ("attention_mask", INT64, [None, None])],
        [("scores", FLOAT, [None, None])],
    )
    probe = probe_onnx(path)
    assert list(probe.axes) == ["batch", "sequence"]
    assert [t.dims for t in probe.inputs] == [("batch", "sequence")] * 2
    assert probe.outputs[0].dims == ("batch", "sequence")
    assert (probe.axes["sequence"].min, probe.axes["sequence"].opt, probe.axes["sequence"].max) == (
        1,
        128,
        512,
    )
    assert "must agree with attention_mask dim 1" in probe.axes["sequence"].why
    agree = [n for n in probe.notes if " must agree: " in n]
    assert len(agree) == 1 and "input_ids dim 1 and attention_mask dim 1 must agree" in agree[0]
    assert "Mul node" in agree[0] and "\n" not in agree[0]
    assert [t.note for t in probe.inputs] == ["fed token ids 1..99", "fed ones (a mask)"]
    assert probe.outputs[0].stats.minimum >= 1 and probe.outputs[0].stats.integer


def stride_32_model(path: Path) -> Path:
    """Runs only when height and width are multiples of 32: the input plus itself pooled and blown up."""
    return save(
        path,
        [
            helper.make_node("MaxPool", ["x"], ["pooled"], kernel_shape=[32, 32], strides=[32, 32]),
            helper.make_node("Resize", ["pooled", "", "scales"], ["up"], mode="nearest"),
            helper.make_node("Add", ["x", "up"], ["y"]),
        ],
        [("x", FLOAT, ["N", 3, "H", "W"])],
        [("y", FLOAT, ["N", 3, "H", "W"])],
        [("scales", np.array([1, 1, 32, 32], np.float32))],
    )


def test_a_model_refusing_non_multiples_of_32_gets_multiple_of_32(tmp_path):
    probe = probe_onnx(stride_32_model(tmp_path / "stride32.onnx"))
    height, width = probe.axes["height"], probe.axes["width"]
    assert (height.min, height.opt, height.max, height.multiple_of) == (32, 224, 640, 32)
    assert (width.min, width.opt, width.max, width.multiple_of) == (32, 224, 640, 32)
    assert probe.inputs[0].dims == ("batch", 3, "height", "width")
    assert probe.outputs[0].dims == ("batch", 3, "height", "width")
    line = next(n for n in probe.notes if "multiples of 32" in n)
    assert line.startswith(
        "height, width: multiples of 32 (33 was refused: Add node: Attempting to broadcast"
    )
    refused = {r.inputs["x"][2] for r in probe.runs if r.error}
    assert {31, 33, 48} <= refused and not refused & {32, 64, 224, 640}
    together = {(r.inputs["x"][0], r.inputs["x"][2]) for r in probe.runs if r.error is None}
    assert {(1, 32), (4, 224), (16, 640)} <= together  # min, opt and max were run, all axes at once


def test_a_detection_head_output_gets_an_output_only_anchors_axis(tmp_path):
    nodes = [helper.make_node("Concat", ["x", "x"], ["x6"], axis=1)]
    for stride in (8, 16, 32):
        nodes += [
            helper.make_node(
                "MaxPool", ["x6"], [f"p{stride}"], kernel_shape=[stride] * 2, strides=[stride] * 2
            ),
            helper.make_node("Reshape", [f"p{stride}", "flat"], [f"f{stride}"]),
        ]
    nodes.append(helper.make_node("Concat", ["f8", "f16", "f32"], ["output0"], axis=2))
    path = save(
        tmp_path / "detector.onnx",
        nodes,
        [("x", FLOAT, ["N", 3, "H", "W"])],
        [("output0", FLOAT, ["N", 6, None])],
        [("flat", np.array([0, 6, -1], np.int64))],
    )
    probe = probe_onnx(path)
    anchors = probe.axes["anchors"]
    assert probe.outputs[0].dims == ("batch", 6, "anchors")

    def count(size):
        return sum((size // stride) ** 2 for stride in (8, 16, 32))

    height = probe.axes["height"]
    assert (anchors.min, anchors.opt, anchors.max) == (
        count(height.min),
        count(height.opt),
        count(height.max),
    )
    assert (anchors.min, anchors.opt, anchors.max) == (21, 1029, 8400)
    assert anchors.output_only and not height.output_only
    assert anchors.why == "output0 dim 2, follows height, width: 21 at 32x32, 8400 at 640x640"


def test_an_output_whose_declared_rank_is_wrong_gets_the_real_dims_and_a_note(tmp_path):
    path = save(
        tmp_path / "rank.onnx",
        [helper.make_node("Unsqueeze", ["x", "axes"], ["y"])],
        [("x", FLOAT, ["N", 4])],
        [("y", FLOAT, ["N", 4])],
        [("axes", np.array([2], np.int64))],
    )
    probe = probe_onnx(path)
    assert probe.outputs[0].declared == ("N", 4)
    assert probe.outputs[0].dims == ("batch", 4, 1)
    assert probe.outputs[0].note == "the file declares [N, 4]; it returns [batch, 4, 1]"
    assert "y: the file declares [N, 4]; it returns [batch, 4, 1]" in probe.notes


@pytest.mark.parametrize("size", [1, 2])
def test_a_batch_fixed_in_the_file_is_no_batch_axis(tmp_path, size):
    path = save(
        tmp_path / "fixed.onnx",
        [helper.make_node("Relu", ["x"], ["y"])],
        [("x", FLOAT, [size, 3, 8, 8])],
        [("y", FLOAT, [size, 3, 8, 8])],
    )
    probe = probe_onnx(path)
    assert not probe.batched and probe.axes == {}
    assert f"fixes the first dim of every input at {size}" in probe.unbatched_reason
    assert probe.inputs[0].dims == probe.outputs[0].dims == (size, 3, 8, 8)
    assert [r.inputs for r in probe.runs] == [{"x": (size, 3, 8, 8)}]
    assert probe.notes[0].startswith("no batch axis (max_batch_size 0): the file fixes the first dim")


def test_an_output_without_the_batch_first_makes_the_model_unbatched(tmp_path):
    path = save(
        tmp_path / "points.onnx",
        [helper.make_node("ReduceMean", ["points"], ["centre"], axes=[0], keepdims=0)],
        [("points", FLOAT, ["n", 3])],
        [("centre", FLOAT, [3])],
    )
    probe = probe_onnx(path)
    assert (
        not probe.batched and "output 'centre' does not have the inputs' first dim" in probe.unbatched_reason
    )
    assert list(probe.axes) == ["n"] and probe.inputs[0].dims == ("n", 3)


@pytest.mark.parametrize(
    ("content", "what"),
    [
        (b"name: toy\nsource: {onnx: model.onnx}\n", "a text file (YAML?)"),
        (b"\x80\x04\x95\x00\x00", "a Python pickle"),
        (b"", "an empty file"),
    ],
)
def test_a_file_that_is_not_onnx_is_refused_in_one_line(tmp_path, content, what):
    path = tmp_path / "model.onnx"
    path.write_bytes(content)
    with pytest.raises(TritonRepoError) as refused:
        probe_onnx(path)
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: not an ONNX model ({what}")
    assert "take an ONNX file, a PyTorch checkpoint with --factory" in message


def crash_at_64(shapes):
    """In the probe's child: the runtime dies as ONNX Runtime does on a bad graph."""
    if shapes["x"][1] == 64:
        os.kill(os.getpid(), signal.SIGSEGV)


def test_a_runtime_crash_is_a_failed_run_and_the_probe_goes_on_in_a_fresh_child(tmp_path):
    path = save(
        tmp_path / "crash.onnx",
        [helper.make_node("ReduceSum", ["x", "axis"], ["y"], keepdims=0)],
        [("x", FLOAT, ["N", None])],
        [("y", FLOAT, ["N"])],
        [("axis", np.array([1], np.int64))],
    )
    probe = probe_graph(read_graph(path), before_run=crash_at_64)
    crashed = [r for r in probe.runs if r.error]
    assert [r.error for r in crashed] == ["the runtime crashed (SIGSEGV)"]
    assert crashed[0].inputs == {"x": (1, 64)} and crashed[0].outputs is None
    later = probe.runs[probe.runs.index(crashed[0]) + 1]
    assert later.inputs == {"x": (1, 128)} and later.outputs == {"y": (1,)}
    assert (probe.axes["x_dim1"].min, probe.axes["x_dim1"].max) == (1, 16)  # no range past the crash
    assert "x_dim1: ran at 1, 2, 7, 16, 128, 256; refused 64" in probe.notes


def test_the_record_is_json(tmp_path):
    import json

    probe = probe_onnx(stride_32_model(tmp_path / "stride32.onnx"), seconds=20)
    data = json.loads(json.dumps(probe_as_dict(probe)))
    assert data["axes"]["height"]["multiple_of"] == 32 and data["source"].endswith("stride32.onnx")


@pytest.mark.parametrize("name", ["onnx_spatial", "paddle_detector", "tf2onnx_names"])
def test_a_corpus_onnx_file_probes_as_its_hand_written_spec_says(name):
    spec = yaml.safe_load((CORPUS / name / "model.yaml").read_text())
    probe = probe_onnx(CORPUS / name / "model.onnx")
    for written, probed in [(spec["inputs"], probe.inputs), (spec["outputs"], probe.outputs)]:
        assert [(t["name"], t["dtype"], tuple(t["dims"])) for t in written] == [
            (t.name, t.dtype, t.dims) for t in probed
        ]
    assert set(probe.axes) == set(spec["axes"]) and probe.batched
    assert all(not a.output_only and a.min <= a.opt <= a.max for a in probe.axes.values())
    assert all(r.error is None for r in probe.runs) and all(t.note.startswith("fed ") for t in probe.inputs)
