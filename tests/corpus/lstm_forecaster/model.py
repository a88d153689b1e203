"""A two-layer LSTM over a multivariate series: the hidden sequence and a one-step forecast."""

import numpy as np
import torch
from torch import nn


class Forecaster(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.lstm = nn.LSTM(3, 16, num_layers=2, batch_first=True)
        self.head = nn.Linear(16, 1)

    def forward(self, series):
        hidden, _ = self.lstm(series)
        return hidden, self.head(hidden[:, -1])


def build():
    return Forecaster().eval()


def _series(seed, n, steps=20):
    rng = np.random.default_rng(seed)
    t = np.arange(steps, dtype=np.float32)[None, :, None]
    phase = rng.uniform(0, 6.3, size=(n, 1, 3)).astype(np.float32)
    return {"series": (np.sin(0.3 * t + phase) + 0.1 * rng.standard_normal((n, steps, 3))).astype(np.float32)}


def sample():
    return _series(0, 4)


def calibration():
    return _series(1, 32)


def evaluation():
    return _series(2, 32)
