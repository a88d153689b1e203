"""What a spec refers to: .npz files and module:function callables, checked against the spec's inputs."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from conftest import minimal_spec, write_spec

from triton_repo.core.errors import SpecError
from triton_repo.core.references import check_inputs, inputs_at, load_arrays, load_callable, resize_axis
from triton_repo.core.spec import load_spec


def make_loaded(tmp_path, name="toy", **data):
    spec = minimal_spec(name)
    spec["data"] = data or {"sample": "sample.npz"}
    return load_spec(write_spec(tmp_path, spec))


def good_arrays(batch=2, seq=5):
    ids = np.arange(batch * seq, dtype=np.int64).reshape(batch, seq)
    return {"input_ids": ids, "attention_mask": np.ones((batch, seq), dtype=np.int64)}


def rejected(loaded, arrays, *parts):
    with pytest.raises(SpecError) as info:
        check_inputs(loaded, arrays, "data.sample")
    message = str(info.value)
    assert message.startswith(f"{loaded.path}: data.sample: ") and "\n" not in message
    for part in parts:
        assert part in message


def test_load_arrays_reads_npz_relative_to_model_folder(tmp_path):
    loaded = make_loaded(tmp_path, sample="data/sample.npz")
    (loaded.folder / "data").mkdir()
    np.savez(loaded.folder / "data" / "sample.npz", **good_arrays())
    arrays = load_arrays(loaded, "sample")
    assert sorted(arrays) == ["attention_mask", "input_ids"]
    np.testing.assert_array_equal(arrays["input_ids"], good_arrays()["input_ids"])


def test_load_arrays_casts_same_kind_dtype_to_spec_dtype(tmp_path):
    loaded = make_loaded(tmp_path)
    np.savez(loaded.folder / "sample.npz", **{k: v.astype(np.int32) for k, v in good_arrays().items()})
    arrays = load_arrays(loaded, "sample")
    assert all(a.dtype == np.int64 and a.flags.c_contiguous for a in arrays.values())


def test_load_arrays_rejects_npz_outside_model_folder(tmp_path):
    loaded = make_loaded(tmp_path, sample="../escape.npz")
    np.savez(tmp_path / "escape.npz", **good_arrays())
    with pytest.raises(SpecError, match=r"data\.sample: '\.\./escape\.npz' points outside the model folder"):
        load_arrays(loaded, "sample")


def test_load_arrays_rejects_absolute_npz_path(tmp_path):
    np.savez(tmp_path / "abs.npz", **good_arrays())
    loaded = make_loaded(tmp_path, sample=str(tmp_path / "abs.npz"))
    with pytest.raises(SpecError, match="points outside the model folder"):
        load_arrays(loaded, "sample")


def test_load_arrays_rejects_missing_npz(tmp_path):
    loaded = make_loaded(tmp_path, sample="nothere.npz")
    with pytest.raises(SpecError, match=r"data\.sample: file 'nothere\.npz' does not exist"):
        load_arrays(loaded, "sample")


def test_load_arrays_rejects_unset_field(tmp_path):
    loaded = make_loaded(tmp_path)
    with pytest.raises(SpecError, match=r"data\.eval is not set"):
        load_arrays(loaded, "eval")


MODULE = """
import numpy as np

def sample_inputs():
    return {"input_ids": np.ones((3, 4), dtype=np.int64), "attention_mask": np.ones((3, 4), dtype=np.int64)}

def not_a_dict():
    return [1, 2]

