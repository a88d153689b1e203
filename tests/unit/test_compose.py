"""docker-compose.yml: the engines builder and the tritonserver of one pinned NGC release."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from triton_repo.core.releases import read_pinned_release

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def gpu_reserved(service: dict) -> bool:
    devices = service["deploy"]["resources"]["reservations"]["devices"]
    return any(d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", []) for d in devices)


def test_two_services(compose):
    assert set(compose["services"]) == {"engines", "triton"}


def test_one_release_pinned_in_env_and_used_by_both_images(compose):
    env_lines = [
        line for line in (ROOT / ".env").read_text().splitlines() if line.strip() and not line.startswith("#")
    ]
    assert len(env_lines) == 1 and env_lines[0].startswith("TRITON_RELEASE=")
    read_pinned_release(ROOT / ".env")  # a release the table knows
    engines, triton = compose["services"]["engines"]["image"], compose["services"]["triton"]["image"]
    assert re.fullmatch(r"nvcr\.io/nvidia/tensorrt:\$\{TRITON_RELEASE:\?[^}]*\}-py3", engines)
    assert re.fullmatch(r"nvcr\.io/nvidia/tritonserver:\$\{TRITON_RELEASE:\?[^}]*\}-py3", triton)
    text = (ROOT / "docker-compose.yml").read_text()
    assert not re.search(r":\d{2}\.\d{2}-py3", text), (
        "a release tag is written out instead of ${TRITON_RELEASE}"
    )


def test_both_services_reserve_a_gpu(compose):
    assert gpu_reserved(compose["services"]["engines"]) and gpu_reserved(compose["services"]["triton"])


def test_engines_builds_the_gpu_target_on_the_mounted_checkout(compose):
    engines = compose["services"]["engines"]
    assert engines["command"][:3] == ["make", "build-repo", "TARGET=gpu"]
    (mount,) = engines["volumes"]
    assert mount["source"] == "." and mount["target"] == engines["working_dir"]
    assert engines["profiles"] == ["engines"]  # never started by `docker compose up`


def test_triton_mounts_the_repository_read_only_and_runs_as_non_root(compose):
    triton = compose["services"]["triton"]
    (mount,) = triton["volumes"]
    assert mount["target"] == "/models" and mount["read_only"] is True
    assert "model_repository" in mount["source"]
    uid = str(triton["user"]).split(":")[0]
    assert uid.isdigit() and int(uid) != 0


def test_triton_command_is_locked_down(compose):
    command = compose["services"]["triton"]["command"]
    assert command[0] == "tritonserver"
    assert "--model-repository=/models" in command
    assert "--disable-auto-complete-config" in command
    assert "--strict-readiness=true" in command
    assert "--model-control-mode=none" in command  # clients cannot load or unload models
    assert not any(part.startswith("--load-model") for part in command)


def test_triton_ports_and_healthcheck(compose):
    triton = compose["services"]["triton"]
    assert sorted(triton["ports"]) == ["8000:8000", "8001:8001", "8002:8002"]
    check = triton["healthcheck"]
    assert check["test"][0] == "CMD" and any("/v2/health/ready" in part for part in check["test"])
    assert "8000" in " ".join(check["test"])


def test_trt_cache_is_the_only_writable_path_the_configs_name(compose):
    from triton_repo.repo.gpu_config import TRT_CACHE_ROOT

    assert any(entry.startswith(f"{TRT_CACHE_ROOT}:") for entry in compose["services"]["triton"]["tmpfs"])
