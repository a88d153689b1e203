"""Call served models with NVIDIA PyTriton's ModelClient; run by test_pytriton_client.py in .venv-client.

PyTriton's client needs numpy<2 and tritonclient, so it runs in its own environment (make install):
`python pytriton_calls.py REQUEST.json ANSWER.json`. The request lists calls {url, model, inputs}: with
`inputs` (arrays as `encode` writes them) the model is called with `infer_batch`, without them only its
config is read. Each answer holds the warmup counts PyTriton parsed from the config, the outputs, or the
error as PyTriton raised it. Only numpy and the standard library at import: the test imports the codec.
"""

from __future__ import annotations

import base64
import json
import sys
import traceback
import warnings
from importlib import metadata
from pathlib import Path

import numpy as np


def encode(array: np.ndarray) -> dict:
    """An array as JSON, the same under numpy 1 and 2 (no pickle): raw bytes, or each item of a BYTES array."""
    if array.dtype == np.object_:
        items = [base64.b64encode(bytes(item)).decode() for item in array.reshape(-1)]
        return {"dtype": "bytes", "shape": list(array.shape), "items": items}
    data = base64.b64encode(np.ascontiguousarray(array).tobytes()).decode()
    return {"dtype": array.dtype.str, "shape": list(array.shape), "data": data}


def decode(encoded: dict) -> np.ndarray:
    if encoded["dtype"] == "bytes":
        items = [base64.b64decode(item) for item in encoded["items"]]
        array = np.empty(len(items), dtype=np.object_)
        array[:] = items
        return array.reshape(encoded["shape"])
    raw = base64.b64decode(encoded["data"])
    return np.frombuffer(raw, dtype=np.dtype(encoded["dtype"])).reshape(encoded["shape"]).copy()


def call(url: str, model: str, inputs: dict | None) -> dict:
    from pytriton.client import ModelClient

    answer: dict = {"url": url, "model": model}
    try:
        with ModelClient(url, model, init_timeout_s=120, inference_timeout_s=120) as client:
            config = client.model_config  # read over the client's own protocol: where gRPC failed
            answer["warmup_counts"] = [warmup.count for warmup in config.model_warmup or []]
            if inputs is not None:
                outputs = client.infer_batch(**{name: decode(value) for name, value in inputs.items()})
                answer["outputs"] = {name: encode(value) for name, value in outputs.items()}
    except Exception as error:  # noqa: BLE001 - reported per call, the test names each failure
        answer["error"] = f"{type(error).__name__}: {error}"
        answer["traceback"] = traceback.format_exc(limit=-4)
    return answer


def main(request_path: str, answer_path: str) -> None:
    warnings.simplefilter("ignore")  # PyTriton warns about tritonclient timeouts on every client
    request = json.loads(Path(request_path).read_text())
    answers = [call(c["url"], c["model"], c.get("inputs")) for c in request["calls"]]
    versions = {name: metadata.version(name) for name in ("nvidia-pytriton", "tritonclient", "numpy")}
    Path(answer_path).write_text(json.dumps({"versions": versions, "answers": answers}))


if __name__ == "__main__":
    main(*sys.argv[1:])
