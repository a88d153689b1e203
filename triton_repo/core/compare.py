"""One comparison of an output with its expected value, used by every check: verify, precision, the staged
models, the engines and the served models."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from triton_repo.core.spec import Tolerance


@dataclass(frozen=True)
class Difference:
    max_abs: float
    max_rel: float
    passed: bool


def compare(actual: np.ndarray, expected: np.ndarray, tolerance: Tolerance) -> Difference:
    """Elementwise |actual - expected| <= atol + rtol * |expected| (numpy.allclose), with the worst diffs."""
    if actual.shape != expected.shape:
        return Difference(float("inf"), float("inf"), False)
    if expected.dtype.kind in "OSU":  # strings (class names): equal or not
        same = bool(np.all(actual.astype(object) == expected.astype(object)))
        return Difference(0.0 if same else float("inf"), 0.0 if same else float("inf"), same)
    actual64, expected64 = actual.astype(np.float64), expected.astype(np.float64)
    diff = np.abs(actual64 - expected64)
    max_abs = float(diff.max()) if diff.size else 0.0
    max_rel = float((diff / np.maximum(np.abs(expected64), 1e-12)).max()) if diff.size else 0.0
    passed = bool(np.all(diff <= tolerance.atol + tolerance.rtol * np.abs(expected64)))
    return Difference(max_abs, max_rel, passed and bool(np.isfinite(actual64).all()))