VALUE = 3
"""


def test_load_arrays_calls_function_from_module_in_model_folder(tmp_path):
    loaded = make_loaded(tmp_path, "callable_ok", sample="inputs:sample_inputs")
    (loaded.folder / "inputs.py").write_text(MODULE)
    arrays = load_arrays(loaded, "sample")
    assert arrays["input_ids"].shape == (3, 4)


def test_local_module_can_import_its_siblings(tmp_path, monkeypatch):
    monkeypatch.delitem(sys.modules, "helper_for_siblings_test", raising=False)  # undone after the test
    loaded = make_loaded(tmp_path, "siblings", sample="inputs:sample_inputs")
    (loaded.folder / "helper_for_siblings_test.py").write_text(MODULE)
    (loaded.folder / "inputs.py").write_text("from helper_for_siblings_test import sample_inputs\n")
    assert load_arrays(loaded, "sample")["attention_mask"].shape == (3, 4)


def test_load_callable_falls_back_to_importable_module(tmp_path):
    loaded = make_loaded(tmp_path)
    assert load_callable(loaded, "os.path:join", "data.sample")("a", "b") == "a/b"


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ("inputs:missing", "'inputs' has no function 'missing'"),
        ("inputs:VALUE", "'inputs' has no function 'VALUE'"),
        ("no_such_module_xyz:f", "module 'no_such_module_xyz' not found: no no_such_module_xyz.py in"),
    ],
)
def test_load_arrays_rejects_unresolvable_reference(tmp_path, reference, message):
    loaded = make_loaded(tmp_path, "unresolvable", sample=reference)
    (loaded.folder / "inputs.py").write_text(MODULE)
    with pytest.raises(SpecError) as info:
        load_arrays(loaded, "sample")
    assert str(info.value).startswith(f"{loaded.path}: data.sample: ")
    assert message in str(info.value)


def test_load_arrays_rejects_function_not_returning_dict(tmp_path):
    loaded = make_loaded(tmp_path, "not_dict", sample="inputs:not_a_dict")
    (loaded.folder / "inputs.py").write_text(MODULE)
    with pytest.raises(SpecError, match="returned list, expected a dict"):
        load_arrays(loaded, "sample")


def test_load_callable_resolves_per_model_folder_not_per_name(tmp_path):
    first = make_loaded(tmp_path / "a", "same_name", sample="inputs:value")
    second = make_loaded(tmp_path / "b", "same_name", sample="inputs:value")
    (first.folder / "inputs.py").write_text("def value():\n    return 'first'\n")
    (second.folder / "inputs.py").write_text("def value():\n    return 'second'\n")
    assert load_callable(first, "inputs:value", "data.sample")() == "first"
    assert load_callable(second, "inputs:value", "data.sample")() == "second"


def test_check_inputs_accepts_valid_arrays(tmp_path):
    checked = check_inputs(make_loaded(tmp_path), good_arrays(), "data.sample")
    assert checked["input_ids"].shape == (2, 5)


def test_check_inputs_rejects_wrong_names(tmp_path):
    arrays = good_arrays()
    arrays["token_ids"] = arrays.pop("input_ids")
    rejected(
        make_loaded(tmp_path), arrays, "['attention_mask', 'token_ids']", "['input_ids', 'attention_mask']"
    )


def test_check_inputs_rejects_missing_input(tmp_path):
    rejected(
        make_loaded(tmp_path), {"input_ids": good_arrays()["input_ids"]}, "arrays are named ['input_ids']"
    )


def test_check_inputs_rejects_wrong_fixed_dim(tmp_path):
    spec = minimal_spec()
    spec["inputs"][1]["dims"] = ["batch", 3]
    loaded = load_spec(write_spec(tmp_path, spec))
    rejected(loaded, good_arrays(seq=5), "input 'attention_mask' dim 1 is 5, the spec fixes it at 3")


@pytest.mark.parametrize("seq", [1, 33])
def test_check_inputs_rejects_seq_outside_range(tmp_path, seq):
    rejected(make_loaded(tmp_path), good_arrays(seq=seq), f"axis 'seq' is {seq}, outside 2..32")


def test_check_inputs_rejects_different_batch_sizes(tmp_path):
    arrays = good_arrays(batch=2)
    arrays["attention_mask"] = np.ones((3, 5), dtype=np.int64)
    rejected(make_loaded(tmp_path), arrays, "different batch sizes [2, 3]")


def test_check_inputs_rejects_wrong_rank(tmp_path):
    arrays = good_arrays()
    arrays["input_ids"] = arrays["input_ids"][..., None]
    rejected(make_loaded(tmp_path), arrays, "input 'input_ids' has shape (2, 5, 1)")


def test_check_inputs_rejects_float_for_integer_input(tmp_path):
    arrays = good_arrays()
    arrays["input_ids"] = arrays["input_ids"].astype(np.float32)
    rejected(make_loaded(tmp_path), arrays, "input 'input_ids' has dtype float32, the spec says int64")


def test_check_inputs_rejects_leading_seq_outside_range_when_unbatched(tmp_path):
    spec = minimal_spec()
    del spec["axes"]["batch"]
    spec["inputs"] = [{"name": "input_ids", "dtype": "int64", "dims": ["seq"]}]
    spec["outputs"][0]["dims"] = [4]
    loaded = load_spec(write_spec(tmp_path, spec))
    rejected(loaded, {"input_ids": np.ones(100, dtype=np.int64)}, "axis 'seq' is 100")


def test_resize_axis_cuts():
    array = np.arange(12).reshape(3, 4)
    np.testing.assert_array_equal(resize_axis(array, 1, 2), [[0, 1], [4, 5], [8, 9]])


def test_resize_axis_repeats_cyclically():
    array = np.arange(6).reshape(3, 2)
    resized = resize_axis(array, 0, 7)
    assert resized.shape == (7, 2) and resized.flags.c_contiguous
    np.testing.assert_array_equal(resized[:, 0], [0, 2, 4, 0, 2, 4, 0])


def test_resize_axis_same_size_returns_array_unchanged():
    array = np.arange(6).reshape(2, 3)
    assert resize_axis(array, 1, 3) is array


@pytest.mark.parametrize(("batch", "seq"), [(1, 2), (4, 16), (8, 32)])
def test_inputs_at_gives_requested_shapes(tmp_path, batch, seq):
    loaded = make_loaded(tmp_path)
    sample = good_arrays(batch=2, seq=5)
    resized = inputs_at(loaded, sample, {"batch": batch, "seq": seq})
    assert {k: v.shape for k, v in resized.items()} == {
        "input_ids": (batch, seq),
        "attention_mask": (batch, seq),
    }
    expected = sample["input_ids"][np.arange(batch) % 2][:, np.arange(seq) % 5]
    np.testing.assert_array_equal(resized["input_ids"], expected)


def test_inputs_at_leaves_fixed_dims_alone(tmp_path):
    spec = minimal_spec()
    spec["inputs"][1]["dims"] = ["batch", 3]
    loaded = load_spec(write_spec(tmp_path, spec))
    sample = {"input_ids": np.zeros((2, 5), np.int64), "attention_mask": np.zeros((2, 3), np.int64)}
    resized = inputs_at(loaded, sample, {"batch": 4, "seq": 7})
    assert resized["input_ids"].shape == (4, 7) and resized["attention_mask"].shape == (4, 3)
