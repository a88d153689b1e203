"""Classify 8x8 handwritten digits with the `digits` ensemble over gRPC, via the classification extension.

Shows a plain numeric input: UINT8 pixels of shape [n, 8, 8] with values 0..16, as in scikit-learn's digits
data set (the server scales them), and the top 3 labels from `class_count`.

Run from the repository root while the server is up (`make serve`):

    .venv/bin/python examples/classify_digits_grpc.py --demo
    .venv/bin/python examples/classify_digits_grpc.py digit.npy   # an [8, 8] or [n, 8, 8] array

Prints --top lines (default 3) per digit, best first, tab-separated: row, score, class index, label:

    0<TAB>18.145313<TAB>0<TAB>0

Exit codes: 0 success, 2 file missing or malformed, server unreachable, model not ready.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

# The first sample of scikit-learn's digits data set, a handwritten 0.
DEMO_DIGIT = [
    [0, 0, 5, 13, 9, 1, 0, 0],
    [0, 0, 13, 15, 10, 15, 5, 0],
    [0, 3, 15, 2, 0, 11, 8, 0],
    [0, 4, 12, 0, 0, 8, 8, 0],
    [0, 5, 8, 0, 0, 9, 8, 0],
    [0, 4, 11, 0, 1, 12, 7, 0],
    [0, 2, 14, 5, 10, 12, 0, 0],
    [0, 0, 6, 13, 10, 0, 0, 0],
]


def load_pixels(path: str) -> np.ndarray:
    """uint8 [n, 8, 8] from a .npy file holding an [8, 8] or [n, 8, 8] array of values 0..16."""
    if not Path(path).is_file():
        raise ValueError(f"no such file: {path}")
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError):
        raise ValueError(f"{path}: not a .npy file holding a numeric array") from None
    if array.shape == (8, 8):
        array = array[np.newaxis]
    if array.ndim != 3 or array.shape[1:] != (8, 8) or array.min() < 0 or array.max() > 16:
        raise ValueError(f"{path}: expected an [8, 8] or [n, 8, 8] array of 0..16, got shape {array.shape}")
    return array.astype(np.uint8)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("npy", nargs="?", help=".npy file with an [8, 8] or [n, 8, 8] array")
    source.add_argument("--demo", action="store_true", help="use a built-in handwritten 0")
    parser.add_argument("--url", default="127.0.0.1:8001", help="Triton gRPC address (default: %(default)s)")
    parser.add_argument("--model", default="digits", help="model name (default: %(default)s)")
    parser.add_argument(
        "--top",
        type=int,
        choices=range(1, 11),
        default=3,
        metavar="1..10",
        help="classes per digit (default: 3)",
    )
    args = parser.parse_args(argv)

    try:
        pixels = np.array([DEMO_DIGIT], dtype=np.uint8) if args.demo else load_pixels(args.npy)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    client = grpcclient.InferenceServerClient(args.url)
    try:
        try:
            ready = client.is_model_ready(args.model, client_timeout=60)
        except InferenceServerException as error:
            print(
                f"error: cannot reach Triton at {args.url} over gRPC: {' '.join(str(error).split())}",
                file=sys.stderr,
            )
            return 2
        if not ready:
            print(f"error: model '{args.model}' is not ready on {args.url}", file=sys.stderr)
            return 2
        tensor = grpcclient.InferInput("PIXELS", list(pixels.shape), "UINT8")
        tensor.set_data_from_numpy(pixels)
        output = grpcclient.InferRequestedOutput("logits", class_count=args.top)
        result = client.infer(args.model, [tensor], outputs=[output], client_timeout=60)
    except InferenceServerException as error:
        print(f"error: inference on '{args.model}' failed: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    finally:
        client.close()
    for row, entries in enumerate(result.as_numpy("logits")):
        for entry in entries:
            score, index, label = (entry.decode("utf-8").split(":", 2) + [""])[:3]
            print(f"{row}\t{float(score):.6f}\t{index}\t{label}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
