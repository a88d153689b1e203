"""Train the corpus detector on synthetic scenes (circles, squares, triangles) and write weights.pt.

Run from this folder with the build environment: `../../../.venv/bin/python train.py` (a few minutes on 2
cores). Each object is assigned to the pyramid level its size suits; the anchors whose centres fall in
the middle of its box learn its class (binary cross-entropy) and its box (L1 on the side distances, in
strides, and 1 - IoU). The test eval set (model.evaluation) is drawn from seeds training never uses.
"""

from pathlib import Path

import numpy as np
import torch
from model import BINS, CLASSES, STRIDES, Detector, scene, tensor
from torch.nn import functional

STEPS, BATCH = 1500, 32  # about 6 minutes on 2 cores


def targets(boxes_per_image, anchors, strides):
    """Per image: class targets [C, A], box targets [A, 4] (x1, y1, x2, y2), positive mask [A]."""
    count = anchors.shape[1]
    classes = torch.zeros(len(boxes_per_image), len(CLASSES), count)
    boxes = torch.zeros(len(boxes_per_image), count, 4)
    positive = torch.zeros(len(boxes_per_image), count, dtype=torch.bool)
    for i, found in enumerate(boxes_per_image):
        for x1, y1, x2, y2, kind in found:
            side = max(x2 - x1, y2 - y1)
            level = 0 if side < 28 else 1 if side < 56 else 2
            stride = STRIDES[level]
            cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
            radius = max(stride * 0.75, side * 0.25)
            near = (
                (strides == stride)
                & ((anchors[0] - cx).abs() <= radius)
                & ((anchors[1] - cy).abs() <= radius)
            )
            if not near.any():  # the nearest anchor of the level
                distance = ((anchors[0] - cx) ** 2 + (anchors[1] - cy) ** 2) + (strides != stride) * 1e9
                near = torch.zeros_like(near)
                near[distance.argmin()] = True
            classes[i, int(kind), near] = 1.0
            boxes[i, near] = torch.tensor([x1, y1, x2, y2])
            positive[i, near] = True
    return classes, boxes, positive


def iou(a, b):
    top_left = torch.maximum(a[:, :2], b[:, :2])
    bottom_right = torch.minimum(a[:, 2:], b[:, 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(1)
    union = (a[:, 2:] - a[:, :2]).prod(1) + (b[:, 2:] - b[:, :2]).prod(1) - inter
    return inter / union.clamp(min=1e-6)


def main():
    torch.manual_seed(0)
    torch.set_num_threads(2)
    rng = np.random.default_rng(7)  # evaluation uses seeds 100-103
    model = Detector()
    for cls in model.cls:  # few confident anchors at the start, as Ultralytics initialises its head
        torch.nn.init.constant_(cls[-1].bias, -4.0)
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, 3e-3, total_steps=STEPS, pct_start=0.1)
    model.train()
    for step in range(STEPS):
        drawn = [scene(rng) for _ in range(BATCH)]
        images = torch.from_numpy(np.stack([tensor(p) for p, _ in drawn]))
        distances, logits, anchors, strides = model.heads(images)
        classes, boxes, positive = targets([b for _, b in drawn], anchors, strides)
        positives = max(1, int(positive.sum()))
        class_loss = functional.binary_cross_entropy_with_logits(logits, classes, reduction="sum") / positives
        predicted = torch.cat([anchors - distances[:, :2] * strides, anchors + distances[:, 2:] * strides], 1)
        predicted = predicted.permute(0, 2, 1)[positive]
        wanted = boxes[positive]
        sides = torch.cat(
            [
                anchors.T.repeat(len(drawn), 1, 1)[positive] - wanted[:, :2],
                wanted[:, 2:] - anchors.T.repeat(len(drawn), 1, 1)[positive],
            ],
            1,
        )
        sides = sides / strides.repeat(len(drawn), 1)[positive][:, None]
        chosen = distances.permute(0, 2, 1)[positive]
        box_loss = (
            functional.l1_loss(chosen, sides.clamp(0, BINS - 1.01)) + 2 * (1 - iou(predicted, wanted)).mean()
        )
        loss = class_loss + 2 * box_loss
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        if step % 100 == 0:
            print(f"step {step}: class {class_loss.item():.3f} box {box_loss.item():.3f}", flush=True)
    model.eval()
    torch.save(model.state_dict(), Path(__file__).with_name("weights.pt"))


if __name__ == "__main__":
    main()
