"""The fused model template's batching: requests' tensors merged and padded, texts grouped by length, and a
whole execute() with a stand-in for the python backend's module and a small ONNX Runtime session."""

from __future__ import annotations

import importlib.util
import sys
import types

import numpy as np
import pytest

from triton_repo.repo.fused import TEMPLATES


class _Tensor:
    def __init__(self, name, array):
        self.name, self.array = name, array

    def as_numpy(self):
        return self.array


class _Response:
    def __init__(self, output_tensors, error=None):
        self.output_tensors, self.error = output_tensors, error


class _Error:
    INVALID_ARG = 3

    def __init__(self, message, code=None):
        self.message, self.code = message, code


@pytest.fixture(scope="module")
def fused():
    """The template as the python backend imports it, with onnx_model.py and preprocessing.py beside it."""
    stand_in = types.ModuleType("triton_python_backend_utils")
    stand_in.Tensor, stand_in.InferenceResponse, stand_in.TritonError = _Tensor, _Response, _Error
    stand_in.get_input_tensor_by_name = lambda request, name: request.get(name)
    stand_in.triton_string_to_numpy = lambda name: {"TYPE_FP32": np.float32}[name]
    saved = {
        name: sys.modules.get(name) for name in ("triton_python_backend_utils", "onnx_model", "preprocessing")
    }
    sys.modules["triton_python_backend_utils"] = stand_in
    spec = importlib.util.spec_from_file_location("fused_model_under_test", TEMPLATES / "fused_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    for name, previous in saved.items():
        if previous is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = previous


def test_merge_pads_each_request_to_the_longest_with_its_pad_value(fused):
    short = {"ids": np.array([[5, 6]]), "mask": np.array([[1, 1]])}
    long = {"ids": np.array([[7, 8, 9, 4], [1, 2, 3, 3]]), "mask": np.ones((2, 4), dtype=np.int64)}
    merged = fused.merge([short, long], {"ids": 99, "mask": 0})
    np.testing.assert_array_equal(merged["ids"], [[5, 6, 99, 99], [7, 8, 9, 4], [1, 2, 3, 3]])
    np.testing.assert_array_equal(merged["mask"], [[1, 1, 0, 0], [1, 1, 1, 1], [1, 1, 1, 1]])
    assert fused.merge([short], {}) is short  # one request: as it came


def test_buckets_group_rows_of_similar_length_and_cover_every_row_once(fused):
    lengths = np.array([40, 10, 11, 12, 10, 9, 41, 13, 12, 11, 10, 39, 12])
    groups = fused.buckets(lengths, smallest=4, spread=1.25)
    assert sorted(np.concatenate(groups).tolist()) == list(range(len(lengths)))
    assert [sorted(lengths[g].tolist()) for g in groups] == [
        [9, 10, 10, 10, 11, 11],  # up to 1.25 x its shortest
        [12, 12, 12, 13],
        [39, 40, 41],
    ]
    assert len(fused.buckets(np.array([5, 50, 500]), smallest=8)) == 1  # too few rows to split


class _Session:
    """Sums the ids where the mask is set: a row's answer does not depend on how it is padded or grouped."""

    def __init__(self):
        self.shapes = []

    def run(self, names, feed):
        self.shapes.append(feed["ids"].shape)
        return [(feed["ids"] * feed["mask"]).sum(axis=1, keepdims=True).astype(np.float32)]


def text_model(fused, monkeypatch, session, output: str, rows_only: bool):
    """The template's model set up as initialize() would, around `session`, with a word tokenizer whose
    ids are the words' lengths (undecodable bytes fail)."""
    model = fused.TritonPythonModel()
    model.step = {"kind": "tokenize", "ids": "ids", "mask": "mask"}
    model.pads, model.input_name, model.rows_only = {"ids": 0, "mask": 0}, "TEXT", rows_only
    model.outputs = [(output, np.float32)]
    model.session = session
    model.stages = types.SimpleNamespace(add=lambda *a: None)

    def tokenize(step, raw):
        words = [value.decode("utf-8").split() for value in raw.reshape(-1)]
        longest = max(len(w) for w in words)
        ids = np.array([[len(t) for t in w] + [0] * (longest - len(w)) for w in words])
        return {"ids": ids, "mask": (ids > 0).astype(np.int64)}

    monkeypatch.setattr(fused.preprocessing, "run", tokenize)
    return model


def test_execute_answers_each_request_as_alone_and_a_bad_one_fails_alone(fused, monkeypatch):
    model = text_model(fused, monkeypatch, _Session(), "total", rows_only=True)
    texts = [["a bb"], ["ccc dddd eeeee ffffff", "g"], [b"\xff"], ["hh " * 30]] + [["i j"]] * 8
    requests = [
        {
            "TEXT": _Tensor(
                "TEXT", np.array([[t if isinstance(t, bytes) else t.encode()] for t in rows], dtype=object)
            )
        }
        for rows in texts
    ]
    responses = model.execute(requests)
    assert "pre-processing failed: UnicodeDecodeError" in responses[2].error.message
    assert responses[2].error.code == _Error.INVALID_ARG
    expected = {0: [[3]], 1: [[18], [1]], 3: [[60]]}
    for index, values in expected.items():
        np.testing.assert_array_equal(responses[index].output_tensors[0].as_numpy(), values)
    assert all(r.output_tensors[0].as_numpy().tolist() == [[2.0]] for r in responses[4:])
    # 12 good rows: the eight 2-word ones and the short ones run apart from the 30-word one, each trimmed
    assert (
        max(shape[1] for shape in model.session.shapes) == 30
        and min(shape[1] for shape in model.session.shapes) <= 4
    )
    assert sum(shape[0] for shape in model.session.shapes) == 12


class _TokenSession:
    """A per-token output [rows, length, 1]: its size follows the padded text."""

    def __init__(self):
        self.shapes = []

    def run(self, names, feed):
        self.shapes.append(feed["ids"].shape)
        return [(feed["ids"] * feed["mask"])[..., None].astype(np.float32)]


def test_a_per_token_output_keeps_each_requests_own_length(fused, monkeypatch):
    model = text_model(fused, monkeypatch, _TokenSession(), "tags", rows_only=False)
    texts = [["a bb"], ["ccc dddd eeeee"], ["ff g"]]
    requests = [
        {"TEXT": _Tensor("TEXT", np.array([[t.encode()] for t in rows], dtype=object))} for rows in texts
    ]
    responses = model.execute(requests)
    got = [r.output_tensors[0].as_numpy()[..., 0].tolist() for r in responses]
    assert got == [[[1, 2]], [[3, 4, 5]], [[2, 1]]]  # as each request alone: no padding from the others
    assert sorted(model.session.shapes) == [(1, 3), (2, 2)]  # the two 2-word requests ran together


def test_a_letterbox_steps_geometry_never_reaches_the_runtime(fused, monkeypatch):
    class Images:
        def run(self, names, feed):
            assert sorted(feed) == ["images"]  # the geometry is for a postprocess step
            return [feed["images"].sum(axis=(1, 2, 3))[:, None]]

    model = text_model(fused, monkeypatch, Images(), "score", rows_only=True)
    model.step, model.input_name = {"kind": "letterbox"}, "IMAGE"

    def letterbox(step, raw):
        rows = len(raw.reshape(-1))
        return {"images": np.ones((rows, 3, 2, 2), np.float32), "LETTERBOX": np.zeros((rows, 5), np.float32)}

    monkeypatch.setattr(fused.preprocessing, "run", letterbox)
    request = {"IMAGE": _Tensor("IMAGE", np.array([[b"jpeg"], [b"png"]], dtype=object))}
    (response,) = model.execute([request])
    assert response.error is None and response.output_tensors[0].as_numpy().tolist() == [[12.0], [12.0]]
