"""What a rebuild with nothing changed skips, and what makes it do the work again: the data sets' digests,
verify's pass, the staged files' checked runs, and the served check's record."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from tests.unit.conftest import write_spec
from tests.unit.runtimes.test_runtime_isolation import artifact_runtime
from triton_repo.builders.data import DataSet, ModelData
from triton_repo.builders.verify import verify
from triton_repo.clients.infer import InferCheck, last_check, save_checks
from triton_repo.core.errors import CheckFailed
from triton_repo.core.fingerprint import arrays_digest
from triton_repo.core.golden import GoldenCase, save_golden
from triton_repo.core.spec import Tolerance, load_spec
from triton_repo.runtimes import run_cache
from triton_repo.runtimes.isolated import ORT, IsolatedSession

DATA_PY = """
import json
from pathlib import Path

import numpy as np

CALLS = Path(__file__).parent.parent / "calls.json"


def _count(name):
    calls = json.loads(CALLS.read_text()) if CALLS.is_file() else {}
    calls[name] = calls.get(name, 0) + 1
    CALLS.write_text(json.dumps(calls))


def sample():
    return {"x": np.ones((2, 4), np.float32)}


def evaluation():
    _count("eval")
    return {"x": np.arange(24, dtype=np.float32).reshape(6, 4)}


def labels():
    _count("labels")
    return np.array([0, 1, -1, 1, 0, 2])


def texts():
    _count("texts")
    return ["a sentence", "another one, with a trailing NUL\\x00"]
