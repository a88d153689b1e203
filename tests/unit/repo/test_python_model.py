"""A staged cpu model holds its runtime's files beside model.py; the manifest hashes them and publishing
verifies them."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import write_spec

from tests.unit.repo.test_writer import SPEC, X, stage_from_golden, tiny_onnx
from triton_repo.core.errors import TritonRepoError
from triton_repo.core.golden import GoldenCase, save_golden
from triton_repo.core.spec import load_spec
from triton_repo.repo.publish import publish, read_manifest, verify_published
from triton_repo.repo.python_model import python_model_files
from triton_repo.runtimes import registry

RUNTIMES_DIR = Path(registry.__file__).parent


@pytest.fixture
def model(tmp_path):
    """(loaded spec, onnx path, golden path) for test_writer's tiny model."""
    loaded = load_spec(write_spec(tmp_path / "models", SPEC))
    onnx_path, golden_path = tmp_path / "model.onnx", tmp_path / "golden.npz"
    tiny_onnx(onnx_path)
    save_golden([GoldenCase("sample", {"x": X}, {"y": X * 2 + 1})], golden_path)
    return loaded, onnx_path, golden_path


def test_a_staged_cpu_model_ships_its_runtime_files_and_publishing_verifies_them(model, tmp_path):
    repository = tmp_path / "repo"
    staged = stage_from_golden(*model, repository)
    version = staged.path / "1"
    for name in registry.RUNTIMES["onnxruntime"].files:
        assert (version / name).read_bytes() == (RUNTIMES_DIR / name).read_bytes(), name
    assert not (version / "openvino_cpu.py").exists()  # only the variant's own runtime

    publish([staged], repository, {})
    files = read_manifest(repository)["models"]["tiny_fp32"]["files"]
    assert {"1/model.py", "1/registry.py", "1/onnxruntime_cpu.py"} <= set(files)
    assert verify_published(repository) == len(files)
    (repository / "tiny_fp32" / "1" / "onnxruntime_cpu.py").write_text("# edited\n")
    with pytest.raises(TritonRepoError, match="onnxruntime_cpu.py was modified after it was published"):
        verify_published(repository)


def test_staging_a_runtime_the_registry_does_not_know_is_a_bug_named():
    known = ", ".join(sorted(registry.RUNTIMES))
    with pytest.raises(TritonRepoError, match=rf"unknown runtime 'tvm': the runtimes are {known} \(a bug\)"):
        python_model_files("tvm")
