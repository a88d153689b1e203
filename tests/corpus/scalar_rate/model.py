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
    """Random frame filters; a head that says 'voice' for louder chunks: positive weights, and a bias that
    puts the decision (0.5) at a tone of amplitude 0.5 (the rate scales the logit, not where it is 0)."""
    model = RateAwareScorer().eval()
    with torch.no_grad():

        def logit(amplitude):
            chunks = torch.from_numpy(_chunks(9, 64, amplitude=amplitude)["audio"])
            return float(model.head(torch.relu(model.frames(chunks.unsqueeze(1))).mean(dim=2)).mean())

        model.head.weight.abs_()
        model.head.weight.mul_(4.0 / (logit(1.0) - logit(0.5)))  # a full-scale tone: logit +4 at 16 kHz
        model.head.bias.sub_(logit(0.5))
    return model


def _chunks(seed, n, samples=256, sr=16000, amplitude=None):
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / sr
    loudness = rng.uniform(0, 1, size=(n, 1)) if amplitude is None else np.full((n, 1), amplitude)
    tone = np.sin(2 * np.pi * rng.uniform(100, 900, size=(n, 1)) * t) * loudness
    audio = (tone + rng.normal(0, 0.05, size=(n, samples))).astype(np.float32)
    return {"audio": audio, "sr": np.array(sr, dtype=np.int64)}


def sample():
    return _chunks(0, 2)


def calibration():
    return _chunks(1, 16)


def evaluation():
    return _chunks(2, 240, sr=8000)
