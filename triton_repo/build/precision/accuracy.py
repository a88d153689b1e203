"""Accuracy gate: every variant against FP32 on the eval set, with the spec's metric and budget.

A variant passes on its bound, not its point value: what the metric is likely to be on rows the eval set
does not hold. top1_agreement: the one-sided 95% Wilson lower bound of the agreeing rows; top1_drop: the
95% Wilson upper bound of the labelled rows the variant gets wrong where FP32 is right, less those it gets
right where FP32 is wrong (so a perfect score on few rows does not show a tight budget); cosine_min: the
smallest cosine less the gap to the second smallest (Robson and Whitlock's estimate of where the
distribution ends). All are closed-form: every machine computes the same bound from the same rows. A
variant that passes by a hair on a few rows is refused with the margin it lacks.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from triton_repo.core.spec import DEFAULT_BUDGETS, ModelSpec

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
    bound: float | None = None  # the value the gate holds to the budget (see the module docstring)
    rows: int = 0  # eval rows measured

    @classmethod
    def not_run(cls, spec: ModelSpec, failure: str) -> AccuracyResult:
        """The result of a variant the runtime could not run: refused, with why (a spec without an accuracy
        gate has no metric to name: its pairs are runtimes for the FP32 graph)."""
        accuracy = spec.accuracy
        if accuracy is None:
            return cls("none", None, 0.0, False, {}, {}, {}, failure)
        return cls(accuracy.metric, None, accuracy.effective_budget, False, {}, {}, {}, failure)

    @property
    def verdict(self) -> str:
        """'min cosine 0.9934 (bound 0.9921, 400 rows) >= 0.99', 'top-1 drop 3.5 > 1 (over by 2.5)', or,
        when only the bound misses, the margin it lacks; or why the variant did not run."""
        if self.failure:
            return self.failure
        label = LABELS[self.metric]
        higher = HIGHER_IS_BETTER[self.metric]
        bound = self.value if self.bound is None else self.bound
        on_bound = (
            f" ({BOUND_NAMES[self.metric]} {bound:.4g}, {self.rows} rows)" if self.bound is not None else ""
        )
        if self.passed:
            return f"{label} {self.value:.4g}{on_bound} {'>=' if higher else '<='} {self.budget:g}"
        relation, word = ("<", "short") if higher else (">", "over")
        if _holds(self.metric, self.value, self.budget):  # the point passes, its bound does not
            margin = abs(self.value - bound)
            return (
                f"{label} {self.value:.4g} passes {self.budget:g} on {self.rows} eval rows, but its "
                f"{BOUND_NAMES[self.metric]} {bound:.4g} {relation} {self.budget:g}: it needs a margin of "
                f"{margin:.3g} over the budget and has {abs(self.value - self.budget):.3g}"
                f"{_more_rows(self.metric, self.budget)}"
            )
        gap = abs(self.value - self.budget)
        return f"{label} {self.value:.4g} {relation} {self.budget:g} ({word} by {gap:.3g})"


LABELS = {"top1_drop": "top-1 drop", "top1_agreement": "top-1 agreement", "cosine_min": "min cosine"}
BOUND_NAMES = {
    "top1_drop": "95% upper bound",  # of the points lost
    "top1_agreement": "95% lower bound",
    "cosine_min": "estimated floor",
}
CONFIDENCE_Z = 1.6449  # one-sided 95%


def _holds(metric: str, value: float, budget: float) -> bool:
    return value >= budget if HIGHER_IS_BETTER[metric] else value <= budget


def _more_rows(metric: str, budget: float) -> str:
    """How to earn the margin: more eval rows (and, for agreement, how many a perfect score needs)."""
    if metric == "top1_agreement" and 0 < budget < 1:
        needed = math.ceil(CONFIDENCE_Z**2 * budget / (1 - budget))
        return f" (more eval rows narrow it: a perfect agreement needs {needed} rows to show {budget:g})"
    return " (more eval rows narrow it)"


def wilson_lower(successes: int, rows: int, z: float = CONFIDENCE_Z) -> float:
    """One-sided Wilson score lower bound of a proportion (sound at 0 and 1, unlike the normal bound)."""
    if rows == 0:
        return 0.0
    p = successes / rows
    centre = p + z * z / (2 * rows)
    spread = z * math.sqrt(p * (1 - p) / rows + z * z / (4 * rows * rows))
    return max(0.0, (centre - spread) / (1 + z * z / rows))


def drop_upper(lost: int, gained: int, rows: int) -> float:
    """Upper bound of a top-1 drop in points: the Wilson upper bound of the rows lost, less those gained."""
    if rows == 0:
        return 0.0
    return 100.0 * ((1.0 - wilson_lower(rows - lost, rows)) - gained / rows)


def estimated_floor(per_row: np.ndarray) -> float:
    """The smallest value less its gap to the second smallest: an estimate of the distribution's lower
    end, i.e. how low the metric may go on rows not seen (Robson and Whitlock, 1964)."""
    if per_row.size < 2:
        return float(per_row.min(initial=0.0))
    first, second = np.partition(per_row, 1)[:2]
    return float(first - (second - first))


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
    rows = len(ref)
    if metric == "cosine_min":
        cosine = _cosine(ref, out)
        value = float(cosine.min())
        bound = estimated_floor(cosine)
        details = {"cosine_min": value, "cosine_mean": float(cosine.mean())}
    else:
        agrees = ref.argmax(axis=1) == out.argmax(axis=1)
        value = float(np.mean(agrees))
        bound = wilson_lower(int(agrees.sum()), rows)
        details = {"top1_agreement": value}
        if labels is not None:  # top-1 against the true classes; rows labelled -1 have none
            known = labels >= 0
            right_ref = ref.argmax(axis=1)[known] == labels[known]
            right_out = out.argmax(axis=1)[known] == labels[known]
            details |= {"labelled_rows": float(known.sum())}
            if known.any():
                details |= {"top1_fp32": float(right_ref.mean()), "top1_variant": float(right_out.mean())}
        if metric == "top1_drop":
            if labels is None:
                raise ValueError("top1_drop needs eval labels")
            lost, gained = int(np.sum(right_ref & ~right_out)), int(np.sum(~right_ref & right_out))
            value = round((lost - gained) * 100.0 / max(1, right_ref.size), 6)
            bound = drop_upper(lost, gained, right_ref.size)
            rows = int(right_ref.size)  # the labelled rows: the drop's evidence
    bound = round(bound, 6)
    passed = bool(np.isfinite(out).all()) and _holds(metric, value, budget) and _holds(metric, bound, budget)
    max_abs, max_rel = {}, {}
    for output, expected in reference.items():
        diff = np.abs(variant[output].astype(np.float64) - expected.astype(np.float64))
        max_abs[output] = float(diff.max()) if diff.size else 0.0
        max_rel[output] = float((diff / np.maximum(np.abs(expected), 1e-12)).max()) if diff.size else 0.0
    return AccuracyResult(metric, value, budget, passed, details, max_abs, max_rel, "", bound, rows)


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
