"""A point-set encoder with no batch axis: one cloud of N points and its radius (a scalar) in, per-point
features, a pooled one and their spread (a scalar) out."""

import numpy as np
import torch
from torch import nn


class PointEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(4)
        self.mlp = nn.Sequential(nn.Linear(3, 32), nn.ReLU(), nn.Linear(32, 8))

    def forward(self, points, radius):
        features = self.mlp(points / radius)
        return features, features.max(dim=0).values, features.norm(dim=1).mean()


def build():
    return PointEncoder().eval()


def sample():
    rng = np.random.default_rng(0)
    return {"points": rng.standard_normal((40, 3)).astype(np.float32), "radius": np.array(2.5, np.float32)}
