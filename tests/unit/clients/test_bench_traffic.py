"""A traffic sample: each kind of file read, checked against what the model takes, cut into requests,
and the load generator sending every prepared request in turn."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from conftest import minimal_spec

from triton_repo.clients.bench import traffic as tr
from triton_repo.clients.bench.load import Connection, Request
from triton_repo.core.errors import TritonRepoError
from triton_repo.core.spec import parse_spec

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 16
JPEG = b"\xff\xd8\xff\xe0" + b"\0" * 16

ENSEMBLE_CONFIG = """
name: "{name}"
platform: "ensemble"
max_batch_size: {max_batch}
input {{ name: "{input}" data_type: {dtype} {dims} }}
output {{ name: "logits" data_type: TYPE_FP32 dims: 10 }}
"""


def config(tmp_path: Path, name: str, input_: str, dtype: str, dims: list[int], max_batch: int = 8) -> Path:
    folder = tmp_path / name
    folder.mkdir(parents=True, exist_ok=True)
    text = ENSEMBLE_CONFIG.format(
        name=name, max_batch=max_batch, input=input_, dtype=dtype, dims=" ".join(f"dims: {d}" for d in dims)
    )
    (folder / "config.pbtxt").write_text(text)
    return folder / "config.pbtxt"


def text_takes(tmp_path: Path) -> tr.Takes:
    return tr.takes_of_config("minilm", config(tmp_path, "minilm", "TEXT", "TYPE_STRING", [1]))


def spec_takes(tmp_path: Path) -> tr.Takes:
    data = minimal_spec()
    return tr.takes_of_spec(parse_spec(data, tmp_path / "toy" / "model.yaml"), "toy_fp32")


def refused(traffic: tr.Traffic, takes: tr.Takes, *parts: str) -> None:
    with pytest.raises(TritonRepoError) as info:
        tr.bind(traffic, takes)
    assert "\n" not in str(info.value)
    for part in parts:
        assert part in str(info.value)


# load_traffic


def test_text_file_is_one_text_per_non_empty_line(tmp_path):
    path = tmp_path / "lines.txt"
    path.write_text("first sentence\n\n  \nsecond one\nthird\n")
    traffic = tr.load_traffic(path)
    assert traffic.kind == "text" and traffic.raw and traffic.rows == 3
    assert list(traffic.arrays[tr.RAW]) == [b"first sentence", b"second one", b"third"]


def test_folder_of_images_is_read_as_their_bytes_in_name_order(tmp_path):
    (tmp_path / "b.png").write_bytes(PNG)
    (tmp_path / "a.JPG").write_bytes(JPEG)
    (tmp_path / "notes.md").write_text("not an image")
    traffic = tr.load_traffic(tmp_path)
    assert traffic.kind == "images" and list(traffic.arrays[tr.RAW]) == [JPEG, PNG]


def test_txt_listing_image_paths_is_read_as_images_relative_to_the_list(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.png").write_bytes(PNG)
    (tmp_path / "list.txt").write_text("photos/cat.png\nphotos/cat.png\n")
    traffic = tr.load_traffic(tmp_path / "list.txt")
    assert traffic.kind == "images" and traffic.rows == 2


def test_txt_listing_a_missing_image_is_refused_naming_it(tmp_path):
    (tmp_path / "list.txt").write_text("gone.jpg\n")
    with pytest.raises(TritonRepoError, match="gone.jpg, which does not exist"):
        tr.load_traffic(tmp_path / "list.txt")


def test_folder_without_images_and_a_file_that_is_no_image_are_refused(tmp_path):
    with pytest.raises(TritonRepoError, match="no image files"):
        tr.load_traffic(tmp_path)
    (tmp_path / "fake.jpg").write_text("hello")
    with pytest.raises(TritonRepoError, match="fake.jpg is not a JPEG"):
        tr.load_traffic(tmp_path)


def test_npy_is_one_unnamed_input_and_npz_one_array_per_input(tmp_path):
    np.save(tmp_path / "one.npy", np.zeros((5, 8, 8), np.uint8))
    np.savez(
        tmp_path / "two.npz", input_ids=np.ones((4, 9), np.int64), attention_mask=np.ones((4, 9), np.int64)
    )
    one, two = tr.load_traffic(tmp_path / "one.npy"), tr.load_traffic(tmp_path / "two.npz")
    assert one.kind == two.kind == "tensors" and not one.raw
    assert set(one.arrays) == {tr.RAW} and one.rows == 5
    assert set(two.arrays) == {"input_ids", "attention_mask"} and two.rows == 4


def test_npz_whose_arrays_disagree_on_rows_is_refused(tmp_path):
    np.savez(tmp_path / "t.npz", a=np.ones((4, 2)), b=np.ones((5, 2)))
    with pytest.raises(TritonRepoError, match="same rows along axis 0"):
        tr.load_traffic(tmp_path / "t.npz")


@pytest.mark.parametrize("name", ["data.csv", "missing.txt"])
def test_unknown_suffix_and_missing_file_are_refused(tmp_path, name):
    if name.endswith(".csv"):
        (tmp_path / name).write_text("1,2\n")
    with pytest.raises(TritonRepoError, match=f"--traffic {tmp_path / name}"):
        tr.load_traffic(tmp_path / name)


# bind: names, dtypes and dims against the spec (a variant) or the config (an ensemble)


def test_text_binds_to_the_ensembles_one_bytes_input_as_rows_by_1(tmp_path):
    (tmp_path / "s.txt").write_text("a\nb\nc\n")
    arrays = tr.bind(tr.load_traffic(tmp_path / "s.txt"), text_takes(tmp_path))
    assert list(arrays) == ["TEXT"] and arrays["TEXT"].shape == (3, 1)


def test_pixels_npy_binds_to_an_ensemble_taking_uint8_8x8(tmp_path):
    np.save(tmp_path / "p.npy", np.zeros((6, 8, 8), np.uint8))
    takes = tr.takes_of_config("digits", config(tmp_path, "digits", "PIXELS", "TYPE_UINT8", [8, 8]))
    assert tr.bind(tr.load_traffic(tmp_path / "p.npy"), takes)["PIXELS"].shape == (6, 8, 8)


def test_wrong_dtype_is_refused_naming_the_input_what_was_expected_and_what_the_file_has(tmp_path):
    np.save(tmp_path / "p.npy", np.zeros((6, 8, 8), np.float32))
    takes = tr.takes_of_config("digits", config(tmp_path, "digits", "PIXELS", "TYPE_UINT8", [8, 8]))
    refused(
        tr.load_traffic(tmp_path / "p.npy"),
        takes,
        "input 'PIXELS' of digits",
        "expected uint8 [rows, 8, 8]",
        "p.npy has float32 [6, 8, 8]",
    )


def test_wrong_fixed_dim_is_refused(tmp_path):
    np.save(tmp_path / "p.npy", np.zeros((6, 8, 7), np.uint8))
    takes = tr.takes_of_config("digits", config(tmp_path, "digits", "PIXELS", "TYPE_UINT8", [8, 8]))
    refused(tr.load_traffic(tmp_path / "p.npy"), takes, "expected uint8 [rows, 8, 8]", "[6, 8, 7]")


def test_npz_matching_the_spec_binds_in_the_specs_input_order(tmp_path):
    ids = np.ones((4, 9), np.int64)
    np.savez(tmp_path / "t.npz", attention_mask=ids, input_ids=ids)
    arrays = tr.bind(tr.load_traffic(tmp_path / "t.npz"), spec_takes(tmp_path))
    assert list(arrays) == ["input_ids", "attention_mask"]


def test_npz_with_an_unknown_input_name_is_refused_naming_the_inputs(tmp_path):
    ids = np.ones((4, 9), np.int64)
    np.savez(tmp_path / "t.npz", input_ids=ids, mask=ids)
    refused(
        tr.load_traffic(tmp_path / "t.npz"),
        spec_takes(tmp_path),
        "array 'mask' is no input of toy_fp32",
        "'attention_mask' int64",
    )


def test_npz_missing_an_input_is_refused(tmp_path):
    np.savez(tmp_path / "t.npz", input_ids=np.ones((4, 9), np.int64))
    refused(tr.load_traffic(tmp_path / "t.npz"), spec_takes(tmp_path), "no array for input 'attention_mask'")


def test_dynamic_dim_outside_the_specs_range_is_refused_with_the_range(tmp_path):
    ids = np.ones((4, 40), np.int64)
    np.savez(tmp_path / "t.npz", input_ids=ids, attention_mask=ids)
    refused(tr.load_traffic(tmp_path / "t.npz"), spec_takes(tmp_path), "input 'input_ids'", "seq takes 2..32")


def test_text_is_refused_by_a_model_of_several_inputs(tmp_path):
    (tmp_path / "s.txt").write_text("a\n")
    refused(tr.load_traffic(tmp_path / "s.txt"), spec_takes(tmp_path), "takes 2 inputs")


def test_text_is_refused_by_a_model_taking_tensors(tmp_path):
    (tmp_path / "s.txt").write_text("a\n")
    takes = tr.takes_of_config("digits", config(tmp_path, "digits", "PIXELS", "TYPE_UINT8", [8, 8]))
    refused(tr.load_traffic(tmp_path / "s.txt"), takes, "expected uint8 [rows, 8, 8]", "has text")


# requests_of


def test_requests_take_batch_consecutive_rows_and_wrap_around_at_the_end(tmp_path):
    rows = np.arange(7, dtype=np.int64)[:, None] * np.ones((1, 3), np.int64)
    arrays = {"input_ids": rows, "attention_mask": rows}
    requests, note = tr.requests_of(arrays, 3, spec_takes(tmp_path))
    assert note == ""
    assert [list(r["input_ids"][:, 0]) for r in requests] == [[0, 1, 2], [3, 4, 5], [6, 0, 1]]
    assert all(r["input_ids"].flags["C_CONTIGUOUS"] for r in requests)


def test_requests_are_capped_and_the_cut_is_said(tmp_path):
    rows = np.zeros((tr.MAX_REQUESTS * 2 + 1, 3), np.int64)
    requests, note = tr.requests_of({"input_ids": rows, "attention_mask": rows}, 2, spec_takes(tmp_path))
    assert len(requests) == tr.MAX_REQUESTS
    assert f"{tr.MAX_REQUESTS} requests prepared" in note and str(len(rows)) in note


def test_batch_above_max_batch_size_is_refused(tmp_path):
    rows = np.zeros((3, 3), np.int64)
    with pytest.raises(TritonRepoError, match="--batch 9: toy_fp32 accepts 1..8"):
        tr.requests_of({"input_ids": rows, "attention_mask": rows}, 9, spec_takes(tmp_path))


def test_unbatched_model_gets_one_row_per_request(tmp_path):
    takes = tr.Takes("flat", (tr.Wanted("x", "float32", (4,)),), 0, "config.pbtxt")
    requests, _ = tr.requests_of({"x": np.arange(8, dtype=np.float32).reshape(2, 4)}, 1, takes)
    assert [r["x"].shape for r in requests] == [(4,), (4,)]
    with pytest.raises(TritonRepoError, match="not batched"):
        tr.requests_of({"x": np.zeros((2, 4), np.float32)}, 2, takes)


def test_label_names_the_file_rows_and_each_dynamic_dim(tmp_path):
    ids = np.ones((4, 9), np.int64)
    np.savez(tmp_path / "t.npz", input_ids=ids, attention_mask=ids)
    traffic = tr.load_traffic(tmp_path / "t.npz")
    takes = spec_takes(tmp_path)
    assert tr.traffic_label(traffic, tr.bind(traffic, takes), takes, None) == "traffic=t.npz (4 rows; seq=9)"
    (tmp_path / "s.txt").write_text("a\nb\nc\n")
    text = tr.load_traffic(tmp_path / "s.txt")
    takes = text_takes(tmp_path)
    label = tr.traffic_label(text, tr.bind(text, takes), takes, [9, 14, 41])
    assert label == "traffic=s.txt (3 rows; seq 9..41, median 14)"


# traffic_targets


def manifest() -> dict:
    return {
        "models": {
            "digits": {
                "kind": "ensemble",
                "source_model": "digits",
                "steps": ["digits_preprocess", "digits_fp32"],
            },
            "digits_preprocess": {"kind": "preprocess", "source_model": "digits"},
            "digits_fp32": {"source_model": "digits", "precision": "fp32"},
            "digits_int8": {"source_model": "digits", "precision": "int8"},
        }
    }


def targets(tmp_path: Path, names: list[str], traffic: tr.Traffic) -> list[str]:
    config(tmp_path, "digits", "PIXELS", "TYPE_UINT8", [8, 8])
    return [v.name for v in tr.traffic_targets(manifest(), tmp_path, names, traffic)]


def test_raw_rows_on_a_source_model_bench_its_ensemble(tmp_path):
    np.save(tmp_path / "p.npy", np.zeros((3, 8, 8), np.uint8))
    assert targets(tmp_path, ["digits"], tr.load_traffic(tmp_path / "p.npy")) == ["digits"]


def test_tensor_rows_a_variant_takes_on_a_source_model_bench_its_variants(tmp_path):
    np.save(tmp_path / "i.npy", np.zeros((3, 1, 8, 8), np.float32))
    assert targets(tmp_path, ["digits"], tr.load_traffic(tmp_path / "i.npy")) == [
        "digits_fp32",
        "digits_int8",
    ]


def test_ensemble_named_is_the_target_and_its_step_is_still_refused(tmp_path):
    np.save(tmp_path / "p.npy", np.zeros((3, 8, 8), np.uint8))
    traffic = tr.load_traffic(tmp_path / "p.npy")
    assert targets(tmp_path, ["digits"], traffic) == ["digits"]
    with pytest.raises(TritonRepoError, match="'digits_preprocess' is an ensemble or one of its steps"):
        targets(tmp_path, ["digits_preprocess"], traffic)


def test_raw_traffic_on_a_variant_is_refused_pointing_to_the_ensemble(tmp_path):
    (tmp_path / "s.txt").write_text("a\n")
    with pytest.raises(TritonRepoError, match=r"digits_fp32 is not one \(bench digits\)"):
        targets(tmp_path, ["digits_fp32"], tr.load_traffic(tmp_path / "s.txt"))


def test_traffic_without_a_model_name_is_refused(tmp_path):
    (tmp_path / "s.txt").write_text("a\n")
    with pytest.raises(TritonRepoError, match="name the model"):
        targets(tmp_path, [], tr.load_traffic(tmp_path / "s.txt"))


# the load generator sends every prepared request in turn


def prepared(protocol: str, traffic: tuple) -> Connection:
    """A connection with its requests prepared (made in an event loop, as the load generator does)."""
    target = Request(protocol, "127.0.0.1:1", "m", traffic[0], {"y": ((1,), "float32")}, traffic=traffic)

    async def open_and_close() -> Connection:
        connection = Connection(target, slots=3)
        await connection.open()
        await connection.close()
        return connection

    return asyncio.run(open_and_close())


def test_grpc_connection_prepares_each_request_once_and_every_slot_walks_through_all_of_them():
    from tritonclient.grpc import service_pb2

    traffic = tuple({"x": np.full((2, 1), i, np.float32)} for i in range(3))
    connection = prepared("grpc", traffic)
    sent = [
        service_pb2.ModelInferRequest.FromString(connection.next_request(slot)) for slot in (0, 1, 2, 0, 1)
    ]
    values = [np.frombuffer(r.raw_input_contents[0], np.float32)[0] for r in sent]
    assert values == [0.0, 1.0, 2.0, 0.0, 1.0]
    assert len(connection._requests) == 1 and len(connection._requests[0]) == 3


def test_grpc_request_carries_text_as_length_prefixed_bytes():
    from tritonclient.grpc import service_pb2

    text = np.empty((2, 1), dtype=object)
    text[:, 0] = [b"ab", b"cde"]
    connection = prepared("grpc", ({"TEXT": text},))
    request = service_pb2.ModelInferRequest.FromString(connection.next_request())
    assert request.inputs[0].datatype == "BYTES" and list(request.inputs[0].shape) == [2, 1]
    assert request.raw_input_contents[0] == b"\x02\x00\x00\x00ab\x03\x00\x00\x00cde"


def test_without_traffic_the_one_request_is_re_sent():
    connection = prepared("grpc", ({"x": np.zeros((1, 1), np.float32)},))
    assert connection.next_request(0) == connection.next_request(5)
