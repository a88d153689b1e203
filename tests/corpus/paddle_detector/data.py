"""Page-like images for the detector: dark strokes ("text lines") on a light background, sizes that are
multiples of 4 as the network needs; calibration and eval drawn from different seeds."""

import numpy as np

MEAN, STD = 0.5, 0.25


def _pages(seed, n, size=(48, 64)):
    rng = np.random.default_rng(seed)
    pages = np.full((n, 3, *size), 0.9, np.float32) + rng.normal(0, 0.03, (n, 3, *size)).astype(np.float32)
    for page in pages:
        for _ in range(rng.integers(0, 4)):  # some pages have no text at all
            top, left = rng.integers(0, size[0] - 6), rng.integers(0, size[1] // 2)
            page[:, top : top + rng.integers(3, 6), left : left + rng.integers(8, size[1] // 2)] = 0.1
    return {"x": ((pages - MEAN) / STD).astype(np.float32)}


def sample():
    return _pages(0, 2)


def calibration():
    return _pages(1, 16)


def evaluation():
    return _pages(2, 64)
