"""Helpers the test packages share."""

from __future__ import annotations

import functools
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@functools.cache
def artifact_runtime():
    """What runs built artifacts in the tests, as in a build: the serving environment's Python when
    `make install` made one, else this Python (its ONNX Runtime)."""
    from triton_repo.runtimes.isolated import Runtime, this_runtime

    serve_python = ROOT / ".venv-serve" / "bin" / "python3"
    return Runtime(serve_python) if serve_python.exists() else this_runtime()


# What pydantic says in its own messages; none of it may reach a user (triton_repo.core.spec.loader rewrites it).
PYDANTIC_PHRASES = (
    "validation",
    "should match pattern",
    "Input should",
    "should have at least",
    "should have at most",
    "Value error",
    "Field required",
    "valid integer",
    "valid dictionary",
    "valid list",
    "Extra inputs are not permitted",
    "union",
)
