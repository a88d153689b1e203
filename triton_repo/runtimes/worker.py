"""The artifact worker: one ONNX file in one inference session, driven by the build over pipes.

Started by triton_repo.runtimes.isolated with the Python of the environment that will serve the artifact
(the serving environment's ONNX Runtime or OpenVINO), so what the build measures is what the server will
run, and a crash in the runtime (SIGSEGV, abort, out of memory) ends this process, not the build. Needs
only numpy and the runtime; commands and replies are triton_repo.runtimes.protocol messages. Each runtime
is one module (registry.RUNTIMES) whose `load_measured` opens the artifact: the served model's session
(`load`, what the python backend template runs) plus what only the build needs.
"""

from __future__ import annotations

import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np  # noqa: E402

from triton_repo.runtimes import onnxruntime_cpu  # noqa: E402
from triton_repo.runtimes.interface import runtime_module  # noqa: E402
from triton_repo.runtimes.protocol import ChannelClosed, receive, send  # noqa: E402
from triton_repo.runtimes.registry import RUNTIMES  # noqa: E402


class Worker:
    def __init__(self) -> None:
        self.session = None
        self.feeds: dict[str, dict[str, np.ndarray]] = {}

    def hello(self, header, arrays):
        versions = {name: runtime_module(name).version() for name in RUNTIMES}
        return {"versions": versions, "python": sys.version.split()[0]}, {}

    def fp16_kernels(self, header, arrays):
        return {"op_types": onnxruntime_cpu.fp16_kernel_ops()}, {}

    def open(self, header, arrays):
        module = runtime_module(header.get("runtime", "onnxruntime"))
        self.session = module.load_measured(
            header["path"], int(header.get("threads", 0)), header.get("precision") or ""
        )
        return {"inputs": self.session.input_names, "outputs": self.session.output_names}, {}

    def run(self, header, arrays):
        """Every row of the inputs in chunks of `batch` rows (0: all at once), outputs concatenated."""
        names = header["outputs"]
        batch = int(header.get("batch", 0))
        shaped = [v for v in arrays.values() if v.ndim]  # 0-d: a per-request scalar, never split
        total = len(shaped[0]) if batch and shaped else 0
        if not batch or total <= batch:
            return {}, dict(zip(names, self.session.run(names, arrays), strict=True))
        parts: dict[str, list[np.ndarray]] = {name: [] for name in names}
        for start in range(0, total, batch):
            feed = {
                k: v if v.ndim == 0 else np.ascontiguousarray(v[start : start + batch])
                for k, v in arrays.items()
            }
            for name, value in zip(names, self.session.run(names, feed), strict=True):
                parts[name].append(value)
        return {}, {name: np.concatenate(values) for name, values in parts.items()}

    def store(self, header, arrays):
        self.feeds[header["name"]] = arrays
        return {}, {}

    def time(self, header, arrays):
        """One untimed run of a stored feed, then `runs` timed ones: seconds each."""
        feed = self.feeds[header["feed"]]
        self.session.run(None, feed)
        seconds = []
        for _ in range(int(header["runs"])):
            start = time.perf_counter()
            self.session.run(None, feed)
            seconds.append(time.perf_counter() - start)
        return {"seconds": seconds}, {}


def main() -> None:
    requests, replies = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # anything a runtime prints must not corrupt the reply channel
    worker = Worker()
    while True:
        try:
            header, arrays = receive(requests)
        except ChannelClosed:
            return
        op = header.get("op")
        if op == "exit":
            return
        handler = getattr(worker, str(op), None) if not str(op).startswith("_") else None
        try:
            if handler is None:
                raise ValueError(f"unknown command {op!r}")
            reply, out = handler(header, arrays)
        except Exception as error:  # noqa: BLE001 - the build decides what a runtime error means
            message = str(error).strip().splitlines()
            send(replies, {"error": f"{type(error).__name__}: {message[0] if message else ''}".strip()})
            traceback.print_exc()
            continue
        send(replies, {"ok": True, **reply}, out)


if __name__ == "__main__":
    main()
