"""What a benchmark sends: the variants it measures, and one request's inputs at a shape from the spec."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import minimal_spec

from triton_repo.clients.bench.workload import axis_sizes, parse_shape, request_inputs, select_variants
from triton_repo.core.errors import TritonRepoError
from triton_repo.core.golden import GoldenCase, save_golden
from triton_repo.core.spec import LoadedSpec, parse_spec

# minimal_spec: batch 1..4..8 (no max_batch_size, so 8), seq 2..16..32, int64 input_ids and attention_mask.
IDS = (np.arange(2 * 16, dtype=np.int64).reshape(2, 16) + 100) % 120  # values 100..119 and 0..11
MASK = np.ones((2, 16), dtype=np.int64)


def loaded_spec(tmp_path: Path, data: dict | None = None) -> LoadedSpec:
    data = data or minimal_spec()
    return parse_spec(data, tmp_path / data["name"] / "model.yaml")


def golden_file(tmp_path: Path, inputs: dict[str, np.ndarray]) -> Path:
    """A golden.npz whose first case is NOT the sample, so using the wrong case shows."""
    decoy = {name: np.full((1, 2), -7, dtype=array.dtype) for name, array in inputs.items()}
    path = tmp_path / "golden.npz"
    save_golden(
        [
            GoldenCase(
                label="batch=1,seq=2", inputs=decoy, outputs={"embedding": np.zeros((1, 4), np.float32)}
            ),
            GoldenCase(label="sample", inputs=inputs, outputs={"embedding": np.zeros((2, 4), np.float32)}),
        ],
        path,
    )
    return path


def float_spec() -> dict:
    """A batched float32 image-like input with a dynamic width, and a bool flag per row."""
    return {
        "name": "pixels",
        "source": {"onnx": "model.onnx"},
        "axes": {"batch": {"min": 1, "opt": 2, "max": 4}, "width": {"min": 4, "opt": 6, "max": 8}},
        "inputs": [
            {"name": "image", "dtype": "float32", "dims": ["batch", 3, "width"]},
            {"name": "flag", "dtype": "bool", "dims": ["batch", 1]},
        ],
        "outputs": [{"name": "logits", "dtype": "float32", "dims": ["batch", 10]}],
        "data": {"sample": "sample.npz"},
    }


def rejected(loaded: LoadedSpec, batch: int, shape: dict[str, int], *parts: str) -> None:
    with pytest.raises(TritonRepoError) as info:
        axis_sizes(loaded, batch, shape)
    for part in parts:
        assert part in str(info.value)


# parse_shape


def test_parse_shape_reads_axis_equals_size_options():
    assert parse_shape(("seq=128", "width=7")) == {"seq": 128, "width": 7}
    assert parse_shape(()) == {}


@pytest.mark.parametrize("value", ["seq", "seq=", "=128", "seq=abc", "seq=-1", "seq=1.5", "seq 128"])
def test_parse_shape_rejects_a_value_that_is_not_axis_equals_size_and_names_it(value):
    with pytest.raises(TritonRepoError) as info:
        parse_shape(("width=4", value))
    assert repr(value) in str(info.value)
    assert "AXIS=SIZE" in str(info.value)


# axis_sizes


def test_axis_sizes_default_to_the_batch_given_and_each_axis_opt_size(tmp_path):
    assert axis_sizes(loaded_spec(tmp_path), 2, {}) == {"batch": 2, "seq": 16}


def test_axis_sizes_take_a_shape_option_at_either_end_of_the_axis_range(tmp_path):
    loaded = loaded_spec(tmp_path)
    assert axis_sizes(loaded, 1, {"seq": 2}) == {"batch": 1, "seq": 2}
    assert axis_sizes(loaded, 8, {"seq": 32}) == {"batch": 8, "seq": 32}


@pytest.mark.parametrize("batch", [0, 9])
def test_axis_sizes_reject_a_batch_outside_1_to_max_batch_size_naming_the_option(tmp_path, batch):
    rejected(loaded_spec(tmp_path), batch, {}, f"--batch {batch}", "1..8")


def test_axis_sizes_check_batch_against_max_batch_size_not_the_batch_axis_max(tmp_path):
    data = minimal_spec()
    data["max_batch_size"] = 4  # axes.batch.max stays 8
    rejected(loaded_spec(tmp_path, data), 5, {}, "--batch 5", "1..4", "max_batch_size")


@pytest.mark.parametrize("size", [1, 33])
def test_axis_sizes_reject_an_axis_size_outside_its_range_naming_the_option(tmp_path, size):
    rejected(loaded_spec(tmp_path), 1, {"seq": size}, f"--shape seq={size}", "2..32", "axes.seq")


def test_axis_sizes_reject_an_unknown_axis_naming_the_option_and_the_axes(tmp_path):
    rejected(loaded_spec(tmp_path), 1, {"width": 4}, "--shape width", "'batch', 'seq'")


def test_axis_sizes_reject_batch_given_as_a_shape_and_point_to_the_batch_option(tmp_path):
    rejected(loaded_spec(tmp_path), 1, {"batch": 2}, "--shape batch", "--batch")


def test_axis_sizes_reject_a_batch_above_1_for_an_unbatched_model(tmp_path):
    data = minimal_spec()
    data["axes"] = {"seq": {"min": 2, "opt": 16, "max": 32}}
    data["inputs"] = [{"name": "input_ids", "dtype": "int64", "dims": ["seq"]}]
    data["outputs"] = [{"name": "embedding", "dtype": "float32", "dims": [4]}]
    loaded = loaded_spec(tmp_path, data)
    assert axis_sizes(loaded, 1, {}) == {"seq": 16}
    rejected(loaded, 2, {}, "--batch 2", "not batched")


# request_inputs


def test_golden_data_is_the_golden_sample_resized_to_the_request_shape(tmp_path):
    loaded = loaded_spec(tmp_path)
    arrays = request_inputs(
        loaded,
        golden_file(tmp_path, {"input_ids": IDS, "attention_mask": MASK}),
        {"batch": 3, "seq": 20},
        "golden",
    )
    ids = arrays["input_ids"]
    assert set(arrays) == {"input_ids", "attention_mask"}
    assert ids.shape == (3, 20) and ids.dtype == np.int64
    assert ids.flags.c_contiguous
    assert np.isin(ids, IDS).all()  # values the model really sees, not the decoy case's -7
    np.testing.assert_array_equal(ids[:2, :16], IDS)
    np.testing.assert_array_equal(arrays["attention_mask"], np.ones((3, 20), dtype=np.int64))


def test_golden_data_can_be_cut_below_the_samples_size(tmp_path):
    loaded = loaded_spec(tmp_path)
    arrays = request_inputs(
        loaded,
        golden_file(tmp_path, {"input_ids": IDS, "attention_mask": MASK}),
        {"batch": 1, "seq": 4},
        "golden",
    )
    np.testing.assert_array_equal(arrays["input_ids"], IDS[:1, :4])


def test_random_integer_data_has_the_spec_shape_and_dtype_within_the_golden_range(tmp_path):
    loaded = loaded_spec(tmp_path)
    golden = golden_file(tmp_path, {"input_ids": IDS, "attention_mask": MASK})
    arrays = request_inputs(loaded, golden, {"batch": 4, "seq": 32}, "random")
    ids = arrays["input_ids"]
    assert ids.shape == (4, 32) and ids.dtype == np.int64
    assert IDS.min() <= ids.min() and ids.max() <= IDS.max()
    assert len(np.unique(ids)) > 20  # drawn over the range, not copied from one value
    assert not np.isin(ids, IDS).all()  # values across the range (0..119), not only the sample's
    np.testing.assert_array_equal(arrays["attention_mask"], np.ones((4, 32), dtype=np.int64))


def test_random_float_and_bool_data_have_the_spec_dtype_within_the_golden_range(tmp_path):
    loaded = loaded_spec(tmp_path, float_spec())
    image = np.linspace(-2.0, 3.0, 2 * 3 * 6, dtype=np.float32).reshape(2, 3, 6)
    flag = np.array([[True], [True]])
    arrays = request_inputs(
        loaded, golden_file(tmp_path, {"image": image, "flag": flag}), {"batch": 4, "width": 8}, "random"
    )
    assert arrays["image"].shape == (4, 3, 8) and arrays["image"].dtype == np.float32
    assert arrays["image"].min() >= -2.0 and arrays["image"].max() <= 3.0
    assert not np.isin(arrays["image"], image).all()  # new values, not the sample's
    assert arrays["flag"].shape == (4, 1) and arrays["flag"].dtype == np.bool_
    assert arrays["flag"].all()  # the golden flag is only ever True


def test_random_data_is_the_same_on_every_call(tmp_path):
    loaded = loaded_spec(tmp_path)
    golden = golden_file(tmp_path, {"input_ids": IDS, "attention_mask": MASK})
    first = request_inputs(loaded, golden, {"batch": 2, "seq": 8}, "random")
    second = request_inputs(loaded, golden, {"batch": 2, "seq": 8}, "random")
    np.testing.assert_array_equal(first["input_ids"], second["input_ids"])


# select_variants


def manifest() -> dict:
    entry = {"spec": "models/x/model.yaml", "version": 1}
    return {
        "format": 1,
        "models": {
            "toy_fp32": {**entry, "source_model": "toy", "precision": "fp32"},
            "toy_fp16": {**entry, "source_model": "toy", "precision": "fp16"},
            "digits_fp32": {**entry, "source_model": "digits", "precision": "fp32", "version": 3},
        },
    }


def test_a_source_model_name_selects_all_its_variants(tmp_path):
    variants = select_variants(manifest(), tmp_path, ["toy"])
    assert [v.name for v in variants] == ["toy_fp16", "toy_fp32"]
    assert {v.source_model for v in variants} == {"toy"}
    assert [v.precision for v in variants] == ["fp16", "fp32"]
    assert variants[0].version_dir == tmp_path / "toy_fp16" / "1"


def test_a_triton_model_name_selects_only_that_variant(tmp_path):
    [variant] = select_variants(manifest(), tmp_path, ["digits_fp32"])
    assert (variant.name, variant.source_model, variant.precision) == ("digits_fp32", "digits", "fp32")
    assert variant.version_dir == tmp_path / "digits_fp32" / "3"
    assert variant.entry == manifest()["models"]["digits_fp32"]


def test_no_names_select_every_published_variant_grouped_by_source_model(tmp_path):
    variants = select_variants(manifest(), tmp_path, [])
    assert [v.name for v in variants] == ["digits_fp32", "toy_fp16", "toy_fp32"]


def test_a_variant_named_twice_is_selected_once(tmp_path):
    variants = select_variants(manifest(), tmp_path, ["toy_fp32", "toy"])
    assert [v.name for v in variants] == ["toy_fp32", "toy_fp16"]


def test_an_unknown_name_is_rejected_with_the_list_of_published_models(tmp_path):
    with pytest.raises(TritonRepoError) as info:
        select_variants(manifest(), tmp_path, ["toy", "resnet"])
    message = str(info.value)
    assert "'resnet'" in message
    assert "['digits_fp32', 'toy_fp16', 'toy_fp32']" in message
    assert str(tmp_path / "manifest.json") in message


def test_axis_sizes_reject_a_size_inside_the_range_that_is_not_a_multiple_the_axis_needs(tmp_path):
    data = minimal_spec()
    data["axes"]["seq"] = {"min": 8, "opt": 16, "max": 32, "multiple_of": 8}
    rejected(loaded_spec(tmp_path, data), 1, {"seq": 12}, "--shape seq=12", "8..32 in steps of 8")
    assert axis_sizes(loaded_spec(tmp_path, data), 1, {"seq": 24}) == {"batch": 1, "seq": 24}
