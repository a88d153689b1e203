"""A stateful GRU step with no batch at all (max_batch_size: 0): x [6] and the hidden state [12] in, y [3]
and the next state out; one sequence per batch slot (strategy direct)."""

import numpy as np
import torch
from torch import nn


class Step(nn.Module):
    def __init__(self):
        super().__init__()
        self.cell = nn.GRUCell(6, 12)
        self.out = nn.Linear(12, 3)

    def forward(self, x, hidden):  # x [6], hidden [12]: no batch at all
        h = self.cell(x.unsqueeze(0), hidden.unsqueeze(0)).squeeze(0)
        return self.out(h), h


def build():
    torch.manual_seed(1)
    return Step()


def sample():
    return {"x": np.linspace(-1, 1, 6, dtype=np.float32), "hidden": np.zeros(12, np.float32)}


def sequence():
    rng = np.random.default_rng(3)
    return {"x": rng.normal(size=(25, 6)).astype(np.float32)}  # unbatched: one stream, [steps, 6]
