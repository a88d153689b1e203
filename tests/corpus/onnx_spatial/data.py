"""Inputs for the ONNX-source model: images of varying size."""

import numpy as np


def _pixels(seed, n, size=(24, 40)):
    rng = np.random.default_rng(seed)
    return {"pixels": rng.uniform(-1, 1, size=(n, 3, *size)).astype(np.float32)}


def sample():
    return _pixels(0, 2)


def calibration():
    return _pixels(1, 16)


def evaluation():
    return _pixels(2, 16)
