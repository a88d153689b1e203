"""A voice-activity detector shaped as Silero VAD v5: a 512-sample chunk, an LSTM state [2, batch, 128]
whose batch axis is the second, the sample rate as an int64 scalar; outputs a speech probability per row
and the next state. Random weights: the streams check that the served state matches the in-process one."""

import numpy as np
import torch
from torch import nn

CHUNK, HIDDEN = 512, 128


class VadStream(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.frontend = nn.Conv1d(1, 32, kernel_size=64, stride=32)
        self.encoder = nn.Linear(32 * 15, HIDDEN)
        self.cell = nn.LSTMCell(HIDDEN, HIDDEN)
        self.head = nn.Linear(HIDDEN, 1)

    def forward(self, input, state, sr):
        scale = (sr.to(torch.float32) / 16000.0).reshape(1, 1)
        features = torch.relu(self.frontend((input * scale).unsqueeze(1)))
        encoded = torch.tanh(self.encoder(features.flatten(1)))
        h, c = self.cell(encoded, (state[0], state[1]))
        return torch.sigmoid(self.head(h)), torch.stack([h, c])


def build() -> nn.Module:
    torch.manual_seed(7)
    return VadStream()


def _audio(rows: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(rows * CHUNK, dtype=np.float32) / 16000.0
    tone = np.sin(2 * np.pi * rng.uniform(100, 400) * t) * rng.uniform(0.1, 0.5)
    return (tone + rng.normal(0, 0.05, t.shape)).astype(np.float32).reshape(rows, CHUNK)


def sample() -> dict:
    return {
        "input": _audio(4, 0),
        "state": np.zeros((2, 4, HIDDEN), np.float32),
        "sr": np.array(16000, np.int64),
    }


def sequence() -> dict:
    """8 streams of 50 chunks: [steps, streams, 512]; the sample rate per step."""
    streams = np.stack([_audio(50, 100 + s) for s in range(8)], axis=1)
    return {"input": streams, "sr": np.full(50, 16000, np.int64)}
