"""Your own metric: `accuracy.custom.function` returns one score per eval row; the value is their mean,
held by Wilson's bound when every score is in 0..1, else by the normal bound of the mean."""

from __future__ import annotations

import numpy as np

from triton_repo.builders.precision.metrics.base import Metric, Score, mean_score
from triton_repo.core.errors import SpecError


class Custom(Metric):
    name = "custom"

    def __init__(self, spec, reads, function, where: str):
        super().__init__(spec, reads)
        self.function = function
        self.where = where  # "models/x/model.yaml: accuracy.custom.function mymetric:score"
        self.label = spec.accuracy.custom.function
        self.higher_is_better = spec.accuracy.custom.higher_is_better
        self.bound_name = "95% lower bound" if self.higher_is_better else "95% upper bound"

    def score(self, reference, variant, labels) -> Score:
        rows = len(next(iter(reference.values())))
        try:
            scores = np.asarray(self.function(reference, variant, labels), np.float64)
        except Exception as error:  # noqa: BLE001 - the user's code: one line naming it
            raise SpecError(f"{self.where} raised {type(error).__name__}: {error}") from None
        if scores.shape != (rows,):
            raise SpecError(
                f"{self.where} returned shape {list(scores.shape)}; it must return one score per eval row ([{rows}])"
            )
        if not np.isfinite(scores).all():
            scores = np.where(np.isfinite(scores), scores, -np.inf if self.higher_is_better else np.inf)
            return Score(float(scores.mean()), float(scores.mean()), rows, scores, {"non_finite_rows": 1.0})
        per_row = scores if self.higher_is_better else -scores
        result = mean_score(scores, higher_is_better=self.higher_is_better)
        return Score(
            result.value,
            result.bound,
            rows,
            per_row,
            {"row_min": float(scores.min()), "row_max": float(scores.max())},
        )
