"""Staging, validating and publishing a model directory; the golden file; compare(); content hashes."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import onnx
import pytest
from conftest import write_spec
from onnx import TensorProto, helper

from tests.helpers import artifact_runtime
from triton_repo.builders import verify as verify_module
from triton_repo.core.compare import compare
from triton_repo.core.errors import CheckFailed, TritonRepoError
from triton_repo.core.fingerprint import folder_fingerprint, sha256_file
from triton_repo.core.golden import GoldenCase, case_label, load_golden, sample_case, save_golden
from triton_repo.core.spec import Tolerance, load_spec
from triton_repo.repo.config import parse_config
from triton_repo.repo.publish import publish, read_manifest, verify_published
from triton_repo.repo.staging import StagingRequest
from triton_repo.repo.writer import (
    served_tolerances,
    stage_cpu_model,
    staging_root,
    validate_staged,
)

SPEC = {
    "name": "tiny",
    "source": {"onnx": "model.onnx"},
    "axes": {"batch": {"min": 1, "opt": 2, "max": 4}},
    "inputs": [{"name": "x", "dtype": "float32", "dims": ["batch", 4]}],
    "outputs": [
        {"name": "y", "dtype": "float32", "dims": ["batch", 4], "tolerance": {"atol": 1e-5, "rtol": 1e-5}}
    ],
    "data": {"sample": "sample.npz"},
}
X = np.arange(8, dtype=np.float32).reshape(2, 4) / 8


def tiny_onnx(path):
    """Y = X * 2 + 1, X float32 [batch, 4]."""
    two = helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])
    one = helper.make_tensor("one", TensorProto.FLOAT, [], [1.0])
    graph = helper.make_graph(
        [
            helper.make_node("Mul", ["x", "two"], ["doubled"]),
            helper.make_node("Add", ["doubled", "one"], ["y"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        initializer=[two, one],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    onnx.save(model, path)


@pytest.fixture
def model(tmp_path):
    """(loaded spec, onnx path, golden path) for the tiny model, with a correct golden sample."""
    loaded = load_spec(write_spec(tmp_path / "models", SPEC))
    onnx_path, golden_path = tmp_path / "model.onnx", tmp_path / "golden.npz"
    tiny_onnx(onnx_path)
    save_golden([GoldenCase("sample", {"x": X}, {"y": X * 2 + 1})], golden_path)
    return loaded, onnx_path, golden_path


@pytest.fixture
def repository(tmp_path):
    return tmp_path / "repo"


def stage_from_golden(loaded, onnx_path, golden_path, repository, precision="fp32"):
    """Stage the ONNX file as <name>_<precision>, expecting the golden file's sample outputs."""
    sample = sample_case(load_golden(golden_path))
    tolerances = served_tolerances(loaded, precision)
    request = StagingRequest(
        loaded, precision, onnx_path, sample, tolerances, staging_root(repository), artifact_runtime()
    )
    return stage_cpu_model(request)


def stage(model, repository):
    return stage_from_golden(*model, repository)


def test_staging_root_is_a_hidden_sibling_of_the_repository(repository):
    assert staging_root(repository) == repository.parent / ".repo.staging"


def test_stage_writes_config_onnx_template_golden_and_warmup(model, repository):
    staged = stage(model, repository)
    assert staged.name == "tiny_fp32" and staged.source_model == "tiny" and staged.precision == "fp32"
    files = sorted(str(p.relative_to(staged.path)) for p in staged.path.rglob("*") if p.is_file())
    assert files == [
        "1/golden.npz",
        "1/model.onnx",
        "1/model.py",
        "1/onnxruntime_cpu.py",  # the runtime the served model runs, the build's own module
        "1/registry.py",
        "config.pbtxt",
        "warmup/x",
    ]
    assert (staged.path / "1" / "model.onnx").read_bytes() == model[1].read_bytes()
    assert "class TritonPythonModel" in (staged.path / "1" / "model.py").read_text()
    warmup = staged.path / "warmup" / "x"
    assert warmup.stat().st_size == 4 * np.dtype(np.float32).itemsize
    assert warmup.read_bytes() == X[0].tobytes()
    config = parse_config(staged.path / "config.pbtxt")
    assert config.name == "tiny_fp32" and config.max_batch_size == 4
    assert [w.batch_size for w in config.model_warmup] == [1, 2]


def test_stage_keeps_only_the_sample_case_in_the_model_golden(model, repository):
    loaded, onnx_path, golden_path = model
    other = GoldenCase("batch=1", {"x": X[:1]}, {"y": X[:1] * 2 + 1})
    save_golden([other, GoldenCase("sample", {"x": X}, {"y": X * 2 + 1})], golden_path)
    staged = stage_from_golden(loaded, onnx_path, golden_path, repository)
    cases = load_golden(staged.path / "1" / "golden.npz")
    assert [c.label for c in cases] == ["sample"]
    np.testing.assert_array_equal(cases[0].inputs["x"], X)


