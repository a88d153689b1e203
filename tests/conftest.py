"""Test-wide hooks: tests marked `gpu` are skipped, with the reason, where there is no CUDA device and TensorRT.

`make test` runs two workers (pytest-xdist, --dist loadfile): each module on one worker, its fixtures built
once. Two modules use the checkout's own build/ and model_repository/ (what `make build-repo` wrote) and may
run at the same time: test_zoo_trust only reads them, and test_serve_and_infer's rebuild publishes nothing.
(--dist loadgroup with xdist_group markers did not group here: xdist 3.8 on pytest 9.2 spread a group's
tests over both workers.)"""

from __future__ import annotations

import importlib.util
import shutil

import pytest


def _gpu_missing_reason() -> str | None:
    if shutil.which("nvidia-smi") is None:
        return "no NVIDIA GPU on this machine (nvidia-smi not found)"
    if importlib.util.find_spec("tensorrt") is None:
        return "TensorRT is not installed in this environment"
    return None


def pytest_collection_modifyitems(config, items):
    reason = _gpu_missing_reason()
    if reason is None:
        return
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=reason))
