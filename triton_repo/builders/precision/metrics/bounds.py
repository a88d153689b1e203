"""The gate's statistical bounds: what a metric is likely to be on rows the eval set does not hold.

All closed-form, so every machine computes the same bound from the same rows. A proportion (agreeing
rows, matched detections, agreeing decisions, characters) is held by its one-sided 95% Wilson bound; a
mean of per-row scores in 0..1 by the Wilson bound of that mean, which is sound because no variable in
0..1 varies more than a yes/no one of the same mean; a worst case by Robson and Whitlock's estimate of
where the distribution ends; a mean of unbounded scores (your own metric) by the normal bound.
"""

from __future__ import annotations

import math

import numpy as np

CONFIDENCE_Z = 1.6449  # one-sided 95%


def wilson_lower(successes: float, rows: float, z: float = CONFIDENCE_Z) -> float:
    """One-sided Wilson score lower bound of a proportion (sound at 0 and 1, unlike the normal bound)."""
    if rows <= 0:
        return 0.0
    p = min(1.0, max(0.0, successes / rows))
    centre = p + z * z / (2 * rows)
    spread = z * math.sqrt(p * (1 - p) / rows + z * z / (4 * rows * rows))
    return max(0.0, (centre - spread) / (1 + z * z / rows))


def wilson_upper(successes: float, rows: float, z: float = CONFIDENCE_Z) -> float:
    return 1.0 - wilson_lower(rows - successes, rows, z)


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


def mean_bound(scores: np.ndarray, higher_is_better: bool = True) -> float:
    """The 95% bound of the mean of per-row scores on the side that matters: Wilson's for scores in 0..1,
    else the normal bound with the rows' own spread."""
    scores = np.asarray(scores, np.float64)
    n = scores.size
    if n == 0:
        return 0.0 if higher_is_better else math.inf
    mean = float(scores.mean())
    if scores.min() >= 0.0 and scores.max() <= 1.0:
        return wilson_lower(mean * n, n) if higher_is_better else wilson_upper(mean * n, n)
    spread = CONFIDENCE_Z * float(scores.std(ddof=1)) / math.sqrt(n) if n > 1 else math.inf
    return mean - spread if higher_is_better else mean + spread


def f1_of_jaccard(jaccard: float) -> float:
    """F1 (Dice) from the share of the union that is matched: F1 = 2J / (1 + J), monotone in J."""
    return 2 * jaccard / (1 + jaccard) if jaccard > 0 else 0.0
