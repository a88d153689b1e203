"""The spec's precision section: which variants are built, and what they need to be measured."""

from __future__ import annotations

import pytest
from conftest import minimal_spec

from triton_repo.core.errors import SpecError
from triton_repo.core.spec import parse_spec


def _parse(tmp_path, data):
    path = tmp_path / data["name"] / "model.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    return parse_spec(data, path).spec


def _gated(**data_fields) -> dict:
    spec = minimal_spec()
    spec["data"] |= data_fields
    spec["accuracy"] = {"metric": "cosine_min"}
    return spec


def test_without_accuracy_only_fp32_is_built(tmp_path):
    assert _parse(tmp_path, minimal_spec()).precisions == ["fp32"]


def test_with_accuracy_and_eval_fp16_and_bf16_are_added_and_int8_needs_calibration(tmp_path):
    assert _parse(tmp_path, _gated(eval="eval.npz")).precisions == ["fp32", "fp16", "bf16"]
    assert _parse(tmp_path, _gated(eval="eval.npz", calibration="calib.npz")).precisions == [
        "fp32",
        "fp16",
        "bf16",
        "int8",
    ]


def test_explicit_variants_are_kept_in_canonical_order(tmp_path):
    spec = _gated(eval="eval.npz", calibration="calib.npz")
    spec["precision"] = {"variants": ["int8", "fp32"]}
    assert _parse(tmp_path, spec).precisions == ["fp32", "int8"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"precision": {"variants": ["fp16"]}}, "must include fp32"),
        ({"precision": {"variants": ["fp32", "fp32"]}}, "names a precision twice"),
        ({"precision": {"variants": ["fp32", "int4"]}}, "int4"),
        ({"precision": {"variants": ["fp32", "fp16"]}}, "are gated on accuracy"),
        ({"precision": {"int8": {"calibration_method": "percentile"}}}, "percentile"),
        ({"precision": {"int8": {"cpu": {"mode": "qat"}}}}, "qat"),
        ({"precision": {"tolerances": {"int4": {"atol": 1}}}}, "int4"),
    ],
)
def test_bad_precision_settings_are_one_line_errors(tmp_path, change, message):
    spec = minimal_spec() | change
    with pytest.raises(SpecError) as error:
        _parse(tmp_path, spec)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_int8_without_calibration_data_is_refused(tmp_path):
    spec = _gated(eval="eval.npz")
    spec["precision"] = {"variants": ["fp32", "int8"]}
    with pytest.raises(SpecError, match="data.calibration"):
        _parse(tmp_path, spec)


def test_top1_drop_needs_eval_labels(tmp_path):
    spec = _gated(eval="eval.npz")
    spec["accuracy"] = {"metric": "top1_drop"}
    with pytest.raises(SpecError, match="eval_labels"):
        _parse(tmp_path, spec)
    spec["data"]["eval_labels"] = "labels.npz"
    assert _parse(tmp_path, spec).accuracy.effective_budget == 1.0


def test_accuracy_output_must_be_an_output(tmp_path):
    spec = _gated(eval="eval.npz")
    spec["accuracy"]["output"] = "logits"
    with pytest.raises(SpecError, match="accuracy.output 'logits' is not an output"):
        _parse(tmp_path, spec)


def test_a_model_can_be_named_by_folder_name_or_path(tmp_path):
    from conftest import write_spec

    from triton_repo.core.spec import find_model

    path = write_spec(tmp_path / "models", minimal_spec())
    assert find_model("toy", tmp_path / "models").path == path
    assert find_model(path.parent, tmp_path / "models").path == path
    with pytest.raises(SpecError, match="no such spec file"):
        find_model("nothere", tmp_path / "models")


def _unbatched(**changes) -> dict:
    spec = _gated(eval="eval.npz")
    spec["max_batch_size"] = 0
    spec["axes"] = {"seq": {"min": 1, "opt": 8, "max": 16}}
    spec["inputs"] = [{"name": "input_ids", "dtype": "int64", "dims": ["seq"]}]
    spec["outputs"] = [{"name": "embedding", "dtype": "float32", "dims": [4]}]
    spec.update(changes)
    return spec


def test_an_unbatched_model_builds_fp32_only_by_default(tmp_path):
    assert _parse(tmp_path, _unbatched()).precisions == ["fp32"]


def test_an_unbatched_model_asking_for_lower_precisions_is_told_why_not(tmp_path):
    with pytest.raises(SpecError, match=r"need a batched model: .*set precision.variants: \[fp32\]"):
        _parse(tmp_path, _unbatched(precision={"variants": ["fp32", "fp16"]}))
