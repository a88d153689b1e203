"""Classification: FP32's and the variant's best classes compared (top-1 and top-k agreement), and, with
data.eval_labels, the top-1 lost against the true classes (top1_drop)."""

from __future__ import annotations

import numpy as np

from triton_repo.builders.precision.metrics.base import Metric, Score, pooled, rows_of
from triton_repo.builders.precision.metrics.bounds import drop_upper
from triton_repo.core.decode import top_k


class Classification(Metric):
    label = "top-1 agreement"

    def __init__(self, spec, reads):
        super().__init__(spec, reads)
        self.name = spec.accuracy.metric
        if self.name == "top1_drop":
            self.label, self.bound_name, self.higher_is_better = "top-1 drop", "95% upper bound", False
        elif self.name == "topk_agreement":
            self.label = f"top-{self.settings.k} agreement"

    def score(self, reference, variant, labels) -> Score:
        ref, out = rows_of(reference[self.reads[0]]), rows_of(variant[self.reads[0]])
        k = min(self.settings.k, ref.shape[1])
        best_ref, best_out = top_k(ref, k), top_k(out, k)
        top1 = best_ref[:, 0] == best_out[:, 0]
        overlap = np.array(
            [len(set(a) & set(b)) for a, b in zip(best_ref, best_out, strict=True)], np.float64
        )
        details = {
            "top1_agreement": float(top1.mean()),
            f"top{k}_overlap": float(overlap.sum() / (k * len(ref))),
        }
        if labels is not None:  # top-1 against the true classes; rows labelled -1 have none
            known = labels >= 0
            details["labelled_rows"] = float(known.sum())
            if known.any():
                right_ref = best_ref[known, 0] == labels[known]
                right_out = best_out[known, 0] == labels[known]
                in_ref = (best_ref[known] == labels[known, None]).any(axis=1)
                in_out = (best_out[known] == labels[known, None]).any(axis=1)
                details |= {
                    "top1_fp32": float(right_ref.mean()),
                    "top1_variant": float(right_out.mean()),
                    f"top{k}_fp32": float(in_ref.mean()),
                    f"top{k}_variant": float(in_out.mean()),
                }
        if self.name == "topk_agreement":
            return pooled(overlap, np.full(len(ref), float(k)), details)
        if self.name == "top1_agreement":
            return pooled(top1.astype(np.float64), np.ones(len(ref)), details)
        known = labels >= 0
        right_ref = best_ref[known, 0] == labels[known]
        right_out = best_out[known, 0] == labels[known]
        lost, gained = int(np.sum(right_ref & ~right_out)), int(np.sum(~right_ref & right_out))
        per_row = np.ones(len(ref))
        per_row[np.flatnonzero(known)[right_ref & ~right_out]] = 0.0
        value = round((lost - gained) * 100.0 / max(1, right_ref.size), 6)
        return Score(value, drop_upper(lost, gained, right_ref.size), int(right_ref.size), per_row, details)

    def damages(self, reference):
        name = self.reads[0]
        scores = reference[name]
        flat = rows_of(scores)
        best = flat.argmax(axis=1)
        swapped = flat.copy()  # the best class and the worst one trade places in every row
        worst = flat.argmin(axis=1)
        rows = np.arange(len(flat))
        swapped[rows, best], swapped[rows, worst] = flat[rows, worst], flat[rows, best]
        return {"with every row's best and worst classes swapped": {name: swapped.reshape(scores.shape)}}
