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


SHAPES = ("circle", "square", "triangle", "star", "cross", "ring")  # labels.txt, in class order


def shape_image(rng, kind: int) -> np.ndarray:
    """A 32 x 32 RGB image in 0..1 of one shape of SHAPES, of random size, place and colours."""
    from PIL import Image, ImageDraw

    background = tuple(int(v) for v in rng.integers(0, 120, 3))
    colour = tuple(int(v) for v in rng.integers(140, 256, 3))
    picture = Image.new("RGB", (32, 32), background)
    draw = ImageDraw.Draw(picture)
    side = int(rng.integers(14, 26))
    x, y = (int(v) for v in rng.integers(1, 32 - side, 2))
    centre, radius = (x + side / 2, y + side / 2), side / 2
    if kind == 0:
        draw.ellipse([x, y, x + side, y + side], fill=colour)
    elif kind == 1:
        draw.rectangle([x, y, x + side, y + side], fill=colour)
    elif kind == 2:
        draw.polygon([(x + side / 2, y), (x, y + side), (x + side, y + side)], fill=colour)
    elif kind == 3:
        points = [
            (
                centre[0] + (radius if i % 2 == 0 else radius / 2.5) * np.cos(np.pi * i / 5 - np.pi / 2),
                centre[1] + (radius if i % 2 == 0 else radius / 2.5) * np.sin(np.pi * i / 5 - np.pi / 2),
            )
            for i in range(10)
        ]
        draw.polygon(points, fill=colour)
    elif kind == 4:
        bar = max(2, side // 4)
        draw.rectangle([x, centre[1] - bar / 2, x + side, centre[1] + bar / 2], fill=colour)
        draw.rectangle([centre[0] - bar / 2, y, centre[0] + bar / 2, y + side], fill=colour)
    else:
        draw.ellipse([x, y, x + side, y + side], outline=colour, width=max(2, side // 6))
    noise = rng.normal(0, 0.03, (32, 32, 3))
    return np.clip(np.asarray(picture, np.float32) / 255.0 + noise, 0, 1).transpose(2, 0, 1)


def _images(seed, n):
    rng = np.random.default_rng(seed)
    kinds = np.arange(n) % len(SHAPES)
    return {"image": np.stack([shape_image(rng, int(k)) for k in kinds]).astype(np.float32)}


def sample():
    return _images(0, 4)


def calibration():
    return _images(1, 32)


def evaluation():
    return _images(2, 120)
