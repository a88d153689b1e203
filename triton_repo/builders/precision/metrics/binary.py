"""Decisions: each value above the threshold (a probability, a logit, a multi-label output) compared with
FP32's decision; agreement pooled over every value of every row (every step of a stateful model's
streams), F1 of the positive class and the largest value error beside it."""

from __future__ import annotations

import numpy as np

from triton_repo.builders.precision.metrics.base import Metric, Score, pooled, reflect, rows_of
from triton_repo.core.decode import decisions


class Binary(Metric):
    name = "binary"
    label = "decision agreement"

    def score(self, reference, variant, labels) -> Score:
        threshold = self.settings.threshold
        ref, out = rows_of(reference[self.reads[0]]), rows_of(variant[self.reads[0]])
        said_ref, said_out = decisions(ref, threshold), decisions(out, threshold)
        agree = (said_ref == said_out).sum(axis=1).astype(np.float64)
        both = float(np.sum(said_ref & said_out))
        positives = float(said_ref.sum() + said_out.sum())
        details = {
            "f1_positive": 2 * both / positives if positives else 1.0,
            "positive_share_fp32": float(said_ref.mean()) if said_ref.size else 0.0,
            "flipped": float(np.sum(said_ref != said_out)),
            "max_value_error": float(np.abs(ref - out).max(initial=0.0)),
        }
        return pooled(agree, np.full(len(ref), float(ref.shape[1])), details)

    def damages(self, reference):
        name = self.reads[0]
        flipped = reflect(reference[name], self.settings.threshold)
        return {"with every decision flipped": {**reference, name: flipped}}

    def fix(self) -> str:
        return (
            "give data.eval rows on both sides of the decision (the eval set decides one way almost always)"
        )
