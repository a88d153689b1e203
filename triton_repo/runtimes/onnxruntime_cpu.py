"""ONNX Runtime on the CPU execution provider: the loader and runner (interface.CpuRuntime) for the served
model (`load`) and for the build's artifact worker (`load_measured`), and the in-process sessions every
build stage opens (`cpu_session`).

One source for both sides: this file is copied into every version folder served with ONNX Runtime and
imported there by the python backend template, so it needs only numpy and onnxruntime (imported when a
session opens); what only the build needs comes from its package when the build asks for it.
"""

from __future__ import annotations

from pathlib import Path


def cpu_session(model: Path | str | bytes, threads: int = 0, quiet: bool = True):
    """A CPU InferenceSession for an ONNX file or serialized model; `threads` 0 lets ONNX Runtime choose,
    one inter-op thread (Triton runs a model's instances side by side, not its operators).

    `quiet` silences warnings (log severity ERROR): ONNX Runtime prints one per unused initializer. The
    served model keeps ONNX Runtime's default, so the server log shows them.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    if quiet:
        options.log_severity_level = 4  # errors come back as exceptions; their log lines only repeat them
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


class OrtSession:
    """The runner: an InferenceSession with the interface's input_names, output_names and run."""

    def __init__(self, session) -> None:
        self.session = session
        self.input_names = [i.name for i in session.get_inputs()]
        self.output_names = [o.name for o in session.get_outputs()]

    def run(self, names, feed):
        return self.session.run(names, feed)


def load(path: str, threads: int = 0, precision: str = "") -> OrtSession:
    """The served model's loader. ONNX Runtime has one inference precision, the graph's own (`precision`
    is unused)."""
    return OrtSession(cpu_session(path, threads, quiet=False))


def load_measured(path: str, threads: int = 0, precision: str = "") -> OrtSession:
    """The build's loader: the served session, quiet, on the graph as the build measures it (FP16
    QuantizeLinear computed in FP32 where this ONNX Runtime truncates, fp16_quantize.measured_graph)."""
    from .fp16_quantize import measured_graph  # the build's package; never reached in a version folder

    return OrtSession(cpu_session(measured_graph(path), threads))


def version() -> str | None:
    """This environment's ONNX Runtime (the onnxruntime or onnxruntime-gpu package), or None."""
    import importlib.metadata as metadata

    for package in ("onnxruntime", "onnxruntime-gpu"):
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return None


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
