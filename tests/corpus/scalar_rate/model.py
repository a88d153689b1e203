"""A voice-activity-detector-shaped model with a scalar input: `sr`, the sample rate (a 0-d int64 tensor,
as Silero VAD takes it), scales the score; one score per chunk of audio. Its Conv1d needs 16 samples,
so AutoCast's reference run must see real rows (random ones have every dynamic dim 1)."""

import numpy as np
import torch
from torch import nn


class RateAwareScorer(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(25)
        self.frames = nn.Conv1d(1, 8, kernel_size=16, stride=8)  # needs 16 samples or more
        self.head = nn.Linear(8, 1)

    def forward(self, audio, sr):
        features = torch.relu(self.frames(audio.unsqueeze(1))).mean(dim=2)  # [batch, 8]
        rate = sr.to(torch.float32) / 16000.0  # 8 kHz audio counts half as much per sample
        return torch.sigmoid(self.head(features) * rate)


def build():
    return RateAwareScorer().eval()


def _chunks(seed, n, samples=256, sr=16000):
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / sr
    tone = np.sin(2 * np.pi * rng.uniform(100, 900, size=(n, 1)) * t) * rng.uniform(0, 1, size=(n, 1))
    audio = (tone + rng.normal(0, 0.05, size=(n, samples))).astype(np.float32)
    return {"audio": audio, "sr": np.array(sr, dtype=np.int64)}


def sample():
    return _chunks(0, 2)


def calibration():
    return _chunks(1, 16)


def evaluation():
    return _chunks(2, 16, sr=8000)
