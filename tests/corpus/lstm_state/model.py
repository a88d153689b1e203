"""A two-layer LSTM forecaster that carries h and c between calls (h0/c0 in, hn/cn out, [layers, batch,
hidden]): each call takes the next window of a series and forecasts the 4 steps after it."""

import numpy as np
import torch
from torch import nn

LAYERS, HIDDEN, WINDOW = 2, 16, 10


class LstmState(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(3, HIDDEN, num_layers=LAYERS, batch_first=True)
        self.head = nn.Linear(HIDDEN, 4)

    def forward(self, series, h0, c0):
        out, (hn, cn) = self.lstm(series, (h0, c0))
        return self.head(out[:, -1]), hn, cn


def build() -> nn.Module:
    torch.manual_seed(3)
    return LstmState()


def _series(rows: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(WINDOW, dtype=np.float32)
    phase = rng.uniform(0, 6, (rows, 1, 1))
    base = np.sin(t[None, :, None] * 0.3 + phase + np.arange(3)[None, None, :])
    return (base + rng.normal(0, 0.05, (rows, WINDOW, 3))).astype(np.float32)


def sample() -> dict:
    return {
        "series": _series(4, 0),
        "h0": np.zeros((LAYERS, 4, HIDDEN), np.float32),
        "c0": np.zeros((LAYERS, 4, HIDDEN), np.float32),
    }


def sequence() -> dict:
    """6 streams of 30 windows: [steps, streams, window, 3]."""
    return {"series": np.stack([_series(6, 50 + step) for step in range(30)])}


def evaluation() -> dict:
    """The accuracy gate's streams, other series than the golden ones: 8 streams of 40 windows."""
    return {"series": np.stack([_series(8, 500 + step) for step in range(40)])}
