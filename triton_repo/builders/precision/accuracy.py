"""Accuracy gate: every variant against FP32 on the eval set, with the spec's metric and budget.

The metric decodes the outputs as the model's task needs and compares FP32's decoding with the variant's
row by row (metrics/); a variant passes on its bound, not its point value: what the metric is likely to
be on rows the eval set does not hold (metrics/bounds.py). All bounds are closed-form: every machine
computes the same bound from the same rows. A variant that passes by a hair on a few rows is refused with
the margin it lacks.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from triton_repo.builders.precision.metrics import metric_for
from triton_repo.builders.precision.metrics.bounds import (
    CONFIDENCE_Z,
    drop_upper,
    estimated_floor,
    wilson_lower,
)
from triton_repo.core.spec import LoadedSpec, ModelSpec

WORST_ROWS = 64  # the eval rows a result names as its worst (search-precision ranks layers on them)

__all__ = ["AccuracyResult", "drop_upper", "estimated_floor", "measure", "wilson_lower"]


@dataclass(frozen=True)
class AccuracyResult:
    metric: str
    value: float | None  # None when the variant could not be run
    budget: float  # the threshold the value and its bound must reach (a drop budget resolved)
    passed: bool
    details: dict[str, float]  # e.g. cosine_mean, top1_fp32, recall, max_score_shift
    max_abs: dict[str, float]  # per output, vs FP32 over the eval set
    max_rel: dict[str, float]
    # Set when the runtime crashed or raised running the variant: the one-line reason it is refused.
    failure: str = field(default="")
    bound: float | None = None  # the value the gate holds to the budget (see the module docstring)
    rows: int = 0  # eval rows measured
    label: str = ""  # the verdict's words for the metric ("detection F1"); by the metric's name if empty
    bound_name: str = ""  # "95% lower bound", "estimated floor"; by the metric's name if empty
    higher_is_better: bool | None = None  # by the metric's name if None (only top1_drop is lower-is-better)
    worst_rows: tuple[int, ...] = ()  # the eval rows farthest from FP32, worst first

    @classmethod
    def not_run(cls, spec: ModelSpec, failure: str) -> AccuracyResult:
        """The result of a variant the runtime could not run: refused, with why (a spec without an accuracy
        gate has no metric to name: its pairs are runtimes for the FP32 graph)."""
        accuracy = spec.accuracy
        if accuracy is None:
            return cls("none", None, 0.0, False, {}, {}, {}, failure)
        return cls(
            accuracy.metric,
            None,
            accuracy.effective_budget,
            False,
            {},
            {},
            {},
            failure,
            higher_is_better=accuracy.higher_is_better,
        )

    @property
    def verdict(self) -> str:
        """'min cosine 0.9934 (estimated floor 0.9921, 400 rows) >= 0.99', 'top-1 drop 3.5 > 1 (over by
        2.5)', or, when only the bound misses, the margin it lacks; or why the variant did not run."""
        if self.failure:
            return self.failure
        label = self.label or LABELS.get(self.metric, self.metric)
        higher = self.higher
        bound_name = self.bound_name or BOUND_NAMES.get(self.metric, "95% lower bound")
        bound = self.value if self.bound is None else self.bound
        on_bound = f" ({bound_name} {bound:.4g}, {self.rows} rows)" if self.bound is not None else ""
        if self.passed:
            return f"{label} {self.value:.4g}{on_bound} {'>=' if higher else '<='} {self.budget:.4g}"
        relation, word = ("<", "short") if higher else (">", "over")
        if _holds(higher, self.value, self.budget):  # the point passes, its bound does not
            margin = abs(self.value - bound)
            return (
                f"{label} {self.value:.4g} passes {self.budget:.4g} on {self.rows} eval rows, but its "
                f"{bound_name} {bound:.4g} {relation} {self.budget:.4g}: it needs a margin of "
                f"{margin:.3g} over the budget and has {abs(self.value - self.budget):.3g}"
                f"{_more_rows(self.metric, self.budget)}"
            )
        gap = abs(self.value - self.budget)
        return f"{label} {self.value:.4g} {relation} {self.budget:.4g} ({word} by {gap:.3g})"

    @property
    def higher(self) -> bool:
        return self.higher_is_better if self.higher_is_better is not None else self.metric != "top1_drop"


LABELS = {"top1_drop": "top-1 drop", "top1_agreement": "top-1 agreement", "cosine_min": "min cosine"}
BOUND_NAMES = {"top1_drop": "95% upper bound", "cosine_min": "estimated floor"}


def _holds(higher: bool, value: float, budget: float) -> bool:
    return value >= budget if higher else value <= budget


def _more_rows(metric: str, budget: float) -> str:
    """How to earn the margin: more eval rows (and, for agreement, how many a perfect score needs)."""
    if metric == "top1_agreement" and 0 < budget < 1:
        needed = math.ceil(CONFIDENCE_Z**2 * budget / (1 - budget))
        return f" (more eval rows narrow it: a perfect agreement needs {needed} rows to show {budget:g})"
    return " (more eval rows narrow it)"


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
    loaded: LoadedSpec,
    reference: dict[str, np.ndarray],
    variant: dict[str, np.ndarray],
    labels,
) -> AccuracyResult:
    """The spec's metric for `variant` against the FP32 `reference` outputs (same eval rows)."""
    spec = loaded.spec
    metric = metric_for(loaded)
    score = metric.score(reference, variant, labels)
    own = metric.score(reference, reference, labels).value if _relative(spec) else None
    budget = spec.accuracy.threshold(
        own if own is not None else (0.0 if not metric.higher_is_better else 1.0)
    )
    higher = metric.higher_is_better
    finite = all(bool(np.isfinite(variant[name]).all()) for name in metric.reads)
    value, bound = float(score.value), round(float(score.bound), 6)
    passed = finite and np.isfinite(value) and _holds(higher, value, budget) and _holds(higher, bound, budget)
    max_abs, max_rel = {}, {}
    for output, expected in reference.items():
        if output not in variant:
            continue
        diff = np.abs(variant[output].astype(np.float64) - expected.astype(np.float64))
        max_abs[output] = float(diff.max()) if diff.size else 0.0
        max_rel[output] = float((diff / np.maximum(np.abs(expected), 1e-12)).max()) if diff.size else 0.0
    worst = tuple(int(i) for i in np.argsort(score.per_row, kind="stable")[:WORST_ROWS])
    return AccuracyResult(
        spec.accuracy.metric,
        value,
        budget,
        bool(passed),
        {k: float(v) for k, v in score.details.items()},
        max_abs,
        max_rel,
        "",
        bound,
        score.rows,
        metric.label,
        metric.bound_name,
        higher,
        worst,
    )


def _relative(spec: ModelSpec) -> bool:
    """A budget relative to FP32's own value of the metric (a drop, or a custom metric's)."""
    return not isinstance(spec.accuracy.budget, (int, float, type(None)))
