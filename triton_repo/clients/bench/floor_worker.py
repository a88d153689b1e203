"""The in-process floor: the served ONNX file run in the serving environment's Python.

Run as a script by `triton_repo.clients.bench.floor` with the server's own runtime (the python backend's ONNX
Runtime or OpenVINO, and numpy<2), the session options of the served model, one request at a time, and
the same windows and stability rule as the served measurement. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

import numpy as np  # noqa: E402

from triton_repo.clients.bench.method import Completion, pool, stability, window_of  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--onnx", required=True)
    parser.add_argument(
        "--inputs", required=True, help=".npz with one array per input, or 'i/input' per request i (cycled)"
    )
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--runtime", choices=["onnxruntime", "openvino"], default="onnxruntime")
    parser.add_argument("--precision", choices=["f32", "bf16"], default="f32")
    parser.add_argument("--window", type=float, required=True)
    parser.add_argument("--max-windows", type=int, required=True)
    parser.add_argument("--warmup", type=float, required=True)
    args = parser.parse_args()

    feeds = _feeds(args.inputs)
    run, runtime = _session(args)

    end, turn = time.perf_counter() + args.warmup, 0
    while time.perf_counter() < end:
        run(feeds[turn % len(feeds)])
        turn += 1
    windows, completions = [], []
    while len(windows) < args.max_windows:
        start = time.perf_counter()
        while time.perf_counter() < start + args.window:
            sent = time.perf_counter()
            run(feeds[turn % len(feeds)])
            turn += 1
            completions.append(Completion(sent, time.perf_counter()))
        windows.append(window_of(completions, start, time.perf_counter()))
        completions.clear()
        if stability(windows)[0]:
            break
    stable, rate_spread, p99_spread = stability(windows)
    pooled = pool(windows[-3:])
    print(
        json.dumps(
            {
                "runtime": runtime,
                "threads": args.threads,
                "windows": len(windows),
                "stable": stable,
                "spread": [rate_spread, p99_spread],
                "request_rate": pooled.request_rate,
                "latency_ms": vars(pooled.latency),
            }
        )
    )


def _feeds(path: str) -> list[dict]:
    """The requests to run in turn: one per request index ("i/input" keys), or the one request."""
    with np.load(path, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    if not all("/" in name for name in arrays):
        return [arrays]
    feeds: dict[int, dict] = {}
    for key, array in arrays.items():
        index, _, name = key.partition("/")
        feeds.setdefault(int(index), {})[name] = array
    return [feeds[i] for i in sorted(feeds)]


def _session(args):
    """A run(feed) function with the python backend template's options, and the runtime's label."""
    if args.runtime == "openvino":
        import openvino as ov

        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": args.precision}
        if args.threads:
            config["INFERENCE_NUM_THREADS"] = args.threads
        request = ov.Core().compile_model(args.onnx, "CPU", config).create_infer_request()
        return request.infer, f"openvino {ov.__version__.split('-')[0]} ({args.precision})"
    import onnxruntime as ort

    options = ort.SessionOptions()  # the python backend template's options
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(args.onnx, options, providers=["CPUExecutionProvider"])
    return (lambda feed: session.run(None, feed)), f"onnxruntime {ort.__version__}"


if __name__ == "__main__":
    main()
