"""models/<name>/model.yaml: every bad spec fails with one line naming the file and the offending field."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import minimal_spec, spec_error, write_spec

from triton_repo.core.errors import SpecError
from triton_repo.core.spec import DEFAULT_BUDGETS, Accuracy, load_spec, parse_spec

MODELS = Path(__file__).resolve().parents[3] / "models"


def _set_dims(dims):
    return lambda d: d["inputs"][0].update(dims=dims)


def _set_axis(axis, shape_range):
    return lambda d: d["axes"].update({axis: shape_range})


# (test id, how to break the minimal spec, substrings the one-line message must contain)
BAD_SPECS = [
    ("unknown_top_level_key", lambda d: d.update(optimise=True), ["optimise", "unknown key"]),
    ("unknown_nested_key", lambda d: d["inputs"][0].update(shape=[1, 2]), ["inputs[0].shape", "unknown key"]),
    ("dims_not_a_list", _set_dims("abc"), ["inputs[0].dims", "'abc'", "give a list"]),
    ("negative_dim", _set_dims(["batch", -3]), ["inputs[0].dims", "dim -3 is not allowed"]),
    ("zero_dim", _set_dims(["batch", 0]), ["inputs[0].dims", "dim 0 is not allowed"]),
    (
        "min_greater_than_opt",
        _set_axis("seq", {"min": 20, "opt": 16, "max": 32}),
        ["axes.seq", "min 20, opt 16"],
    ),
    (
        "opt_greater_than_max",
        _set_axis("seq", {"min": 1, "opt": 64, "max": 32}),
        ["axes.seq", "opt 64, max 32"],
    ),
    (
        "axis_min_zero",
        _set_axis("seq", {"min": 0, "opt": 16, "max": 32}),
        ["axes.seq.min", "0 is not allowed"],
    ),
    (
        "undeclared_axis",
        _set_dims(["batch", "tokens"]),
        ["inputs[0] 'input_ids'", "'tokens'", "declared: batch, seq"],
    ),
    ("first_dim_not_batch", _set_dims(["seq", 3]), ["inputs[0] 'input_ids'", "first dim must be 'batch'"]),
    (
        "batch_after_first_dim",
        _set_dims(["batch", "batch"]),
        ["inputs[0] 'input_ids'", "'batch' may only be the first"],
    ),
    (
        "max_batch_size_above_axis",
        lambda d: d.update(max_batch_size=16),
        ["max_batch_size 16", "axes.batch.max 8"],
    ),
    (
        "preferred_batch_above_max",
        lambda d: d.update(triton={"dynamic_batching": {"preferred_batch_sizes": [4, 16]}}),
        ["preferred_batch_sizes: 16", "max_batch_size 8"],
    ),
    (
        "negative_max_queue_size",
        lambda d: d.update(triton={"dynamic_batching": {"max_queue_size": -1}}),
        ["triton.dynamic_batching.max_queue_size", "-1 is not allowed", "use 0 or more"],
    ),
    (
        "max_queue_size_above_uint32",
        lambda d: d.update(triton={"dynamic_batching": {"max_queue_size": 2**32}}),
        ["triton.dynamic_batching.max_queue_size", "4294967296 is not allowed", "use 4294967295 or less"],
    ),
    (
        "negative_queue_timeout",
        lambda d: d.update(triton={"dynamic_batching": {"queue_timeout_microseconds": -5}}),
        [
            "triton.dynamic_batching.queue_timeout_microseconds",
            "-5 is not allowed",
            "use 0 or more",
        ],
    ),
    ("duplicate_tensor_names", lambda d: d["outputs"][0].update(name="input_ids"), ["unique", "'input_ids'"]),
    ("both_factory_and_onnx", lambda d: d["source"].update(factory="model:build"), ["source", "exactly one"]),
    ("neither_factory_nor_onnx", lambda d: d.update(source={"opset": 17}), ["source", "exactly one"]),
    (
        "onnx_without_suffix",
        lambda d: d.update(source={"onnx": "model.bin"}),
        ["source", "'model.bin'", ".onnx"],
    ),
    (
        "factory_without_colon",
        lambda d: d.update(source={"factory": "model.build"}),
        ["source.factory", "'model.build'"],
    ),
    ("opset_too_old", lambda d: d["source"].update(opset=11), ["source.opset", "11"]),
    (
        "sample_neither_reference_nor_npz",
        lambda d: d.update(data={"sample": "data.csv"}),
        ["data.sample", "'data.csv'"],
    ),
    ("unknown_dtype", lambda d: d["inputs"][1].update(dtype="complex64"), ["inputs[1].dtype", "'complex64'"]),
    ("unknown_accuracy_metric", lambda d: d.update(accuracy={"metric": "f1"}), ["accuracy.metric", "'f1'"]),
    (
        "negative_tolerance",
        lambda d: d["outputs"][0].update(tolerance={"atol": -1}),
        ["outputs[0].tolerance.atol", "-1"],
    ),
    ("instance_count_zero", lambda d: d.update(triton={"instance_count": 0}), ["triton.instance_count", "0"]),
    (
        "uppercase_axis_name",
        _set_axis("Seq", {"min": 1, "opt": 1, "max": 1}),
        ["axes", "'Seq'", "lower case"],
    ),
    (
        "size_not_a_multiple",
        lambda d: d["axes"]["seq"].update(multiple_of=8, min=4),
        ["axes.seq", "min 4 must be a multiple of multiple_of 8"],
    ),
    ("multiple_of_zero", lambda d: d["axes"]["seq"].update(multiple_of=0), ["axes.seq.multiple_of", "0"]),
    ("missing_outputs", lambda d: d.pop("outputs"), ["outputs: required field is missing"]),
    ("missing_data", lambda d: d.pop("data"), ["data: required field is missing"]),
    ("empty_inputs", lambda d: d.update(inputs=[]), ["inputs", "at least 1"]),
]


@pytest.mark.parametrize(("mutate", "expected"), [c[1:] for c in BAD_SPECS], ids=[c[0] for c in BAD_SPECS])
def test_spec_rejects(spec_file, spec_dict, mutate, expected):
    mutate(spec_dict)
    message = spec_error(spec_file(spec_dict))
    for part in expected:
        assert part in message


def test_spec_counts_further_problems_in_the_one_line_message(spec_file, spec_dict):
    spec_dict["inputs"][0]["dtype"] = "complex64"
    spec_dict["inputs"][1]["dtype"] = "complex128"
    message = spec_error(spec_file(spec_dict))
    assert "inputs[0].dtype" in message and "(and 1 more problem)" in message


@pytest.mark.parametrize(
    ("name", "folder"), [("a..b", "a..b"), ("a/b", "toy"), ("Toy", "Toy"), ("2toy", "2toy"), ("", "toy")]
)
def test_spec_rejects_bad_model_name(spec_file, spec_dict, name, folder):
    spec_dict["name"] = name
    message = spec_error(spec_file(spec_dict, folder=folder))
    assert f"name: {name!r} is not allowed" in message


def test_spec_rejects_name_not_equal_to_folder_name(spec_file, spec_dict):
    message = spec_error(spec_file(spec_dict, folder="other"))
    assert "name: 'toy'" in message and "folder name 'other'" in message


def test_spec_rejects_malformed_yaml_with_line_number(spec_file):
    message = spec_error(spec_file("name: toy\nsource: {onnx: model.onnx\ninputs: [\n", folder="toy"))
    assert "malformed YAML at line " in message


def test_spec_rejects_tab_indentation_with_line_and_column(spec_file):
    message = spec_error(spec_file("name: toy\nsource:\n\tonnx: model.onnx\n", folder="toy"))
    assert "malformed YAML at line 3, column 1" in message


@pytest.mark.parametrize(("text", "kind"), [("- a\n- b\n", "list"), ("", "NoneType"), ("just text\n", "str")])
def test_spec_rejects_top_level_not_a_mapping(spec_file, text, kind):
    message = spec_error(spec_file(text, folder="toy"))
    assert f"expected a mapping of spec fields at the top level, got {kind}" in message


@pytest.mark.parametrize("target", ["missing/model.yaml", "missing"])
def test_spec_rejects_missing_spec_file(tmp_path, target):
    message = spec_error(tmp_path / target)
    assert "no such spec file" in message


def test_parse_spec_rejects_non_mapping_with_path(tmp_path):
    with pytest.raises(SpecError, match=r"model\.yaml: expected a mapping"):
        parse_spec(["name", "toy"], tmp_path / "toy" / "model.yaml")


def test_spec_loads_from_folder_or_file(spec_file, spec_dict):
    path = spec_file(spec_dict)
    assert load_spec(path.parent).path == path
    assert load_spec(str(path)).folder == path.parent


@pytest.mark.parametrize("name", ["digits", "minilm", "mobilenet_v2"])
def test_zoo_spec_loads(name):
    loaded = load_spec(MODELS / name)
    assert loaded.spec.name == name
    assert loaded.spec.batched
    assert loaded.spec.accuracy is not None


def test_effective_max_batch_size_defaults_to_batch_axis_max(spec_dict, tmp_path):
    assert parse_spec(spec_dict, write_spec(tmp_path, spec_dict)).spec.effective_max_batch_size == 8


def test_effective_max_batch_size_uses_explicit_value(spec_dict, tmp_path):
    spec_dict["max_batch_size"] = 6
    assert parse_spec(spec_dict, write_spec(tmp_path, spec_dict)).spec.effective_max_batch_size == 6


def test_effective_max_batch_size_is_zero_without_batch_axis(tmp_path):
    data = minimal_spec()
    del data["axes"]["batch"]
    data["inputs"] = [{"name": "input_ids", "dtype": "int64", "dims": ["seq"]}]
    data["outputs"] = [{"name": "embedding", "dtype": "float32", "dims": [4]}]
    spec = parse_spec(data, write_spec(tmp_path, data)).spec
    assert not spec.batched and spec.effective_max_batch_size == 0
    assert spec.triton_dims(spec.inputs[0]) == [-1]
    assert spec.shape_points() == [{"seq": 2}, {"seq": 16}, {"seq": 32}]


def test_triton_dims_drop_batch_and_name_dynamic_axes_minus_one(spec_dict, tmp_path):
    spec_dict["inputs"][0]["dims"] = ["batch", "seq", 3]
    spec = parse_spec(spec_dict, write_spec(tmp_path, spec_dict)).spec
    assert spec.triton_dims(spec.inputs[0]) == [-1, 3]
    assert spec.triton_dims(spec.outputs[0]) == [4]
    assert spec.concrete_shape(spec.inputs[0], {"batch": 2, "seq": 5}) == (2, 5, 3)


def test_triton_dims_keep_batch_dim_when_max_batch_size_zero(spec_dict, tmp_path):
    spec_dict["max_batch_size"] = 0
    spec = parse_spec(spec_dict, write_spec(tmp_path, spec_dict)).spec
    assert not spec.batched and spec.effective_max_batch_size == 0
    assert spec.triton_dims(spec.inputs[0]) == [-1, -1]


def test_shape_points_for_minilm_cover_min_opt_max_of_batch_and_seq():
    spec = load_spec(MODELS / "minilm").spec
    points = spec.shape_points()
    assert len(points) == 9
    assert {(p["batch"], p["seq"]) for p in points} == {(b, s) for b in (1, 8, 32) for s in (1, 128, 256)}


def test_shape_points_clamp_batch_to_max_batch_size(spec_dict, tmp_path):
    spec_dict["max_batch_size"] = 2
    spec = parse_spec(spec_dict, write_spec(tmp_path, spec_dict)).spec
    assert sorted({p["batch"] for p in spec.shape_points()}) == [1, 2]


def test_shape_points_for_static_model_is_one_empty_point(tmp_path):
    data = minimal_spec()
    data["axes"] = {}
    data["inputs"] = [{"name": "input_ids", "dtype": "int64", "dims": [3]}]
    data["outputs"] = [{"name": "embedding", "dtype": "float32", "dims": [4]}]
    assert parse_spec(data, write_spec(tmp_path, data)).spec.shape_points() == [{}]


@pytest.mark.parametrize(
    ("metric", "budget"), [("top1_drop", 1.0), ("top1_agreement", 0.95), ("cosine_min", 0.99)]
)
def test_default_budget_per_metric(metric, budget):
    assert DEFAULT_BUDGETS[metric] == budget
    assert Accuracy(metric=metric).effective_budget == budget
    assert Accuracy(metric=metric, budget=0.5).effective_budget == 0.5


def test_spec_defaults_for_tolerance_and_triton_settings(spec_dict, tmp_path):
    spec = parse_spec(spec_dict, write_spec(tmp_path, spec_dict)).spec
    assert (spec.outputs[0].tolerance.atol, spec.outputs[0].tolerance.rtol) == (1e-4, 1e-3)
    assert spec.triton.instance_count == 1 and spec.triton.intra_op_threads == 0
    assert spec.triton.dynamic_batching.max_queue_delay_microseconds == 100
    assert spec.triton.dynamic_batching.max_queue_size == 0
    assert spec.triton.dynamic_batching.queue_timeout_microseconds == 0
    assert spec.source.exporter == "torchscript" and spec.source.opset == 17


def test_shape_points_never_contain_batch_zero_when_max_batch_size_zero(spec_dict, tmp_path):
    spec_dict["max_batch_size"] = 0
    spec = parse_spec(spec_dict, write_spec(tmp_path, spec_dict)).spec
    assert min(p["batch"] for p in spec.shape_points()) >= spec.axes["batch"].min


def test_spec_rejects_max_batch_size_below_batch_axis_min(spec_file, spec_dict):
    spec_dict["axes"]["batch"] = {"min": 4, "opt": 4, "max": 8}
    spec_dict["max_batch_size"] = 2
    assert "max_batch_size 2" in spec_error(spec_file(spec_dict))


def test_spec_rejects_sample_reference_with_trailing_newline(spec_file, spec_dict):
    spec_dict["data"]["sample"] = "model:sample_inputs\n"
    assert "data.sample" in spec_error(spec_file(spec_dict))


def test_spec_rejects_boolean_dim(spec_file, spec_dict):
    spec_dict["outputs"][0]["dims"] = ["batch", True]
    assert "outputs[0].dims" in spec_error(spec_file(spec_dict))


def _image_spec(spec_dict, **input_fields):
    spec_dict["axes"] = {"batch": {"min": 1, "opt": 2, "max": 4}}
    spec_dict["inputs"] = [{"name": "image", "dtype": "float32", "dims": ["batch", 3, 8, 8], **input_fields}]
    spec_dict["outputs"] = [{"name": "logits", "dtype": "float32", "dims": ["batch", 5]}]
    return spec_dict


def test_an_image_layout_needs_three_dims_besides_the_batch(spec_file, spec_dict):
    spec = _image_spec(spec_dict, format="NCHW")
    assert load_spec(spec_file(spec)).spec.inputs[0].format == "NCHW"
    spec["inputs"][0]["dims"] = ["batch", 64]
    message = spec_error(spec_file(spec))
    assert "inputs[0] 'image': format NCHW needs 3 dims besides the batch" in message


@pytest.mark.parametrize(
    ("dims", "ok"),
    [(["batch", 5], True), (["batch", 1, 5], True), (["batch", 5, 2], False), (["batch", "seq"], False)],
)
def test_labels_need_one_class_axis_of_fixed_size(spec_file, spec_dict, dims, ok):
    spec = _image_spec(spec_dict)
    spec["axes"]["seq"] = {"min": 1, "opt": 2, "max": 3}
    spec["outputs"][0] |= {"dims": dims, "labels": "labels.txt"}
    if ok:
        loaded = load_spec(spec_file(spec))
        assert loaded.spec.labels_file("logits") == "labels.txt"
    else:
        assert "labels need one class axis of fixed size" in spec_error(spec_file(spec))


def test_ensemble_labels_are_the_first_outputs_labels_and_may_not_disagree(spec_file, spec_dict):
    from conftest import TOKENIZE_ENSEMBLE

    spec_dict["ensemble"] = {**TOKENIZE_ENSEMBLE, "labels": "classes.txt"}
    spec_dict["outputs"][0]["dims"] = ["batch", 4]
    assert load_spec(spec_file(spec_dict)).spec.labels_file("embedding") == "classes.txt"
    spec_dict["outputs"][0]["labels"] = "other.txt"
    assert "ensemble.labels 'classes.txt' and outputs[0].labels 'other.txt' differ" in spec_error(
        spec_file(spec_dict)
    )


@pytest.mark.parametrize(
    "name",
    ["input:0", "model/dense/BiasAdd:0", "sigmoid_0.tmp_0", "2nd/temperature-scale", "x-y", "raw text"],
)
def test_spec_accepts_tensor_names_as_converters_write_them(tmp_path, name):
    data = minimal_spec()
    data["inputs"][0]["name"] = name
    assert load_spec(write_spec(tmp_path / "models", data)).spec.inputs[0].name == name


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("", "a tensor name is empty"),
        ("in\nput", "has a control character"),
        (" input", "starts or ends with a space"),
        ("x" * 257, "at most 256"),
    ],
)
def test_spec_refuses_tensor_names_triton_cannot_carry(tmp_path, name, why):
    data = minimal_spec()
    data["inputs"][0]["name"] = name
    assert why in spec_error(write_spec(tmp_path / "models", data))


def test_a_scalar_input_is_one_value_per_request_of_a_batched_model(tmp_path):
    data = minimal_spec()
    data["inputs"].append({"name": "sr", "dtype": "int64", "dims": []})
    spec = load_spec(write_spec(tmp_path / "models", data)).spec
    assert spec.per_request_inputs == ["sr"] and spec.triton_dims(spec.inputs[2]) == []


def test_a_scalar_output_of_a_batched_model_is_refused_with_the_fix(tmp_path):
    data = minimal_spec()
    data["outputs"].append({"name": "loss", "dtype": "float32", "dims": []})
    message = spec_error(write_spec(tmp_path / "models", data))
    assert "outputs[1] 'loss': dims [] (a scalar) in a batched model" in message
    assert "max_batch_size: 0" in message
