"""OpenVINO's CPU plugin at an inference precision (bf16 runs on AMX / AVX512-BF16 where the CPU has them):
the loader and runner (interface.CpuRuntime) for the served model (`load`, with the compiled-model cache)
and for the build's artifact worker (`load_measured`, at the precision this machine can give).

One source for both sides: this file is copied into every version folder served with OpenVINO and
imported there by the python backend template, so it needs only numpy and openvino (imported when a
model compiles).
"""

from __future__ import annotations

import os
import tempfile

# Where the served model keeps its compiled models (set by `triton-repo serve`), so a reload does not
# compile again; without it, a folder in the temp directory.
CACHE_ENV = "TRITON_REPO_OV_CACHE"

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


def cache_dir() -> str:
    """The served model's compiled-model cache: TRITON_REPO_OV_CACHE, else the temp directory's."""
    return os.environ.get(CACHE_ENV) or os.path.join(tempfile.gettempdir(), "triton-repo-ov-cache")


class OpenVinoSession:
    """The runner: a compiled model and one infer request (Triton runs an instance's batches in turn), with
    ONNX Runtime's session interface (input_names, output_names, run)."""

    def __init__(self, path: str, threads: int, precision: str, cache: str | None = None) -> None:
        import openvino as ov

        core = ov.Core()
        if cache:
            core.set_property({"CACHE_DIR": cache})
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": precision}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        self.compiled = core.compile_model(path, "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.input_names = [port.get_any_name() for port in self.compiled.inputs]
        self.output_names = [port.get_any_name() for port in self.compiled.outputs]

    def run(self, names, feed):
        self.request.infer(feed)
        return [self.request.get_tensor(name).data.copy() for name in names or self.output_names]


def load(path: str, threads: int = 0, precision: str = "") -> OpenVinoSession:
    """The served model's loader: the precision config.pbtxt names (f32 when none), compiled models kept
    in cache_dir()."""
    return OpenVinoSession(path, threads, precision or "f32", cache=cache_dir())


def load_measured(path: str, threads: int = 0, precision: str = "") -> OpenVinoSession:
    """The build's loader: no cache (a build compiles each artifact once), the precision capped to what
    this machine can give (capped_precision)."""
    return OpenVinoSession(path, threads, capped_precision(precision or "f32"))


def version() -> str | None:
    """This environment's OpenVINO, or None."""
    import importlib.metadata as metadata

    try:
        return metadata.version("openvino")
    except metadata.PackageNotFoundError:
        return None
