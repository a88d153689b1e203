"""Four inputs of four dtypes (int64 ids, float features, bool mask, int32 positions); outputs of rank 1-3."""

import numpy as np
import torch
from torch import nn


class Mixed(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(2)
        self.tokens = nn.Embedding(50, 16)
        self.positions = nn.Embedding(64, 16)
        self.features = nn.Linear(6, 16)
        self.per_token = nn.Linear(16, 3)
        self.classes = nn.Linear(16, 4)

    def forward(self, ids, features, mask, positions):
        x = self.tokens(ids) + self.positions(positions.long())
        keep = mask.unsqueeze(-1).to(x.dtype)
        pooled = (x * keep).sum(1) / keep.sum(1).clamp(min=1.0) + self.features(features)
        probs = torch.softmax(self.classes(pooled), dim=-1)
        score = pooled.pow(2).mean(-1)
        return score, probs, self.per_token(x)


def build():
    return Mixed().eval()


def _rows(seed, n, seq=10):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, seq + 1, size=n)
    return {
        "ids": rng.integers(0, 50, size=(n, seq)).astype(np.int64),
        "features": rng.standard_normal((n, 6)).astype(np.float32),
        "mask": np.arange(seq)[None, :] < lengths[:, None],
        "positions": np.tile(np.arange(seq, dtype=np.int32), (n, 1)),
    }


def sample():
    return _rows(0, 4)


def calibration():
    return _rows(1, 32)


def evaluation():
    return _rows(2, 32)
