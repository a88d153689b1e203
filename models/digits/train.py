"""Train the digits CNN and write weights.pt. Deterministic: `python models/digits/train.py`."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from model import WEIGHTS, DigitsCNN, splits  # noqa: E402


def main() -> None:
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    data = splits()
    images, labels = (torch.from_numpy(a) for a in data["train"])
    model = DigitsCNN()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(0)
    for epoch in range(40):
        model.train()
        for batch in torch.randperm(len(images), generator=generator).split(64):
            optimizer.zero_grad()
            loss = loss_fn(model(images[batch]), labels[batch])
            loss.backward()
            optimizer.step()
        if epoch % 10 == 9:
            print(f"epoch {epoch + 1}: loss {loss.item():.4f}")
    model.eval()
    eval_images, eval_labels = (torch.from_numpy(a) for a in data["eval"])
    with torch.no_grad():
        accuracy = (model(eval_images).argmax(1) == eval_labels).float().mean().item()
    print(f"held-out top-1: {accuracy:.4f} on {len(eval_labels)} images")
    torch.save(model.state_dict(), WEIGHTS)
    print(f"wrote {WEIGHTS} ({WEIGHTS.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
