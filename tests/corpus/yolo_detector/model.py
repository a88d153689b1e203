"""A detector shaped as Ultralytics exports YOLOv8 (train.py trained it on synthetic scenes of circles,
squares and triangles): one output [batch, 4 + classes, anchors], boxes as cx, cy, w, h in the input's
pixels (DFL, then dist2bbox) beside sigmoid class scores, no objectness; dynamic batch, height and width
(multiples of 32), the anchors axis following them (h/8 * w/8 + h/16 * w/16 + h/32 * w/32)."""

import io
from pathlib import Path

import numpy as np
import torch
from torch import nn

CLASSES = ("circle", "square", "triangle")
STRIDES = (8, 16, 32)
BINS = 16  # DFL bins per box side
SIZE = 128


def conv(c_in, c_out, stride=1):
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.SiLU())


class Detector(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(conv(3, 16, 2), conv(16, 24, 2), conv(24, 24))
        self.p3 = nn.Sequential(conv(24, 32, 2), conv(32, 32))
        self.p4 = nn.Sequential(conv(32, 48, 2), conv(48, 48))
        self.p5 = nn.Sequential(conv(48, 64, 2), conv(64, 64))
        channels = (32, 48, 64)
        self.box = nn.ModuleList(nn.Sequential(conv(c, 24), nn.Conv2d(24, 4 * BINS, 1)) for c in channels)
        self.cls = nn.ModuleList(nn.Sequential(conv(c, 24), nn.Conv2d(24, len(CLASSES), 1)) for c in channels)
        self.register_buffer("bins", torch.arange(BINS, dtype=torch.float32).view(1, BINS, 1, 1))

    def levels(self, images):
        x = self.stem(images)
        p3 = self.p3(x)
        p4 = self.p4(p3)
        p5 = self.p5(p4)
        return p3, p4, p5

    def heads(self, images):
        features = self.levels(images)
        distances, logits, anchors, strides = [], [], [], []
        for feature, box, cls, stride in zip(features, self.box, self.cls, STRIDES, strict=True):
            b, _, h, w = feature.shape
            bins = box(feature).view(b, 4, BINS, h, w).softmax(2)  # DFL: expectation over the bins
            distances.append((bins * self.bins.view(1, 1, BINS, 1, 1)).sum(2).view(b, 4, h * w))
            logits.append(cls(feature).view(b, len(CLASSES), h * w))
            ys = torch.arange(h, dtype=torch.float32) + 0.5
            xs = torch.arange(w, dtype=torch.float32) + 0.5
            grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
            anchors.append(torch.stack([grid_x.reshape(-1), grid_y.reshape(-1)]) * stride)
            strides.append(torch.full((h * w,), float(stride)))
        return torch.cat(distances, 2), torch.cat(logits, 2), torch.cat(anchors, 1), torch.cat(strides)

    def forward(self, images):
        distances, logits, anchors, strides = self.heads(images)
        left_top, right_bottom = distances[:, :2] * strides, distances[:, 2:] * strides
        x1y1, x2y2 = anchors - left_top, anchors + right_bottom
        box = torch.cat([(x1y1 + x2y2) / 2, x2y2 - x1y1], 1)  # cx, cy, w, h: Ultralytics' dist2bbox
        return torch.cat([box, logits.sigmoid()], 1)


def build():
    model = Detector()
    model.load_state_dict(torch.load(Path(__file__).with_name("weights.pt"), weights_only=True))
    return model.eval()


def scene(rng, width=SIZE, height=SIZE):
    """An RGB uint8 scene [h, w, 3] on a textured background and its boxes [n, 5] (x1, y1, x2, y2, class)."""
    from PIL import Image, ImageDraw

    base = rng.uniform(40, 215, 3)
    slope = rng.uniform(-60, 60, (2, 3))
    ys, xs = np.mgrid[0:height, 0:width] / max(width, height)
    background = (
        base + xs[..., None] * slope[0] + ys[..., None] * slope[1] + rng.normal(0, 12, (height, width, 3))
    )
    picture = Image.fromarray(np.clip(background, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(picture)
    boxes = []
    for _ in range(rng.integers(1, 5)):
        side = int(rng.integers(14, min(width, height) // 2))
        x, y = int(rng.integers(0, width - side)), int(rng.integers(0, height - side))
        if any(x < b[2] and b[0] < x + side and y < b[3] and b[1] < y + side for b in boxes):
            continue  # objects do not overlap
        kind = int(rng.integers(len(CLASSES)))
        colour = tuple(int(c) for c in (255 - base + rng.uniform(-40, 40, 3)).clip(0, 255))
        if kind == 0:
            draw.ellipse([x, y, x + side, y + side], fill=colour)
        elif kind == 1:
            draw.rectangle([x, y, x + side, y + side], fill=colour)
        else:
            draw.polygon([(x + side / 2, y), (x, y + side), (x + side, y + side)], fill=colour)
        boxes.append((x, y, x + side, y + side, kind))
    return np.asarray(picture), np.array(boxes, np.float32).reshape(-1, 5)


def tensor(pixels):
    """uint8 [h, w, 3] -> float32 [3, h, w] in 0..1, as Ultralytics feeds its models."""
    return np.ascontiguousarray(pixels.transpose(2, 0, 1), dtype=np.float32) / 255.0


def _scenes(seed, n):
    rng = np.random.default_rng(seed)
    drawn = [scene(rng) for _ in range(n)]
    return {"images": np.stack([tensor(pixels) for pixels, _ in drawn])}, [boxes for _, boxes in drawn]


def sample():
    return _scenes(100, 2)[0]


def calibration():
    return _scenes(101, 32)[0]


def evaluation():
    return _scenes(102, 96)[0]


def evaluation_boxes():
    """The true boxes of the eval scenes (x1, y1, x2, y2, class per object): mAP@0.5 in the report."""
    return _scenes(102, 96)[1]


def ensemble_samples():
    """Encoded PNGs of other sizes than the model's: letterboxed by the ensemble, boxes mapped back."""
    from PIL import Image

    rng = np.random.default_rng(103)
    encoded = []
    for width, height in ((200, 150), (128, 128), (96, 160), (256, 192)):
        buffer = io.BytesIO()
        Image.fromarray(scene(rng, width, height)[0]).save(buffer, format="PNG")
        encoded.append(buffer.getvalue())
    return encoded
