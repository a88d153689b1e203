"""A small image classifier whose weights come from a training checkpoint, as users download them:
a dict with the state_dict beside the epoch and optimizer state, keys prefixed by DataParallel."""

import numpy as np
from torch import nn


class Classifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
        )
        self.classifier = nn.Linear(32, 6)

    def forward(self, image):
        return self.classifier(self.features(image).flatten(1))


def build():
    """The architecture only: the weights are in checkpoint.pt (source.checkpoint)."""
    return Classifier()


def _images(seed, n):
    rng = np.random.default_rng(seed)
    return {"image": rng.uniform(0, 1, size=(n, 3, 32, 32)).astype(np.float32)}


def sample():
    return _images(0, 4)


def calibration():
    return _images(1, 32)


def evaluation():
    return _images(2, 64)
