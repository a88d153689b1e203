"""OpenVINO's CPU plugin: the loader and runner the artifact worker uses, at an inference precision (bf16
runs on AMX / AVX512-BF16 where the CPU has them), configured as the python backend template configures
the served model."""

from __future__ import annotations

import os

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


def open_session(path: str, threads: int, precision: str = "") -> OpenVinoSession:
    return OpenVinoSession(path, threads, precision or "f32")


def version() -> str | None:
    import importlib.metadata as metadata

    try:
        return metadata.version("openvino")
    except metadata.PackageNotFoundError:
        return None
