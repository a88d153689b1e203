"""`triton-repo build --target gpu` on a machine without a GPU: everything but the plans, and what to run next."""

from __future__ import annotations

import json

import pytest

from tests.integration.conftest import run_cli, tree_hash, write_tiny_model
from triton_repo.repo.config import parse_config
from triton_repo.repo.publish import read_manifest, verify_published
from triton_repo.serve.server import free_ports

pytestmark = pytest.mark.integration


def build_for(target: str, folder, repository, work_dir):
    return run_cli(
        "build", str(folder), "--target", target, "--repository", str(repository), "--work-dir", str(work_dir)
    )


@pytest.fixture(scope="module")
def gpu_built(tmp_path_factory):
    base = tmp_path_factory.mktemp("gpu")
    folder = write_tiny_model(base / "models")
    repository, work_dir = base / "model_repository", base / "build"
    result = build_for("gpu", folder, repository, work_dir)
    return folder, repository, work_dir, result


def test_gpu_target_without_a_gpu_writes_configs_and_onnx_and_says_what_to_run(gpu_built):
    folder, repository, work_dir, result = gpu_built
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no NVIDIA GPU on this machine" in result.stderr
    assert "On a GPU host, in this checkout: make engines && make serve-gpu" in result.stderr
    assert sorted(read_manifest(repository)["models"]) == ["tiny_fp32_onnx", "tiny_fp32_trt"]
    trt = parse_config(repository / "tiny_fp32_trt" / "config.pbtxt")
    assert trt.platform == "tensorrt_plan" and trt.max_batch_size == 16
    assert {g.kind for g in trt.instance_group} == {trt.instance_group[0].KIND_GPU}
    assert [w.name for w in trt.model_warmup] == ["profile0_min", "profile0_opt", "profile0_max"]
    onnx = parse_config(repository / "tiny_fp32_onnx" / "config.pbtxt")
    assert onnx.backend == "onnxruntime" and (repository / "tiny_fp32_onnx" / "1" / "model.onnx").is_file()
    # Nothing pretends an engine exists: no plan file, and the manifest says the engine is pending.
    assert not list((repository / "tiny_fp32_trt").rglob("*.plan"))
    entry = read_manifest(repository)["models"]["tiny_fp32_trt"]
    assert entry["engine_pending"] is True and entry["engines"] == []
    assert verify_published(repository) > 0
    assert json.loads((work_dir / "build.json").read_text())["target"] == "gpu"


def test_the_local_server_refuses_a_gpu_repository_with_what_to_do(gpu_built):
    _, repository, work_dir, _ = gpu_built
    http, grpc, metrics = free_ports(3)
    ports = ["--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics)]
    result = run_cli(
        "serve", "--repository", str(repository), "--work-dir", str(work_dir), "--detach", *ports
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "built for the gpu target" in result.stderr and "make serve-gpu" in result.stderr


def test_building_for_cpu_into_the_same_repository_retires_the_gpu_models(gpu_built, tmp_path):
    folder, repository, work_dir, _ = gpu_built
    result = build_for("cpu", folder, repository, work_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(read_manifest(repository)["models"]) == ["tiny_fp32"]
    assert "retired tiny_fp32_onnx" in result.stderr and "retired tiny_fp32_trt" in result.stderr
    assert sorted(p.name for p in repository.iterdir() if p.is_dir()) == ["tiny_fp32"]


def test_each_target_keeps_its_own_measurements_in_one_work_dir(gpu_built, tmp_path):
    """A gpu build into another repository with the same work dir leaves the cpu build's measurements
    as they were: the next cpu build reuses them and publishes nothing (its report included)."""
    folder, repository, work_dir, _ = gpu_built
    assert build_for("cpu", folder, repository, work_dir).returncode == 0  # the cpu repository, settled
    before = tree_hash(repository)
    other = build_for("gpu", folder, tmp_path / "gpu_repository", work_dir)
    assert other.returncode == 0, other.stdout + other.stderr
    again = build_for("cpu", folder, repository, work_dir)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "unchanged" in again.stdout
    assert tree_hash(repository) == before
