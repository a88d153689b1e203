"""ONNX Runtime on the CPU execution provider: the sessions every stage opens in-process (cpu_session),
and the loader and runner the artifact worker uses (open_session), configured as the python backend
template configures the served model."""

from __future__ import annotations

from pathlib import Path


def cpu_session(model: Path | bytes, threads: int = 0):
    """A CPU InferenceSession for an ONNX file or serialized model; `threads` 0 lets ONNX Runtime choose.

    Warnings are silenced (log severity ERROR): ONNX Runtime prints one per unused initializer.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 4  # errors come back as exceptions; their log lines only repeat them
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


class OrtSession:
    """An artifact in ONNX Runtime, with the worker's session interface (run, input_names, output_names)."""

    def __init__(self, path: str, threads: int) -> None:
        self.session = cpu_session(measured_graph(path), threads)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, names, feed):
        return self.session.run(names, feed)


def open_session(path: str, threads: int, precision: str = "") -> OrtSession:
    """The loader: ONNX Runtime has one inference precision, the graph's own (`precision` is unused)."""
    return OrtSession(path, threads)


def version() -> str | None:
    """This environment's ONNX Runtime (the onnxruntime or onnxruntime-gpu package), or None."""
    import importlib.metadata as metadata

    for package in ("onnxruntime", "onnxruntime-gpu"):
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return None


def measured_graph(path: str):
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
