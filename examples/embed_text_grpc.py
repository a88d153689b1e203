"""Embed sentences with the `minilm` ensemble over gRPC: raw text in, L2-normalised 384-d vectors out.

Shows how to send strings as a BYTES tensor of shape [n, 1] (the model's TYPE_STRING input `TEXT`), batch
up to the model's max_batch_size, and read the FP32 output `embedding` with tritonclient.grpc.

Run from the repository root while the server is up (`make serve`):

    .venv/bin/python examples/embed_text_grpc.py "A cat sits on the mat." "Stocks fell today."
    .venv/bin/python examples/embed_text_grpc.py --json "A cat sits on the mat."

Prints one line per sentence, tab-separated: the sentence JSON-quoted (so tabs in it cannot split the
line), the embedding's L2 norm, and its first 4 values separated by spaces:

    "A cat sits on the mat."<TAB>1.000000<TAB>0.122008 -0.031893 -0.029991 0.043776

With --json: a JSON list holding one embedding (a list of 384 floats) per sentence, in argument order.
Exit codes: 0 success, 2 server unreachable, model not ready or request rejected.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

INPUT = "TEXT"
OUTPUT = "embedding"
TIMEOUT_S = 60.0


class ExampleError(Exception):
    """A problem the user can fix (server address, model name); main() prints it and returns 2."""


def one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def connect(url: str, model: str) -> grpcclient.InferenceServerClient:
    """A client for `url` once `model` is ready there."""
    client = grpcclient.InferenceServerClient(url)
    try:
        ready = client.is_model_ready(model, client_timeout=TIMEOUT_S)
    except InferenceServerException as error:
        client.close()
        raise ExampleError(f"cannot reach Triton at {url} over gRPC: {one_line(error)}") from None
    if not ready:
        client.close()
        raise ExampleError(f"model '{model}' is not ready on {url} (is it in the repository and loaded?)")
    return client


def embed(client: grpcclient.InferenceServerClient, model: str, sentences: list[str]) -> np.ndarray:
    """float32 [len(sentences), dim], sending at most max_batch_size sentences per request."""
    batch = max(client.get_model_config(model, client_timeout=TIMEOUT_S).config.max_batch_size, 1)
    chunks = []
    for start in range(0, len(sentences), batch):
        text = np.array([[s.encode("utf-8")] for s in sentences[start : start + batch]], dtype=np.object_)
        tensor = grpcclient.InferInput(INPUT, list(text.shape), "BYTES")
        tensor.set_data_from_numpy(text)
        result = client.infer(
            model, [tensor], outputs=[grpcclient.InferRequestedOutput(OUTPUT)], client_timeout=TIMEOUT_S
        )
        chunks.append(result.as_numpy(OUTPUT))
    return np.concatenate(chunks)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sentences", nargs="+", help="one or more sentences (quote each)")
    parser.add_argument("--url", default="127.0.0.1:8001", help="Triton gRPC address (default: %(default)s)")
    parser.add_argument("--model", default="minilm", help="model name (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print a JSON list of the embeddings")
    args = parser.parse_args(argv)

    try:
        client = connect(args.url, args.model)
        try:
            embeddings = embed(client, args.model, args.sentences)
        finally:
            client.close()
    except ExampleError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except InferenceServerException as error:
        print(f"error: inference on '{args.model}' failed: {one_line(error)}", file=sys.stderr)
        return 2

    if args.json:
        print(json.dumps([row.tolist() for row in embeddings]))
        return 0
    for sentence, row in zip(args.sentences, embeddings, strict=True):
        first = " ".join(f"{value:.6f}" for value in row[:4])
        print(f"{json.dumps(sentence, ensure_ascii=False)}\t{np.linalg.norm(row):.6f}\t{first}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
