"""A point-set encoder with no batch axis: one cloud of N points in, per-point features and a pooled one out."""

import numpy as np
import torch
from torch import nn


class PointEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(4)
        self.mlp = nn.Sequential(nn.Linear(3, 32), nn.ReLU(), nn.Linear(32, 8))

    def forward(self, points):
        features = self.mlp(points)
        return features, features.max(dim=0).values


def build():
    return PointEncoder().eval()


def sample():
    rng = np.random.default_rng(0)
    return {"points": rng.standard_normal((40, 3)).astype(np.float32)}
