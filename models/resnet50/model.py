"""resnet50: the standard ResNet-50 (v1.5: stride on the 3x3 conv) defined here (there is no torchvision).

There are no pretrained weights offline, so the weights are a fixed-seed initialisation and the batch
norm statistics are estimated on real image crops (scikit-learn's two sample photographs); the network
then has realistic activation ranges, which matters for FP16/INT8 later. Metric: top-1 agreement with FP32.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

SEED = 0
IMAGE_SIZE = 224
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32).reshape(3, 1, 1)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32).reshape(3, 1, 1)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int) -> None:
        super().__init__()
        out_channels = width * self.expansion
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet50(nn.Module):
    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        layers, in_channels = [], 64
        for width, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
            stage = []
            for index in range(blocks):
                stage.append(Bottleneck(in_channels, width, stride if index == 0 else 1))
                in_channels = width * Bottleneck.expansion
            layers.append(nn.Sequential(*stage))
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_channels, num_classes)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.layers(self.stem(image))), 1))


def _initialise(model: ResNet50) -> None:
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    nn.init.normal_(model.fc.weight, std=0.05)
    nn.init.zeros_(model.fc.bias)


def build() -> nn.Module:
    torch.manual_seed(SEED)
    model = ResNet50()
    _initialise(model)
    for module in model.modules():  # estimate batch-norm statistics on real crops (cumulative average)
        if isinstance(module, nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None
    model.train()
    with torch.no_grad():
        model(torch.from_numpy(crops(16, seed=1000)))
    return model.eval()


def crops(count: int, seed: int) -> np.ndarray:
    """`count` random crops of scikit-learn's sample photographs, resized to 224x224 and normalised."""
    from sklearn.datasets import load_sample_images

    images = [
        torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
        for img in load_sample_images().images
    ]
    rng = np.random.default_rng(seed)
    result = np.empty((count, 3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
    for index in range(count):
        image = images[index % len(images)]
        height, width = image.shape[1:]
        size = int(rng.integers(64, min(height, width)))
        top, left = int(rng.integers(0, height - size + 1)), int(rng.integers(0, width - size + 1))
        crop = image[:, top : top + size, left : left + size].unsqueeze(0)
        resized = nn.functional.interpolate(
            crop, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False
        )
        if rng.random() < 0.5:
            resized = resized.flip(-1)
        result[index] = (resized[0].numpy() - MEAN) / STD
    return result


def sample_inputs() -> dict[str, np.ndarray]:
    return {"image": crops(4, seed=1)}


def calibration_inputs() -> dict[str, np.ndarray]:
    return {"image": crops(32, seed=2)}


def eval_inputs() -> dict[str, np.ndarray]:
    return {"image": crops(64, seed=3)}


def ensemble_samples() -> list[bytes]:
    """Encoded images for the `resnet50` ensemble: crops of the two sample photographs, as PNG and JPEG."""
    import io

    from PIL import Image
    from sklearn.datasets import load_sample_images

    encoded = []
    for photo in load_sample_images().images:
        for box, form in (((0, 0, 320, 240), "PNG"), ((100, 50, 420, 400), "JPEG")):
            buffer = io.BytesIO()
            Image.fromarray(photo).crop(box).save(buffer, format=form)
            encoded.append(buffer.getvalue())
    return encoded
