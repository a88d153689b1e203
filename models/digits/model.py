"""digits: a small CNN trained on scikit-learn's 8x8 digits (10 classes). Weights: weights.pt (train.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

WEIGHTS = Path(__file__).with_name("weights.pt")
SPLIT_SEED = 0
CALIBRATION_SIZE = 100
EVAL_SIZE = 400


class DigitsCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(image))


def build() -> nn.Module:
    model = DigitsCNN()
    model.load_state_dict(torch.load(WEIGHTS, map_location="cpu", weights_only=True))
    return model.eval()


def splits() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Disjoint train / calibration / eval (held-out) splits of the 1,797 images, fixed seed."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None, :, :]
    order = np.random.default_rng(SPLIT_SEED).permutation(len(images))
    eval_idx = order[:EVAL_SIZE]
    calibration_idx = order[EVAL_SIZE : EVAL_SIZE + CALIBRATION_SIZE]
    train_idx = order[EVAL_SIZE + CALIBRATION_SIZE :]
    return {
        name: (images[idx], digits.target[idx].astype(np.int64))
        for name, idx in (("train", train_idx), ("calibration", calibration_idx), ("eval", eval_idx))
    }


def sample_inputs() -> dict[str, np.ndarray]:
    return {"image": splits()["eval"][0][:8]}


def calibration_inputs() -> dict[str, np.ndarray]:
    return {"image": splits()["calibration"][0]}


def eval_inputs() -> dict[str, np.ndarray]:
    return {"image": splits()["eval"][0]}


def eval_labels() -> np.ndarray:
    return splits()["eval"][1]


def ensemble_samples() -> np.ndarray:
    """Raw pixels for the `digits` ensemble: the first eval images as uint8 [n, 8, 8], values 0..16 as
    scikit-learn's digits data set stores them (the ensemble scales them by 1/16)."""
    return np.rint(splits()["eval"][0][:8, 0] * 16.0).astype(np.uint8)
