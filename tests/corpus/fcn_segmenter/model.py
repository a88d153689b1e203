"""Fully convolutional: any height and width; the mask comes out at half the input's resolution."""

import numpy as np
import torch
from torch import nn


class Segmenter(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 2, 1),
        )

    def forward(self, image):
        return self.body(image)


def build():
    model = Segmenter()
    with torch.no_grad():  # non-trivial batch-norm statistics, as a trained model has
        model.body[1].running_mean.uniform_(-0.2, 0.2)
        model.body[1].running_var.uniform_(0.5, 1.5)
    return model.eval()


def _images(seed, n, size=(32, 48)):
    rng = np.random.default_rng(seed)
    return {"image": rng.uniform(0, 1, size=(n, 3, *size)).astype(np.float32)}


def sample():
    return _images(0, 2)


def calibration():
    return _images(1, 16)


def evaluation():
    return _images(2, 16)
