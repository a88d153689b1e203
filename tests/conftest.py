"""Test-wide hooks: tests marked `gpu` are skipped, with the reason, where there is no CUDA device and TensorRT;
and each test module is one group for `make test`'s two workers (pytest-xdist, --dist loadgroup)."""

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


# Modules that build into or read the checkout's own build/ and model_repository/ (what `make build-repo`
# wrote): one group, so they never run at the same time on two workers.
CHECKOUT_MODULES = {"test_serve_and_infer.py", "test_zoo_trust.py"}


def pytest_collection_modifyitems(config, items):
    for item in items:  # a module's tests on one worker, in order: its fixtures are built once
        name = item.path.name
        group = "checkout" if name in CHECKOUT_MODULES else str(item.path.relative_to(config.rootpath))
        item.add_marker(pytest.mark.xdist_group(group))
    reason = _gpu_missing_reason()
    if reason is None:
        return
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=reason))
