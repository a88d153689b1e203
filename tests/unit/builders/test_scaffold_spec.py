"""What init writes from a probe: the proposed metric for each task shape, a spec that loads as `build`
loads it, and a data stub that reads the user's files and marks its random placeholder."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from triton_repo.builders.scaffold.propose import propose_metric
from triton_repo.builders.scaffold.record import ModelProbe, ProbedAxis, ProbedTensor, ValueStats
from triton_repo.builders.scaffold.write_spec import model_py, spec_yaml
from triton_repo.core.errors import SpecError
from triton_repo.core.references import load_arrays
from triton_repo.core.spec import load_spec

BATCH = ProbedAxis("batch", 1, 4, 8, "dim 0 of every input")
IMAGE = {
    "batch": BATCH,
    "height": ProbedAxis("height", 64, 224, 320, "dim 2 of images", multiple_of=32),
    "width": ProbedAxis("width", 64, 224, 320, "dim 3 of images", multiple_of=32),
}


def stats(low=-3.0, high=3.0, softmax=False, unit=False) -> ValueStats:
    return ValueStats(low, high, 0.0, False, softmax, unit)


def probe(outputs, axes=None, inputs=None, batched=True) -> ModelProbe:
    inputs = inputs or (ProbedTensor("images", "float32", None, ("batch", 3, "height", "width")),)
    return ModelProbe(Path("m.onnx"), tuple(inputs), tuple(outputs), dict(axes or IMAGE), batched)


def test_a_raw_yolo_head_whose_anchors_follow_the_image_is_judged_by_its_detections():
    anchors = ProbedAxis("anchors", 84, 1029, 2100, "follows height x width", output_only=True)
    head = ProbedTensor("output0", "float32", None, ("batch", 84, "anchors"), stats=stats(0, 320))
    found = propose_metric(probe([head], {**IMAGE, "anchors": anchors}))
    assert (found.metric, found.output, found.settings["layout"]) == (
        "detection",
        "output0",
        "channels_first",
    )
    assert "80 class scores" in found.why and any("objectness" in a for a in found.alternatives)
    transposed = ProbedTensor("output0", "float32", None, ("batch", "anchors", 85))
    assert (
        propose_metric(probe([transposed], {**IMAGE, "anchors": anchors})).settings["layout"]
        == "anchors_first"
    )


def test_separate_boxes_and_scores_are_detections_read_from_those_outputs():
    outputs = [
        ProbedTensor("det_boxes", "float32", None, ("batch", "count", 4)),
        ProbedTensor("det_scores", "float32", None, ("batch", "count")),
        ProbedTensor("det_classes", "int64", None, ("batch", "count")),
    ]
    found = propose_metric(probe(outputs))
    assert found.metric == "detection"
    assert found.settings == {
        "boxes": "det_boxes",
        "scores": "det_scores",
        "box": "xyxy",
        "classes": "det_classes",
    }


@pytest.mark.parametrize(
    ("output", "metric", "settings"),
    [
        (ProbedTensor("prob", "float32", None, ("batch", 1, "height", "width"), stats=stats(0, 1)), "dense",
         {"decode": "threshold", "threshold": 0.5, "compare": "iou"}),
        (ProbedTensor("logit", "float32", None, ("batch", 1, "height", "width"), stats=stats()), "dense",
         {"decode": "threshold", "threshold": 0.0, "compare": "iou"}),
        (ProbedTensor("seg", "float32", None, ("batch", 21, "height", "width")), "dense",
         {"decode": "argmax", "class_axis": 1, "compare": "iou"}),
        (ProbedTensor("p", "float32", None, ("batch", 1), stats=stats(0, 1)), "binary", {"threshold": 0.5}),
        (ProbedTensor("z", "float32", None, ("batch", 1), stats=stats()), "binary", {"threshold": 0.0}),
        (ProbedTensor("out", "float32", None, ("batch", 384), stats=stats(-1, 1, unit=True)), "embedding", {"k": 10}),
        (ProbedTensor("pooled_features", "float32", None, ("batch", 512), stats=stats()), "embedding", {"k": 10}),
        (ProbedTensor("logits", "float32", None, ("batch", 1000), stats=stats()), "top1_agreement", {"k": 5}),
        (ProbedTensor("probs", "float32", None, ("batch", 3), stats=stats(0, 1, softmax=True)), "top1_agreement",
         {"k": 3}),
        (ProbedTensor("rec", "float32", None, ("batch", "steps", 97), stats=stats(0, 1, softmax=True)), "ctc",
         {"blank": 0, "class_axis": -1}),
        (ProbedTensor("hidden", "float32", None, ("batch", "steps", 16), stats=stats(-1, 1)), "cosine_min", {}),
        (ProbedTensor("score", "float32", None, ("batch",), stats=stats(0, 1)), "binary", {"threshold": 0.5}),
        (ProbedTensor("odd", "float32", None, ("batch", 2, 3, 4)), "cosine_min", {}),
    ],
)  # fmt: skip
def test_each_task_shape_gets_its_metric(output, metric, settings):
    axes = {**IMAGE, "steps": ProbedAxis("steps", 8, 56, 80, "width / 4", output_only=True)}
    found = propose_metric(probe([output], axes))
    assert (found.metric, found.settings) == (metric, settings)
    assert found.why


def write_folder(folder: Path, record: ModelProbe) -> Path:
    from triton_repo.builders.scaffold.propose import propose_metric

    folder.mkdir(parents=True)
    (folder / "model.onnx").write_bytes(b"not read by these tests")
    (folder / "model.yaml").write_text(
        spec_yaml("tiny", {"onnx": "model.onnx"}, record, propose_metric(record), "m.onnx")
    )
    (folder / "model.py").write_text(model_py("tiny", "m.onnx", record))
    return folder


def tokens_probe() -> ModelProbe:
    inputs = (
        ProbedTensor("input_ids", "int64", ("N", "L"), ("batch", "sequence")),
        ProbedTensor("attention_mask", "int64", ("N", "L"), ("batch", "sequence")),
    )
    axes = {"batch": BATCH, "sequence": ProbedAxis("sequence", 1, 16, 64, "dim_param L")}
    output = ProbedTensor("sentence_embedding", "float32", None, ("batch", 8), stats=stats(-1, 1, unit=True))
    return probe([output], axes, inputs)


def test_the_spec_loads_and_a_random_eval_is_refused_in_one_line_until_data_holds_the_users_rows(tmp_path):
    folder = write_folder(tmp_path / "tiny", tokens_probe())
    loaded = load_spec(folder / "model.yaml")
    assert loaded.spec.accuracy.metric == "embedding" and loaded.spec.precision.variants == ["fp32"]
    sample = load_arrays(loaded, "sample")
    assert sample["input_ids"].shape == (2, 16) and sample["input_ids"].dtype == np.int64
    with pytest.raises(SpecError) as refused:
        load_arrays(loaded, "eval")
    assert "data.eval (model:evaluation) is random placeholder data" in str(refused.value)
    assert "\n" not in str(refused.value)

    (folder / "data").mkdir()
    ids = np.arange(60 * 16, dtype=np.int64).reshape(60, 16)
    np.save(folder / "data" / "input_ids.npy", ids)
    for cached in [m for m in sys.modules if m.startswith("triton_repo_zoo.tiny_")]:
        del sys.modules[cached]  # a new build process imports model.py again
    fresh = load_spec(folder / "model.yaml")
    parts = {field: load_arrays(fresh, field) for field in ("sample", "calibration", "eval")}
    assert [len(p["input_ids"]) for p in parts.values()] == [2, 32, 26]
    assert np.array_equal(np.concatenate([p["input_ids"] for p in parts.values()]), ids)  # disjoint, all
    assert (parts["eval"]["attention_mask"] == 1).all()


def test_an_image_stub_reads_pictures_in_the_inputs_layout(tmp_path):
    from PIL import Image

    inputs = (ProbedTensor("input_1:0", "float32", None, ("batch", "height", "width", 3)),)
    output = ProbedTensor("Identity:0", "float32", None, ("batch", 10), stats=stats(0, 1, softmax=True))
    axes = {
        "batch": BATCH,
        "height": ProbedAxis("height", 32, 48, 64, "dim 1"),
        "width": ProbedAxis("width", 32, 40, 64, "dim 2"),
    }
    folder = write_folder(tmp_path / "tiny", probe([output], axes, inputs))
    assert "format: NHWC" in (folder / "model.yaml").read_text()
    (folder / "data").mkdir()
    for index in range(3):
        Image.new("RGB", (100, 80), (index * 100, 0, 0)).save(folder / "data" / f"{index}.png")
    sample = load_arrays(load_spec(folder / "model.yaml"), "sample")["input_1:0"]
    assert sample.shape == (2, 48, 40, 3) and sample.dtype == np.float32
    assert sample[1, 0, 0, 0] == pytest.approx(100 / 255)


def test_an_unbatched_model_is_written_with_max_batch_size_0_and_one_request_as_its_sample(tmp_path):
    inputs = (ProbedTensor("points", "float32", (1, 40, 3), (40, 3)),)
    output = ProbedTensor("features", "float32", (1, 8), (8,), stats=stats())
    record = ModelProbe(Path("m.onnx"), inputs, (output,), {}, False, "the file fixes its batch at 1")
    folder = write_folder(tmp_path / "tiny", record)
    text = (folder / "model.yaml").read_text()
    assert "max_batch_size: 0  # the file fixes its batch at 1" in text
    loaded = load_spec(folder / "model.yaml")
    assert load_arrays(loaded, "sample")["points"].shape == (40, 3)


def test_a_build_asking_for_lower_precisions_on_placeholder_data_is_refused_before_any_work(tmp_path):
    from triton_repo.core.references import refuse_placeholder_eval

    folder = write_folder(tmp_path / "tiny", tokens_probe())
    refuse_placeholder_eval(load_spec(folder / "model.yaml"))  # fp32 only: nothing to gate, builds
    spec = folder / "model.yaml"
    spec.write_text(
        spec.read_text().replace("precision: {variants: [fp32]}", "precision: {variants: [fp32, int8]}")
    )
    with pytest.raises(
        SpecError, match="is random placeholder data: the accuracy gate would measure nothing"
    ):
        refuse_placeholder_eval(load_spec(spec))


def test_the_stubs_placeholder_eval_is_recognised_so_speed_at_real_shapes_skips_it(tmp_path):
    from triton_repo.core.references import placeholder_eval

    folder = write_folder(tmp_path / "tiny", tokens_probe())
    assert placeholder_eval(load_spec(folder / "model.yaml"))  # the stub with an empty data/
    spec = folder / "model.yaml"
    spec.write_text(spec.read_text().replace("eval: 'model:evaluation'", "eval: eval.npz"))
    assert not placeholder_eval(load_spec(spec))  # a file of real rows


def test_a_side_that_must_be_a_multiple_of_32_is_written_as_the_axis_multiple_of_and_loads(tmp_path):
    head = ProbedTensor("logits", "float32", None, ("batch", 10), stats=stats(-3, 3))
    folder = write_folder(tmp_path / "tiny", probe([head]))
    assert "height: {min: 64, opt: 224, max: 320, multiple_of: 32}" in (folder / "model.yaml").read_text()
    axes = load_spec(folder / "model.yaml").spec.axes
    assert axes["height"].multiple_of == axes["width"].multiple_of == 32 and axes["batch"].multiple_of == 1
