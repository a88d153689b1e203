"""The artifact worker: one ONNX file in one inference session, driven by the build over pipes.

Started by triton_repo.runtimes.isolated with the Python of the environment that will serve the artifact
(the serving environment's ONNX Runtime or OpenVINO), so what the build measures is what the server will
run, and a crash in the runtime (SIGSEGV, abort, out of memory) ends this process, not the build. Needs
only numpy and the runtime; commands and replies are triton_repo.runtimes.protocol messages. The session
options are the python backend template's (triton_repo/repo/templates/onnx_model.py).
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np  # noqa: E402

from triton_repo.runtimes.protocol import ChannelClosed, receive, send  # noqa: E402


def _measured_graph(path: str):
    """The artifact's path, or its bytes with FP16 QuantizeLinear computed in FP32 where this ONNX Runtime
    truncates FP16 quantization (triton_repo.runtimes.fp16_quantize)."""
    from triton_repo.runtimes.fp16_quantize import exact_fp16_quantize, runtime_truncates

    if not runtime_truncates():
        return path
    import onnx

    model = onnx.load(path)
    rewritten = exact_fp16_quantize(model)
    return path if rewritten is model else rewritten.SerializeToString()


def fp16_kernel_ops() -> list[str]:
    """ONNX op types (default domain) the CPU execution provider has a float16 kernel for."""
    from onnxruntime.capi import _pybind_state as C

    found = set()
    for kernel in C.get_all_opkernel_def():
        if kernel.provider != "CPUExecutionProvider" or kernel.domain not in ("", "ai.onnx"):
            continue
        if any("tensor(float16)" in types for types in kernel.type_constraints.values()):
            found.add(kernel.op_name)
    return sorted(found)


# oneDNN's ISA levels with BF16 arithmetic. Under ONEDNN_MAX_CPU_ISA below them (a CPU emulated as
# AVX2-only in CI), OpenVINO still reads CPUID and asks oneDNN for BF16 kernels it then refuses
# ("Supported primitive descriptors list is empty"); on a real AVX2 CPU it runs bf16 as f32. Do that.
BF16_ISAS = ("AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX512_CORE_AMX", "AVX10", "ALL")


def capped_precision(precision: str) -> str:
    """The inference precision OpenVINO can give under ONEDNN_MAX_CPU_ISA: f32 for bf16 below BF16."""
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper()
    if precision == "bf16" and cap and not cap.startswith(BF16_ISAS):
        return "f32"
    return precision


class OpenVinoSession:
    """An OpenVINO compiled model with ONNX Runtime's session interface (run, get_inputs, get_outputs)."""

    def __init__(self, path: str, threads: int, precision: str) -> None:
        import openvino as ov

        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": capped_precision(precision)}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        self.compiled = ov.Core().compile_model(path, "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.input_names = [port.get_any_name() for port in self.compiled.inputs]
        self.output_names = [port.get_any_name() for port in self.compiled.outputs]

    def run(self, names, feed):
        self.request.infer(feed)
        return [self.request.get_tensor(name).data.copy() for name in names or self.output_names]


def versions() -> dict[str, str | None]:
    """The inference runtimes this environment has, by name: version or None."""
    import importlib.metadata as metadata

    found = {}
    for name in ("onnxruntime", "openvino"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            try:
                found[name] = metadata.version(f"{name}-gpu") if name == "onnxruntime" else None
            except metadata.PackageNotFoundError:
                found[name] = None
    return found


class Worker:
    def __init__(self) -> None:
        self.session = None
        self.feeds: dict[str, dict[str, np.ndarray]] = {}

    def hello(self, header, arrays):
        return {"versions": versions(), "python": sys.version.split()[0]}, {}

    def fp16_kernels(self, header, arrays):
        return {"op_types": fp16_kernel_ops()}, {}

    def open(self, header, arrays):
        threads = int(header.get("threads", 0))
        if header.get("runtime", "onnxruntime") == "openvino":
            session = OpenVinoSession(header["path"], threads, header.get("precision") or "f32")
            self.session = session
            return {"inputs": session.input_names, "outputs": session.output_names}, {}
        import onnxruntime as ort

        options = ort.SessionOptions()  # the python backend template's options
        options.log_severity_level = 4  # errors come back as exceptions; their log lines only repeat them
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            _measured_graph(header["path"]), options, providers=["CPUExecutionProvider"]
        )
        return {
            "inputs": [i.name for i in self.session.get_inputs()],
            "outputs": [o.name for o in self.session.get_outputs()],
        }, {}

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
