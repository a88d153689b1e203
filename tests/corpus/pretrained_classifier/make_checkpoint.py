"""Writes checkpoint.pt the way a training script with DataParallel does (run once; the file is committed):
the classifier trained for a few hundred steps on synthetic images of its six shapes (model.shape_image;
the tests' eval images come from other seeds), saved with the epoch and optimizer state beside it."""

from pathlib import Path

import numpy as np
import torch
from model import SHAPES, Classifier, shape_image


def main() -> None:
    torch.manual_seed(7)
    torch.set_num_threads(2)
    rng = np.random.default_rng(70)  # model.py's data functions use seeds 0-2
    model = torch.nn.DataParallel(Classifier())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for step in range(600):
        kinds = rng.integers(0, len(SHAPES), 32)
        images = torch.from_numpy(np.stack([shape_image(rng, int(k)) for k in kinds]).astype(np.float32))
        loss = torch.nn.functional.cross_entropy(model(images), torch.from_numpy(kinds))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 100 == 0:
            print(f"step {step}: loss {loss.item():.3f}")
    model.eval()
    checkpoint = {
        "epoch": 12,
        "state_dict": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "best_top1": 0.71,
    }
    torch.save(checkpoint, Path(__file__).with_name("checkpoint.pt"))


if __name__ == "__main__":
    main()