"""


def doubling_model(path: Path) -> Path:
    """y = 2 x over [batch, 4]."""
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "x"], ["y"], name="double")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.fixture
def model(tmp_path):
    spec = {
        "name": "double",
        "source": {"onnx": "model.onnx"},
        "axes": {"batch": {"min": 1, "opt": 2, "max": 8}},
        "inputs": [{"name": "x", "dtype": "float32", "dims": ["batch", 4]}],
        "outputs": [{"name": "y", "dtype": "float32", "dims": ["batch", 4]}],
        "data": {"sample": "data:sample", "eval": "data:evaluation", "eval_labels": "data:labels"},
    }
    path = write_spec(tmp_path, spec)
    (path.parent / "data.py").write_text(DATA_PY)
    doubling_model(path.parent / "model.onnx")
    return load_spec(path)


def calls(loaded) -> dict:
    path = loaded.folder.parent / "calls.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def test_a_data_sets_digest_is_remembered_so_a_rebuild_computes_no_data(model, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    first = ModelData(model, work, "fingerprint-1")
    digest = first.get("eval").digest
    assert digest == arrays_digest(first.get("eval").arrays)  # the digest of the very rows
    labels = first.get("eval_labels")
    assert labels.arrays["labels"].tolist() == [0, 1, -1, 1, 0, 2]
    assert first.get("calibration") is None  # the spec has none
    remembered = labels.digest
    before = calls(model)
    assert before == {"eval": 1, "labels": 1}  # the labels counted the eval rows already loaded
    again = ModelData(model, work, "fingerprint-1")
    assert again.get("eval").digest == digest and again.get("eval_labels").digest == remembered
    assert calls(model) == before  # neither function ran again


def test_a_changed_model_folder_makes_the_data_computed_again(model, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    first = ModelData(model, work, "fingerprint-1").get("eval").digest
    before = calls(model)["eval"]
    second = ModelData(model, work, "fingerprint-2").get("eval").digest  # export's of an edited folder
    assert calls(model)["eval"] == before + 1 and second == first  # computed again, the same rows


def test_remembered_samples_and_files_come_back_as_they_were_made(model, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    texts = np.empty((2, 1), dtype=object)
    texts[:, 0] = [b"a sentence", b"another one, with a trailing NUL\x00"]
    made = ModelData(model, work, "f").remember("ensemble.samples", lambda: texts)
    kept = ModelData(model, work, "f").remember("ensemble.samples", lambda: pytest.fail("made again"))
    assert kept.tolist() == made.tolist() == texts.tolist()
    tokenizer = model.folder / "model.onnx"
    assert ModelData(model, work, "f").remember_file("tokenizer", lambda: tokenizer) == tokenizer
    assert ModelData(model, work, "f").remember_file("tokenizer", lambda: pytest.fail("again")) == tokenizer
    tokenizer.rename(tokenizer.with_name("moved.onnx"))  # a remembered file that went away is asked for again
    moved = tokenizer.with_name("moved.onnx")
    assert ModelData(model, work, "f").remember_file("tokenizer", lambda: moved) == moved


def test_data_in_memory_has_the_digest_of_its_arrays():
    arrays = {"x": np.zeros((3, 2), np.float32)}
    data = DataSet.of(arrays)
    assert data.arrays is arrays and data.digest == arrays_digest(arrays)


def _golden(loaded, path: Path, scale: float = 2.0) -> Path:
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    save_golden([GoldenCase("sample", {"x": x}, {"y": scale * x})], path)
    return path


def test_verify_remembers_a_pass_and_checks_again_when_the_golden_data_changes(model, tmp_path):
    golden = _golden(model, tmp_path / "golden.npz")
    onnx_path = model.folder / "model.onnx"
    first = verify(model, onnx_path, golden)
    assert (tmp_path / "verify.json").is_file() and first.worst_abs == 0.0
    again = verify(model, onnx_path, golden)
    assert again.seconds == 0.0 and again.rows == first.rows  # remembered, row for row
    _golden(model, golden, scale=3.0)  # outputs the model does not give: the pass must not be reused
    with pytest.raises(CheckFailed, match="differs from PyTorch"):
        verify(model, onnx_path, golden)


def test_run_once_keeps_a_runs_outputs_and_starts_no_worker_for_the_same_run(tmp_path, monkeypatch):
    started = []

    class Counted(IsolatedSession):
        def __init__(self, *args, **kwargs):
            started.append(args[1])
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(run_cache, "IsolatedSession", Counted)
    onnx_path = doubling_model(tmp_path / "model.onnx")
    runtime, cache = artifact_runtime(), tmp_path / "runs"
    x = {"x": np.ones((3, 4), np.float32)}
    first = run_cache.run_once(runtime, onnx_path, x, ["y"], 1, ORT, cache)
    second = run_cache.run_once(runtime, onnx_path, x, ["y"], 1, ORT, cache)
    assert len(started) == 1 and np.array_equal(first["y"], second["y"]) and first["y"][0, 0] == 2.0
    run_cache.run_once(runtime, onnx_path, {"x": np.zeros((3, 4), np.float32)}, ["y"], 1, ORT, cache)
    assert len(started) == 2  # other inputs: another run


def _checks(passed: bool = True) -> list[InferCheck]:
    tolerance = Tolerance(atol=1e-4, rtol=1e-3)
    return [
        InferCheck("double_fp32", protocol, "y", 0.0, 0.0, tolerance, passed) for protocol in ("grpc", "http")
    ]


def test_the_last_check_covers_a_repository_only_while_its_manifest_is_unchanged(tmp_path):
    repository, work = tmp_path / "model_repository", tmp_path / "build"
    repository.mkdir()
    (repository / "manifest.json").write_text('{"models": {"double_fp32": {}}}')
    models, both = ["double_fp32"], ["grpc", "http"]
    covered, line = last_check(work, repository, models, both)
    assert not covered and "no check" in line
    save_checks(work, repository, models, {}, _checks())
    covered, line = last_check(work, repository, models, both)
    assert covered and "unchanged since its last check passed (2 checks over grpc and http" in line
    assert not last_check(work, repository, [*models, "other"], both)[0]  # a model it did not check
    (repository / "manifest.json").write_text('{"models": {"double_fp32": {"version": 2}}}')
    covered, line = last_check(work, repository, models, both)
    assert not covered and "changed since the last check" in line


def test_a_failed_or_one_protocol_check_does_not_cover_the_repository(tmp_path):
    repository, work = tmp_path / "model_repository", tmp_path / "build"
    repository.mkdir()
    (repository / "manifest.json").write_text('{"models": {}}')
    save_checks(work, repository, ["double_fp32"], {}, _checks(passed=False))
    covered, line = last_check(work, repository, ["double_fp32"], ["grpc", "http"])
    assert not covered and "failed" in line
    save_checks(work, repository, ["double_fp32"], {}, _checks()[:1])
    covered, line = last_check(work, repository, ["double_fp32"], ["grpc", "http"])
    assert not covered and "did not cover http" in line
