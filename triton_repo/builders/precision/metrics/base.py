"""What every metric is: a decode of the outputs the task reads, a row-by-row comparison of FP32's
decoding with the variant's, and the aggregate the gate holds to the budget with its bound."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from triton_repo.builders.precision.metrics.bounds import f1_of_jaccard, mean_bound, wilson_lower

Outputs = dict[str, np.ndarray]


@dataclass(frozen=True)
class Score:
    """A metric over the eval rows: its value, the bound the gate holds to the budget, the evidence it
    rests on (`rows`: eval rows, or the labelled rows of top1_drop), each row's own score (higher is
    closer to FP32; what search-precision ranks rows by) and what the report shows beside it."""

    value: float
    bound: float
    rows: int
    per_row: np.ndarray
    details: dict[str, float] = field(default_factory=dict)


class Metric:
    """One task's gate. Subclasses set the names and implement `score`; `damages` plants what the task
    would notice in FP32's own outputs (the self-check adds the damages every task notices)."""

    name = ""
    label = ""  # the verdict's words: "detection F1", "min cosine"
    bound_name = "95% lower bound"
    higher_is_better = True

    def __init__(self, spec, reads: tuple[str, ...]):
        self.spec = spec
        self.reads = reads  # the outputs it decodes, the first being the one `accuracy.output` names

    @property
    def settings(self):
        return self.spec.accuracy.settings

    def score(self, reference: Outputs, variant: Outputs, labels) -> Score:
        raise NotImplementedError

    def damages(self, reference: Outputs) -> dict[str, Outputs]:
        """Task-specific damage: description -> FP32's outputs damaged that way."""
        return {}

    def fix(self) -> str:
        """What to do when the metric passes damage on this model (the self-check's refusal)."""
        return "choose the metric of the model's task (docs/precision.md, 'Choosing the metric')"


def rows_of(array: np.ndarray) -> np.ndarray:
    """[rows, ...] as [rows, features] in float64."""
    return np.asarray(array).reshape(len(array), -1).astype(np.float64)


def pooled(successes: np.ndarray, trials: np.ndarray, details: dict | None = None) -> Score:
    """A proportion pooled over rows (agreeing decisions, neighbours found, characters kept): value
    sum(successes) / sum(trials), Wilson's bound; each row's own share (1 for a row with no trials)."""
    successes, trials = np.asarray(successes, np.float64), np.asarray(trials, np.float64)
    total = float(trials.sum())
    value = float(successes.sum()) / total if total else 1.0
    per_row = np.where(trials > 0, successes / np.maximum(trials, 1e-12), 1.0)
    return Score(value, wilson_lower(float(successes.sum()), total), len(trials), per_row, details or {})


def matched_f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, details: dict | None = None) -> Score:
    """F1 of matched items (detections, regions) pooled over rows: F1 = 2 TP / (2 TP + FP + FN). Bound
    through the Jaccard share TP / (TP + FP + FN), each item of the union matched or not, held by
    Wilson's bound. A row where neither side has an item agrees and adds no evidence."""
    tp, fp, fn = (np.asarray(a, np.float64) for a in (tp, fp, fn))
    union = tp + fp + fn
    total = float(union.sum())
    jaccard = float(tp.sum()) / total if total else 1.0
    per_row = np.where(union > 0, tp / np.maximum(union, 1e-12), 1.0)
    found = float(tp.sum() + fp.sum())
    shown = {
        "precision": float(tp.sum()) / found if found else 1.0,
        "recall": float(tp.sum()) / float(tp.sum() + fn.sum()) if tp.sum() + fn.sum() else 1.0,
        "matched": float(tp.sum()),
        "missed": float(fn.sum()),
        "added": float(fp.sum()),
    }
    bound = f1_of_jaccard(wilson_lower(float(tp.sum()), total))
    return Score(
        f1_of_jaccard(jaccard) if total else 1.0, bound, len(union), per_row, shown | (details or {})
    )


def mean_score(per_row: np.ndarray, details: dict | None = None, higher_is_better: bool = True) -> Score:
    per_row = np.asarray(per_row, np.float64)
    value = float(per_row.mean()) if per_row.size else 1.0
    return Score(value, mean_bound(per_row, higher_is_better), per_row.size, per_row, details or {})


def reflect(array: np.ndarray, around: float) -> np.ndarray:
    """Every value mirrored around `around`: a probability p as 1 - p around 0.5, a logit x as -x around 0."""
    return (2 * around - np.asarray(array, np.float64)).astype(np.asarray(array).dtype)
