"""Embeddings judged by retrieval: for each eval row, how many of FP32's k nearest neighbours (cosine,
among the other eval rows) the variant finds among its own embeddings (recall@k, pooled over rows);
beside it the same with the variant's queries against FP32's index (a mixed deployment), the rank
correlation of all pair similarities, and the mean and worst cosine to FP32."""

from __future__ import annotations

import numpy as np

from triton_repo.builders.precision.metrics.base import Metric, Score, pooled, rows_of
from triton_repo.builders.precision.metrics.cosine import cosine_rows

PAIR_ROWS = 2000  # rank correlation over the pairs of at most this many rows (the first ones)


class Embedding(Metric):
    name = "embedding"

    @property
    def label(self) -> str:
        return f"recall@{self.settings.k}"

    def score(self, reference, variant, labels) -> Score:
        ref, out = _unit(rows_of(reference[self.reads[0]])), _unit(rows_of(variant[self.reads[0]]))
        n = len(ref)
        k = self.settings.k
        if n <= k + 1:
            return Score(0.0, 0.0, n, np.zeros(n), {"too_few_rows": float(n)})
        truth = _neighbours(ref @ ref.T, k)
        found = _neighbours(out @ out.T, k)
        crossed = _neighbours(out @ ref.T, k)
        overlap = _overlap(truth, found)
        cosine = cosine_rows(rows_of(reference[self.reads[0]]), rows_of(variant[self.reads[0]]))
        details = {
            f"cross_recall_at_{k}": float(_overlap(truth, crossed).sum() / (n * k)),
            "pair_rank_correlation": _pair_spearman(ref[:PAIR_ROWS], out[:PAIR_ROWS]),
            "cosine_mean": float(cosine.mean()),
            "cosine_min": float(cosine.min()),
        }
        return pooled(overlap, np.full(n, float(k)), details)

    def fix(self) -> str:
        return f"give data.eval more than {self.settings.k + 1} rows of varied inputs (the neighbours must differ)"


def _unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)


def _neighbours(similarity: np.ndarray, k: int) -> np.ndarray:
    """Each row's k most similar other rows (itself excluded), most similar first, ties by index."""
    similarity = np.array(similarity, copy=True)
    np.fill_diagonal(similarity, -np.inf)
    return np.argsort(-similarity, axis=1, kind="stable")[:, :k]


def _overlap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.array([len(set(x) & set(y)) for x, y in zip(a, b, strict=True)], np.float64)


def _pair_spearman(ref: np.ndarray, out: np.ndarray) -> float:
    upper = np.triu_indices(len(ref), 1)
    a, b = (ref @ ref.T)[upper], (out @ out.T)[upper]
    if a.size < 2:
        return 1.0
    rank_a, rank_b = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    correlation = np.corrcoef(rank_a, rank_b)[0, 1]
    return float(correlation) if np.isfinite(correlation) else 0.0
