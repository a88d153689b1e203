"""Classify image files with the `mobilenet_v2` ensemble over HTTP, using Triton's classification extension.

The HTTP twin of classify_image_grpc.py, with the same arguments and output. Encoded image bytes are
not valid UTF-8, so the input must travel as binary data (`binary_data=True`), not JSON; the top K come
from `InferRequestedOutput(..., class_count=K)`, K byte strings 'score:index:label' per image.

Run from the repository root while the server is up (`make serve`):

    .venv/bin/python examples/classify_image_http.py /tmp/china.png /tmp/flower.jpg
    .venv/bin/python examples/classify_image_http.py --top 3 --json /tmp/china.png

Prints K lines per file, best first, tab-separated: the path as given, the score (6 decimals), the class
index and the label (labels may contain spaces, e.g. 'class 864'):

    /tmp/china.png<TAB>6.846563<TAB>864<TAB>class 864

With --json: [{"file": path, "classes": [{"score": float, "index": int, "label": str}, ...]}, ...].
Exit codes: 0 success, 2 file missing, server unreachable, model not ready or image rejected.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

INPUT = "IMAGE"
OUTPUT = "logits"
TIMEOUT_S = 60.0


class ExampleError(Exception):
    """A problem the user can fix (file, server address, model name); main() prints it and returns 2."""


def one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def read_files(paths: list[str]) -> list[bytes]:
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        raise ExampleError(f"no such file: {', '.join(missing)}")
    return [Path(p).read_bytes() for p in paths]


def connect(url: str, model: str) -> httpclient.InferenceServerClient:
    """A client for `url` once `model` is ready there."""
    if "://" in url:
        raise ExampleError(f"--url takes host:port without a scheme, got '{url}'")
    client = httpclient.InferenceServerClient(url, connection_timeout=TIMEOUT_S, network_timeout=TIMEOUT_S)
    try:
        ready = client.is_model_ready(model)
    except (InferenceServerException, OSError) as error:  # OSError: refused, unknown host, timeout
        client.close()
        raise ExampleError(f"cannot reach Triton at {url} over HTTP: {one_line(error)}") from None
    if not ready:
        client.close()
        raise ExampleError(f"model '{model}' is not ready on {url} (is it in the repository and loaded?)")
    return client


def parse_class(entry: bytes) -> dict:
    """b'score:index:label' (label absent when the model has no labels file) to a dict."""
    score, index, *label = entry.decode("utf-8").split(":", 2)
    return {"score": float(score), "index": int(index), "label": label[0] if label else ""}


def classify(client: httpclient.InferenceServerClient, model: str, images: list[bytes], top: int) -> list:
    """Per image, its `top` classes best first, sending at most max_batch_size images per request."""
    batch = max(int(client.get_model_config(model).get("max_batch_size", 0)), 1)
    results = []
    for start in range(0, len(images), batch):
        data = np.array([[image] for image in images[start : start + batch]], dtype=np.object_)
        tensor = httpclient.InferInput(INPUT, list(data.shape), "BYTES")
        tensor.set_data_from_numpy(data, binary_data=True)
        output = httpclient.InferRequestedOutput(OUTPUT, binary_data=True, class_count=top)
        result = client.infer(model, [tensor], outputs=[output])
        results.extend([parse_class(entry) for entry in row] for row in result.as_numpy(OUTPUT))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="+", help="PNG or JPEG files")
    parser.add_argument("--url", default="127.0.0.1:8000", help="Triton HTTP address (default: %(default)s)")
    parser.add_argument("--model", default="mobilenet_v2", help="model name (default: %(default)s)")
    parser.add_argument(
        "--top", type=positive_int, default=5, help="classes per image (default: %(default)s)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of lines")
    args = parser.parse_args(argv)

    try:
        images = read_files(args.images)
        client = connect(args.url, args.model)
        try:
            classes = classify(client, args.model, images, args.top)
        finally:
            client.close()
    except ExampleError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except InferenceServerException as error:
        print(f"error: inference on '{args.model}' failed: {one_line(error)}", file=sys.stderr)
        return 2

    if args.json:
        print(json.dumps([{"file": f, "classes": c} for f, c in zip(args.images, classes, strict=True)]))
        return 0
    for path, top in zip(args.images, classes, strict=True):
        for c in top:
            print(f"{path}\t{c['score']:.6f}\t{c['index']}\t{c['label']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
