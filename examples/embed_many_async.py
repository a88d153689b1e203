"""Send many embedding requests to `minilm` concurrently with the asyncio gRPC client, and check each one.

Shows tritonclient.grpc.aio: one client shared by many coroutines, an asyncio.Semaphore bounding how many
requests are in flight, and a correctness check on every response (each embedding must have L2 norm ~1).
Each request carries one sentence, taken in turn from --sentences FILE (one per line) or a built-in list.

Run from the repository root while the server is up (`make serve`):

    .venv/bin/python examples/embed_many_async.py
    .venv/bin/python examples/embed_many_async.py --requests 256 --in-flight 16 --sentences s.txt

Prints each failed request on stderr, then one summary line on stdout (seconds and rate vary per run):

    requests=64 ok=64 failed=0 in_flight=8 seconds=0.412 requests_per_s=155.3

Exit codes: 0 every request ok, 1 some request failed or had a bad norm, 2 sentences file missing or
empty, server unreachable, model not ready.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import numpy as np
import tritonclient.grpc.aio as aioclient
from tritonclient.utils import InferenceServerException

INPUT = "TEXT"
OUTPUT = "embedding"
TIMEOUT_S = 60.0
BUILT_IN_SENTENCES = [
    "A cat sits on the mat.",
    "The stock market fell sharply today.",
    "Triton serves many models at once.",
    "She plays the violin every evening.",
    "Heavy rain is expected this weekend.",
    "How do I reset my password?",
    "The recipe needs two eggs and a cup of flour.",
    "Quantum computers use qubits.",
]


class ExampleError(Exception):
    """A problem the user can fix (file, server address, model name); main() prints it and returns 2."""


def one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def read_sentences(path: str | None) -> list[str]:
    if path is None:
        return BUILT_IN_SENTENCES
    if not Path(path).is_file():
        raise ExampleError(f"no such file: {path}")
    sentences = [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines()]
    sentences = [s for s in sentences if s]
    if not sentences:
        raise ExampleError(f"{path} holds no sentences (one per line expected)")
    return sentences


async def embed_one(client: aioclient.InferenceServerClient, model: str, sentence: str) -> np.ndarray:
    text = np.array([[sentence.encode("utf-8")]], dtype=np.object_)
    tensor = aioclient.InferInput(INPUT, list(text.shape), "BYTES")
    tensor.set_data_from_numpy(text)
    output = aioclient.InferRequestedOutput(OUTPUT)
    result = await client.infer(model, [tensor], outputs=[output], client_timeout=TIMEOUT_S)
    return result.as_numpy(OUTPUT)[0]


async def run(args: argparse.Namespace, sentences: list[str]) -> tuple[int, float]:
    """(requests that failed, seconds taken) for args.requests requests, at most args.in_flight at once."""
    client = aioclient.InferenceServerClient(args.url)
    try:
        try:
            ready = await client.is_model_ready(args.model, client_timeout=TIMEOUT_S)
        except InferenceServerException as error:
            raise ExampleError(f"cannot reach Triton at {args.url} over gRPC: {one_line(error)}") from None
        if not ready:
            raise ExampleError(f"model '{args.model}' is not ready on {args.url} (is it loaded?)")

        slots = asyncio.Semaphore(args.in_flight)

        async def request(number: int) -> bool:
            sentence = sentences[number % len(sentences)]
            async with slots:
                try:
                    embedding = await embed_one(client, args.model, sentence)
                except InferenceServerException as error:
                    print(f"request {number}: failed: {one_line(error)}", file=sys.stderr)
                    return False
            norm = float(np.linalg.norm(embedding))
            if abs(norm - 1.0) > args.norm_tolerance:
                print(f"request {number}: norm {norm:.9f} is not 1 +- {args.norm_tolerance}", file=sys.stderr)
                return False
            return True

        start = time.perf_counter()
        outcomes = await asyncio.gather(*(request(n) for n in range(args.requests)))
        return outcomes.count(False), time.perf_counter() - start
    finally:
        await client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="127.0.0.1:8001", help="Triton gRPC address (default: %(default)s)")
    parser.add_argument("--model", default="minilm", help="model name (default: %(default)s)")
    parser.add_argument(
        "--sentences", metavar="FILE", help="one sentence per line (default: a built-in list)"
    )
    parser.add_argument(
        "-n", "--requests", type=positive_int, default=64, help="requests (default: %(default)s)"
    )
    parser.add_argument(
        "-c", "--in-flight", type=positive_int, default=8, help="most requests at once (default: %(default)s)"
    )
    parser.add_argument(
        "--norm-tolerance", type=float, default=1e-3, help="allowed |norm - 1| (default: %(default)s)"
    )
    args = parser.parse_args(argv)

    try:
        failed, seconds = asyncio.run(run(args, read_sentences(args.sentences)))
    except ExampleError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(
        f"requests={args.requests} ok={args.requests - failed} failed={failed} in_flight={args.in_flight} "
        f"seconds={seconds:.3f} requests_per_s={args.requests / seconds:.1f}"
    )
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
