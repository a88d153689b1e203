"""ONNX Runtime sessions on the CPU execution provider, configured the same way by every stage."""

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
