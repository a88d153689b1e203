"""cosine_min: the worst row's cosine similarity to FP32 (the mean beside it), held to its estimated
floor. Fits an output read as a whole vector; not one value, nor a head that packs quantities of
different scale (the self-check refuses both)."""

from __future__ import annotations

import numpy as np

from triton_repo.builders.precision.metrics.base import Metric, Score, rows_of
from triton_repo.builders.precision.metrics.bounds import estimated_floor

EMPTY_ROW = 1e-6  # a row whose norm is below this share of the eval set's largest reference row is "empty"


class CosineMin(Metric):
    name = "cosine_min"
    label = "min cosine"
    bound_name = "estimated floor"

    def score(self, reference, variant, labels) -> Score:
        cosine = cosine_rows(rows_of(reference[self.reads[0]]), rows_of(variant[self.reads[0]]))
        details = {"cosine_min": float(cosine.min()), "cosine_mean": float(cosine.mean())}
        return Score(float(cosine.min()), estimated_floor(cosine), len(cosine), cosine, details)

    def fix(self) -> str:
        return (
            "use the metric of the model's task (detection for a raw detection head, binary for a "
            "probability, dense for a map, embedding, ctc; docs/precision.md, 'Choosing the metric'), "
            "or gate only the part that matters with accuracy.output"
        )


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-row cosine of `b` (variant) against `a` (reference). Cosine is undefined for an empty row (a
    detector's map of an image without text, a mask with nothing in it): two empty rows agree (1), an
    empty row against a non-empty one does not (0), as rounding noise must not decide the gate."""
    norm_a, norm_b = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    # rounded at 1e-12: identical rows read exactly 1 (float sums give 1 - 2e-16), which no budget can tell
    cosine = np.round(np.sum(a * b, axis=1) / np.maximum(norm_a * norm_b, 1e-30), 12)
    floor = EMPTY_ROW * float(norm_a.max(initial=0.0))
    empty_a, empty_b = norm_a <= floor, norm_b <= floor
    return np.where(empty_a & empty_b, 1.0, np.where(empty_a | empty_b, 0.0, cosine))
