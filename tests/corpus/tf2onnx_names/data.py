"""NHWC images (one colour each, with noise: rows the model tells apart, so its gate can fail) and a
per-row temperature; calibration and eval from different seeds."""

import numpy as np


def _rows(seed, n):
    rng = np.random.default_rng(seed)
    return {
        "input:0": np.clip(
            rng.uniform(0, 1, size=(n, 1, 1, 3)) + rng.normal(0, 0.1, size=(n, 24, 24, 3)), 0, 1
        ).astype(np.float32),
        "2nd/temperature-scale": rng.uniform(0.5, 2.0, size=(n, 1)).astype(np.float32),
    }


def sample():
    return _rows(0, 2)


def calibration():
    return _rows(1, 16)


def evaluation():
    return _rows(2, 48)
