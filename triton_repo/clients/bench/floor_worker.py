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
    parser.add_argument("--step", default="", help="an ensemble's pre-processing step (JSON), run first")
    parser.add_argument("--step-dir", default="", help="the step's folder: preprocessing.py, tokenizer")
    args = parser.parse_args()

    feeds = _feeds(args.inputs, raw=bool(args.step))
    run, runtime = _session(args)
    if args.step:
        run = _pipeline(run, args.step, args.step_dir)
        runtime += " after the served pre-processing"

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


def _pipeline(run, step_json: str, step_dir: str):
    """run() after the ensemble's step, with the served preprocessing.py (raw request in, tensors out)."""
    sys.path.insert(0, step_dir)
    import preprocessing

    step = json.loads(step_json)
    if "tokenizer_file" in step:
        step["tokenizer_file"] = str(Path(step_dir) / step["tokenizer_file"])

    def pipeline(feed):
        (raw,) = feed.values()
        tensors = preprocessing.run(step, raw)
        tensors.pop("LETTERBOX", None)  # the postprocess step's, not the model's
        return run(tensors)

    return pipeline


def _feeds(path: str, raw: bool = False) -> list[dict]:
    """The requests to run in turn: one per request index ("i/input" keys), or the one request; `raw`:
    texts and encoded images (object arrays this run's own caller wrote)."""
    with np.load(path, allow_pickle=raw) as archive:
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
