"""Test-wide hooks: tests marked `gpu` are skipped, with the reason, where there is no CUDA device and TensorRT."""

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
