"""Classify image files with `mobilenet_v2` over gRPC, passing input and output through system shared memory.

Shows tritonclient.utils.shared_memory: create two regions, register them with the server, point the
InferInput and InferRequestedOutput at them with set_shared_memory(), read the logits straight out of the
output region, and unregister and destroy both regions in a finally block. Only metadata crosses the
socket, so the server must run on this host (same /dev/shm). A BYTES input goes into shared memory in
Triton's serialized form (4-byte length, then the bytes: tritonclient.utils.serialize_byte_tensor), and
its byte size is that of the serialized tensor (serialized_byte_size). The classification extension does
not apply to shared-memory outputs, so the top K come from numpy and the labels from the model's labels
file, found through model_repository/manifest.json or given with --labels.

Run from the repository root while the server is up (`make serve`):

    .venv/bin/python examples/classify_image_shm.py /tmp/china.png /tmp/flower.jpg

Prints the same lines as classify_image_grpc.py: K lines per file, best first, tab-separated: the path as
given, the score (6 decimals), the class index and the label:

    /tmp/china.png<TAB>6.846563<TAB>864<TAB>class 864

With --json: [{"file": path, "classes": [{"score": float, "index": int, "label": str}, ...]}, ...].
Exit codes: 0 success, 2 file or labels missing, server unreachable, model not ready or image rejected.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.utils.shared_memory as shm
from tritonclient.utils import InferenceServerException, serialize_byte_tensor, serialized_byte_size

INPUT = "IMAGE"
OUTPUT = "logits"
TIMEOUT_S = 60.0
DEFAULT_REPOSITORY = Path(__file__).resolve().parents[3] / "model_repository"


class ExampleError(Exception):
    """A problem the user can fix (file, server address, model name); main() prints it and returns 2."""


def one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def read_labels(model: str, labels_file: str | None, repository: Path) -> list[str]:
    """The model's labels, one per class index: from --labels, else from the manifest's entry for `model`."""
    if labels_file is None:
        manifest_path = repository / "manifest.json"
        if not manifest_path.is_file():
            raise ExampleError(f"no manifest at {manifest_path}; pass --labels FILE or --repository DIR")
        entry = json.loads(manifest_path.read_text(encoding="utf-8"))["models"].get(model)
        if entry is None or not entry.get("labels"):
            raise ExampleError(f"{manifest_path} names no labels for '{model}'; pass --labels FILE")
        labels = entry["labels"]  # {output: file}; older manifests name one file
        labels_file = str(
            repository / model / (labels if isinstance(labels, str) else next(iter(labels.values())))
        )
    if not Path(labels_file).is_file():
        raise ExampleError(f"no such labels file: {labels_file}")
    return Path(labels_file).read_text(encoding="utf-8").splitlines()


def read_files(paths: list[str]) -> list[bytes]:
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        raise ExampleError(f"no such file: {', '.join(missing)}")
    return [Path(p).read_bytes() for p in paths]


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


def classify(client: grpcclient.InferenceServerClient, model: str, images: list[bytes]) -> list[np.ndarray]:
    """Each image's logits, one request per image, reusing one input and one output region for all."""
    config = client.get_model_config(model, client_timeout=TIMEOUT_S).config
    (output_config,) = [o for o in config.output if o.name == OUTPUT]
    classes = int(np.prod(output_config.dims))
    payloads = [serialize_byte_tensor(np.array([[image]], dtype=np.object_)) for image in images]
    input_size = max(serialized_byte_size(p) for p in payloads)
    output_size = classes * np.dtype(np.float32).itemsize  # one row of FP32 logits

    tag = f"triton_examples_{os.getpid()}"  # unique per process: concurrent runs must not share regions
    input_name, output_name = f"{tag}_input", f"{tag}_output"
    handles, registered, logits = {}, [], []
    try:
        handles[input_name] = shm.create_shared_memory_region(input_name, f"/{input_name}", input_size)
        handles[output_name] = shm.create_shared_memory_region(output_name, f"/{output_name}", output_size)
        for name, size in ((input_name, input_size), (output_name, output_size)):
            client.register_system_shared_memory(name, f"/{name}", size, client_timeout=TIMEOUT_S)
            registered.append(name)
        for payload in payloads:
            shm.set_shared_memory_region(handles[input_name], [payload])
            tensor = grpcclient.InferInput(INPUT, [1, 1], "BYTES")
            tensor.set_shared_memory(input_name, serialized_byte_size(payload))
            output = grpcclient.InferRequestedOutput(OUTPUT)
            output.set_shared_memory(output_name, output_size)
            result = client.infer(model, [tensor], outputs=[output], client_timeout=TIMEOUT_S)
            shape = list(result.get_output(OUTPUT).shape)  # the response names the tensor; data is in shm
            logits.append(shm.get_contents_as_numpy(handles[output_name], np.float32, shape)[0].copy())
    finally:
        for name in registered:
            try:
                client.unregister_system_shared_memory(name, client_timeout=TIMEOUT_S)
            except InferenceServerException as error:
                print(f"warning: could not unregister {name}: {one_line(error)}", file=sys.stderr)
        for handle in handles.values():
            shm.destroy_shared_memory_region(handle)
    return logits


def top_classes(logits: np.ndarray, labels: list[str], top: int) -> list[dict]:
    """What class_count would return: the `top` best classes, scores rounded to 6 decimals as the server does."""
    best = np.argsort(-logits, kind="stable")[:top]
    return [
        {"score": round(float(logits[i]), 6), "index": int(i), "label": labels[i] if i < len(labels) else ""}
        for i in best
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="+", help="PNG or JPEG files")
    parser.add_argument("--url", default="127.0.0.1:8001", help="Triton gRPC address (default: %(default)s)")
    parser.add_argument("--model", default="mobilenet_v2", help="model name (default: %(default)s)")
    parser.add_argument(
        "--top", type=positive_int, default=5, help="classes per image (default: %(default)s)"
    )
    parser.add_argument("--labels", metavar="FILE", help="labels, one per line (default: from the manifest)")
    parser.add_argument(
        "--repository", type=Path, default=DEFAULT_REPOSITORY, help="model repository (default: %(default)s)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of lines")
    args = parser.parse_args(argv)

    try:
        labels = read_labels(args.model, args.labels, args.repository)
        images = read_files(args.images)
        client = connect(args.url, args.model)
        try:
            logits = classify(client, args.model, images)
        finally:
            client.close()
    except ExampleError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except InferenceServerException as error:
        print(f"error: inference on '{args.model}' failed: {one_line(error)}", file=sys.stderr)
        return 2
    except shm.SharedMemoryException as error:
        print(f"error: shared memory: {one_line(error)}", file=sys.stderr)
        return 2

    classes = [top_classes(row, labels, args.top) for row in logits]
    if args.json:
        print(json.dumps([{"file": f, "classes": c} for f, c in zip(args.images, classes, strict=True)]))
        return 0
    for path, top in zip(args.images, classes, strict=True):
        for c in top:
            print(f"{path}\t{c['score']:.6f}\t{c['index']}\t{c['label']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