def test_stage_manifest_entry_records_source_tolerances_and_hashes(model, repository):
    staged = stage(model, repository)
    entry = staged.manifest_entry
    assert entry["source_model"] == "tiny" and entry["precision"] == "fp32" and entry["version"] == 1
    assert entry["golden"] == "1/golden.npz"
    assert entry["tolerances"] == {"y": {"atol": 1e-5, "rtol": 1e-5}}
    assert entry["files"]["config.pbtxt"] == sha256_file(staged.path / "config.pbtxt")


def test_publish_moves_model_into_repository_and_writes_manifest(model, repository):
    staged = stage(model, repository)
    publish([staged], repository, {"onnxruntime": "1.0"})
    target = repository / "tiny_fp32"
    assert target.is_dir() and not staged.path.exists()
    manifest = read_manifest(repository)
    assert manifest["format"] == 2 and manifest["tools"] == {"onnxruntime": "1.0"}
    entry = manifest["models"]["tiny_fp32"]
    assert "published_at" in entry
    published = {str(p.relative_to(target)): sha256_file(p) for p in target.rglob("*") if p.is_file()}
    assert entry["files"] == published
    assert len(published) == 7


def test_stage_fails_when_golden_outputs_do_not_match_onnx(model, repository):
    loaded, onnx_path, golden_path = model
    save_golden([GoldenCase("sample", {"x": X}, {"y": X * 2 + 1.01})], golden_path)
    with pytest.raises(CheckFailed, match="tiny_fp32: staged ONNX output 'y' differs from golden"):
        stage_from_golden(loaded, onnx_path, golden_path, repository)


def test_validate_staged_fails_on_tampered_golden(model, repository):
    staged = stage(model, repository)
    config = parse_config(staged.path / "config.pbtxt")
    validate_staged(
        model[0], staged.path, config, served_tolerances(model[0], "fp32"), artifact_runtime()
    )  # untouched: passes
    save_golden([GoldenCase("sample", {"x": X}, {"y": -(X * 2 + 1)})], staged.path / "1" / "golden.npz")
    with pytest.raises(CheckFailed, match="max abs diff"):
        validate_staged(
            model[0], staged.path, config, served_tolerances(model[0], "fp32"), artifact_runtime()
        )


def test_validate_staged_fails_on_truncated_warmup_file(model, repository):
    staged = stage(model, repository)
    (staged.path / "warmup" / "x").write_bytes(b"\0" * 4)
    with pytest.raises(TritonRepoError, match="warmup file missing or not 16 bytes"):
        config = parse_config(staged.path / "config.pbtxt")
        validate_staged(
            model[0], staged.path, config, served_tolerances(model[0], "fp32"), artifact_runtime()
        )


def test_validate_staged_fails_when_config_text_differs_from_proto(model, repository):
    staged = stage(model, repository)
    config = parse_config(staged.path / "config.pbtxt")
    config.max_batch_size = 2
    with pytest.raises(TritonRepoError, match="does not parse back to the generated config"):
        validate_staged(
            model[0], staged.path, config, served_tolerances(model[0], "fp32"), artifact_runtime()
        )


def test_read_manifest_errors_when_missing(repository):
    repository.mkdir()
    with pytest.raises(
        TritonRepoError, match=r"manifest\.json: no repository manifest; build the repository"
    ):
        read_manifest(repository)


def test_read_manifest_errors_on_invalid_json(repository):
    repository.mkdir()
    (repository / "manifest.json").write_text('{"format": 1,\n  "models": ')
    with pytest.raises(TritonRepoError) as info:
        read_manifest(repository)
    assert "manifest.json: not valid JSON" in str(info.value) and "at line 2" in str(info.value)
    assert "\n" not in str(info.value)


def test_case_label_joins_axis_sizes_or_says_static():
    assert case_label({"batch": 1, "seq": 8}) == "batch=1,seq=8" and case_label({}) == "static"


def test_golden_save_and_load_preserve_order_and_arrays(tmp_path):
    cases = [GoldenCase(f"batch={b}", {"x": X[:b]}, {"y": X[:b] + 1}) for b in (1, 2)]
    cases.append(GoldenCase("sample", {"x": X}, {"y": X * 2}))
    save_golden(cases, tmp_path / "g.npz")
    loaded = load_golden(tmp_path / "g.npz")
    assert [c.label for c in loaded] == ["batch=1", "batch=2", "sample"]
    np.testing.assert_array_equal(sample_case(loaded).outputs["y"], X * 2)
    assert [p.name for p in tmp_path.iterdir()] == ["g.npz"]


TOLERANCE = Tolerance(atol=1e-3, rtol=1e-2)


def test_compare_passes_within_tolerance():
    expected = np.array([1.0, 100.0], dtype=np.float32)
    diff = compare(expected + np.array([5e-4, 0.5], dtype=np.float32), expected, TOLERANCE)
    assert diff.passed and diff.max_abs == pytest.approx(0.5)


