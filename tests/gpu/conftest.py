"""GPU tests: skipped, with the reason, without a CUDA device and TensorRT (tests/conftest.py), and also when
this TensorRT is not the pinned release's (plans must be built with the TensorRT the server runs)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def pinned_release():
    from triton_repo.core.releases import read_pinned_release

    return read_pinned_release(ROOT / ".env")


@pytest.fixture(scope="session")
def gpu(pinned_release):
    """The GPU this session builds for; skips unless TensorRT here is the pinned release's."""
    from triton_repo.builders.engines import gpu_available

    status = gpu_available()
    if not status.available:
        pytest.skip(status.reason)
    import tensorrt

    if tensorrt.__version__ != pinned_release.tensorrt:
        pytest.skip(
            f"TensorRT {tensorrt.__version__} here, the pinned release {pinned_release.name} runs "
            f"{pinned_release.tensorrt}: run the gpu tests in the engines service (docker compose run --rm engines ...)"
        )
    return status


@pytest.fixture(scope="session")
def compose_available() -> None:
    if shutil.which("docker") is None:
        pytest.skip("docker is not installed")
    answer = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
    if answer.returncode != 0:
        pytest.skip(f"no docker compose plugin: {answer.stderr.strip() or answer.stdout.strip()}")
    info = subprocess.run(["docker", "info"], capture_output=True, text=True)
    if info.returncode != 0:
        pytest.skip("no Docker engine reachable (docker info failed)")
