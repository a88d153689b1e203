"""Accuracy gate: every variant against FP32 on the eval set, with the spec's metric and budget."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from triton_repo.spec import DEFAULT_BUDGETS, ModelSpec

HIGHER_IS_BETTER = {"top1_drop": False, "top1_agreement": True, "cosine_min": True}


@dataclass(frozen=True)
class AccuracyResult:
    metric: str
    value: float | None  # None when the variant could not be run
    budget: float
    passed: bool
    details: dict[str, float]  # e.g. cosine_mean, top1_fp32, top1_variant
    max_abs: dict[str, float]  # per output, vs FP32 over the eval set
    max_rel: dict[str, float]
    # Set when the runtime crashed or raised running the variant: the one-line reason it is refused.
    failure: str = field(default="")

    @classmethod
    def not_run(cls, spec: ModelSpec, failure: str) -> AccuracyResult:
        """The result of a variant the runtime could not run: refused, with why."""
        accuracy = spec.accuracy
        return cls(accuracy.metric, None, accuracy.effective_budget, False, {}, {}, {}, failure)

    @property
    def verdict(self) -> str:
        """'min cosine 0.9934 >= 0.99' or 'top-1 drop 3.5 > 1 (over by 2.5)', or why it did not run."""
        if self.failure:
            return self.failure
        label = {"top1_drop": "top-1 drop", "top1_agreement": "top-1 agreement", "cosine_min": "min cosine"}
        higher = HIGHER_IS_BETTER[self.metric]
        if self.passed:
            return f"{label[self.metric]} {self.value:.4g} {'>=' if higher else '<='} {self.budget:g}"
        gap = (self.budget - self.value) if higher else (self.value - self.budget)
        relation = "<" if higher else ">"
        word = "short" if higher else "over"
        return f"{label[self.metric]} {self.value:.4g} {relation} {self.budget:g} ({word} by {gap:.3g})"


def eval_batch_size(spec: ModelSpec) -> int:
    if not spec.batched:
        return 1
    return max(1, min(spec.axes["batch"].opt, spec.effective_max_batch_size))


def row_batches(
    arrays: dict[str, np.ndarray], batch_size: int, rows: int | None = None
) -> Iterator[dict[str, np.ndarray]]:
    """Consecutive slices of `batch_size` rows of every array (of the first `rows`; the last may be shorter).
    A 0-d array (a per-request scalar) goes whole into every slice."""
    total = row_count(arrays)
    total = total if rows is None else min(rows, total)
    for start in range(0, total, max(1, batch_size)):
        end = min(start + batch_size, total)
        yield {
            name: array if array.ndim == 0 else np.ascontiguousarray(array[start:end])
            for name, array in arrays.items()
        }


def row_count(arrays: dict[str, np.ndarray]) -> int:
    """The rows of a set of inputs: the first dim of those that are not 0-d (per-request scalars)."""
    return next((len(array) for array in arrays.values() if array.ndim), 1)


def measure(
    spec: ModelSpec,
    reference: dict[str, np.ndarray],
    variant: dict[str, np.ndarray],
    labels: np.ndarray | None,
) -> AccuracyResult:
    """The spec's metric for `variant` against the FP32 `reference` outputs (same eval rows)."""
    accuracy = spec.accuracy
    metric = accuracy.metric
    budget = accuracy.budget if accuracy.budget is not None else DEFAULT_BUDGETS[metric]
    name = spec.accuracy_output
    ref, out = _rows(reference[name]), _rows(variant[name])
    if metric == "cosine_min":
        cosine = _cosine(ref, out)
        value = float(cosine.min())
        details = {"cosine_min": value, "cosine_mean": float(cosine.mean())}
    else:
        agreement = float(np.mean(ref.argmax(axis=1) == out.argmax(axis=1)))
        details = {"top1_agreement": agreement}
        value = agreement
        if metric == "top1_drop":
            if labels is None:
                raise ValueError("top1_drop needs eval labels")
            top1_ref = float(np.mean(ref.argmax(axis=1) == labels))
            top1_out = float(np.mean(out.argmax(axis=1) == labels))
            details |= {"top1_fp32": top1_ref, "top1_variant": top1_out}
            value = round((top1_ref - top1_out) * 100.0, 6)
    passed = bool(np.isfinite(out).all()) and (
        value >= budget if HIGHER_IS_BETTER[metric] else value <= budget
    )
    max_abs, max_rel = {}, {}
    for output, expected in reference.items():
        diff = np.abs(variant[output].astype(np.float64) - expected.astype(np.float64))
        max_abs[output] = float(diff.max()) if diff.size else 0.0
        max_rel[output] = float((diff / np.maximum(np.abs(expected), 1e-12)).max()) if diff.size else 0.0
    return AccuracyResult(metric, value, budget, passed, details, max_abs, max_rel)


def _rows(array: np.ndarray) -> np.ndarray:
    return array.reshape(array.shape[0], -1).astype(np.float64)


EMPTY_ROW = 1e-6  # a row whose norm is below this share of the eval set's largest reference row is "empty"


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-row cosine of `b` (variant) against `a` (reference). Cosine is undefined for an empty row (a
    detector's map of an image without text, a mask with nothing in it): two empty rows agree (1), an
    empty row against a non-empty one does not (0), as rounding noise must not decide the gate."""
    norm_a, norm_b = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    cosine = np.sum(a * b, axis=1) / np.maximum(norm_a * norm_b, 1e-30)
    floor = EMPTY_ROW * float(norm_a.max(initial=0.0))
    empty_a, empty_b = norm_a <= floor, norm_b <= floor
    return np.where(empty_a & empty_b, 1.0, np.where(empty_a | empty_b, 0.0, cosine))