def test_compare_fails_beyond_tolerance():
    expected = np.zeros(3, dtype=np.float32)
    diff = compare(expected + 2e-3, expected, TOLERANCE)
    assert not diff.passed and diff.max_abs == pytest.approx(2e-3)


def test_compare_fails_on_shape_mismatch():
    diff = compare(np.zeros((2, 3)), np.zeros((3, 2)), TOLERANCE)
    assert not diff.passed and diff.max_abs == float("inf")


@pytest.mark.parametrize("where", ["actual", "expected"])
def test_compare_fails_on_nan(where):
    values = {"actual": np.ones(3), "expected": np.ones(3)}
    values[where][1] = np.nan
    assert not compare(values["actual"], values["expected"], TOLERANCE).passed


def test_verify_passes_for_matching_golden_and_names_failing_case(model, tmp_path):
    loaded, onnx_path, golden_path = model
    assert all(row.passed for row in verify_module.verify(loaded, onnx_path, golden_path).rows)
    save_golden([GoldenCase("batch=2", {"x": X}, {"y": X * 3})], golden_path)
    with pytest.raises(CheckFailed, match=r"tiny: ONNX output 'y' differs from PyTorch at batch=2"):
        verify_module.verify(loaded, onnx_path, golden_path)


def test_sha256_file_matches_hashlib(tmp_path):
    path = tmp_path / "blob"
    path.write_bytes(b"x" * 3_000_000)
    assert sha256_file(path) == hashlib.sha256(b"x" * 3_000_000).hexdigest()


def test_folder_fingerprint_tracks_content_and_extras_but_not_caches(tmp_path):
    (tmp_path / "a.py").write_text("a = 1\n")
    before = folder_fingerprint(tmp_path, "opset=17")
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "a.pyc").write_bytes(b"junk")
    assert folder_fingerprint(tmp_path, "opset=17") == before
    assert folder_fingerprint(tmp_path, "opset=18") != before
    (tmp_path / "a.py").write_text("a = 2\n")
    assert folder_fingerprint(tmp_path, "opset=17") != before


def test_manifest_is_valid_json_with_sorted_keys(model, repository):
    publish([stage(model, repository)], repository, {"b": "1", "a": "2"})
    text = (repository / "manifest.json").read_text()
    assert json.loads(text)["tools"] == {"a": "2", "b": "1"} and text.endswith("\n")


def test_a_lower_precision_is_staged_under_its_own_name_with_wider_tolerances(model, repository):
    staged = stage_from_golden(*model, repository, precision="int8")
    assert staged.name == "tiny_int8" and staged.precision == "int8"
    assert parse_config(staged.path / "config.pbtxt").name == "tiny_int8"
    assert staged.manifest_entry["precision"] == "int8"
    assert staged.manifest_entry["tolerances"]["y"] == {"atol": 1e-2, "rtol": 5e-2}


def test_publish_retires_a_model_that_is_no_longer_produced(model, repository):
    loaded, onnx_path, golden_path = model
    publish([stage_from_golden(*model, repository, precision="int8")], repository, {})
    assert (repository / "tiny_int8").is_dir()
    publish([stage(model, repository)], repository, {}, retire=("tiny_int8",))
    manifest = read_manifest(repository)
    assert sorted(manifest["models"]) == ["tiny_fp32"]
    assert sorted(p.name for p in repository.iterdir()) == ["manifest.json", "tiny_fp32"]


def test_folder_fingerprint_can_skip_named_files(tmp_path):
    (tmp_path / "model.py").write_text("x = 1")
    before = folder_fingerprint(tmp_path, skip_files=frozenset({"precision.yaml"}))
    (tmp_path / "precision.yaml").write_text("int8: {}")
    assert folder_fingerprint(tmp_path, skip_files=frozenset({"precision.yaml"})) == before
    assert folder_fingerprint(tmp_path) != before


def test_verify_published_accepts_an_untouched_repository(model, repository):
    publish([stage(model, repository)], repository, {})
    assert verify_published(repository) == len(read_manifest(repository)["models"]["tiny_fp32"]["files"])


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (
            lambda folder: (folder / "1" / "model.py").write_text("# edited\n"),
            "was modified after it was published",
        ),
        (lambda folder: (folder / "config.pbtxt").unlink(), "is missing"),
        (lambda folder: (folder / "1" / "extra.bin").write_bytes(b"x"), "is not in manifest.json"),
    ],
)
def test_verify_published_names_a_modified_missing_or_added_file(model, repository, change, problem):
    publish([stage(model, repository)], repository, {})
    change(repository / "tiny_fp32")
    with pytest.raises(TritonRepoError, match=problem) as info:
        verify_published(repository)
    assert str(repository / "tiny_fp32") in str(info.value) and "\n" not in str(info.value)


def test_verify_published_ignores_the_bytecode_the_python_backend_writes(model, repository):
    publish([stage(model, repository)], repository, {})
    cache = repository / "tiny_fp32" / "1" / "__pycache__"
    cache.mkdir()
    (cache / "model.cpython-311.pyc").write_bytes(b"\0")
    assert verify_published(repository) > 0
