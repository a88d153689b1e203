"""Precision stage: the FP16 and INT8 ONNX artifacts of a model, each cached by the hash of its inputs.

fp16      ModelOpt AutoCast, I/O kept FP32                       -> model.fp16.onnx
int8      ModelOpt ONNX PTQ, explicit Q/DQ (for TensorRT)         -> model.int8.onnx
int8-cpu  ONNX Runtime quantization (what the cpu target serves)  -> model.int8-cpu.onnx
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from builders.precision.plan import PrecisionPlan
from triton_repo.errors import TritonRepoError
from triton_repo.spec import Int8Settings

ARTIFACT_FILES = {
    "fp32": "model.onnx",
    "fp16": "model.fp16.onnx",
    "int8": "model.int8.onnx",
    "int8-cpu": "model.int8-cpu.onnx",
}
# The artifact the cpu target serves as <name>_<precision>.
CPU_SERVED = {"fp32": "fp32", "fp16": "fp16", "int8": "int8-cpu"}
# The artifact the gpu target serves as <name>_<precision>_trt and _onnx: int8 is ModelOpt's Q/DQ graph.
GPU_SERVED = {"fp32": "fp32", "fp16": "fp16", "int8": "int8"}
CALIBRATION_BATCH = 8


@dataclass(frozen=True)
class Artifact:
    kind: str  # fp32, fp16, int8, int8-cpu
    path: Path
    seconds: float
    cached: bool
    kept: tuple[str, ...]  # FP32-graph nodes kept in higher precision
    key: str  # what it was built from (see _cache_key); empty for fp32, which the export stage keys


def artifacts_for(precisions: list[str]) -> list[str]:
    """fp32 always; fp16; int8 means both INT8 artifacts (TensorRT's and the cpu target's)."""
    kinds = ["fp32"]
    if "fp16" in precisions:
        kinds.append("fp16")
    if "int8" in precisions:
        kinds += ["int8", "int8-cpu"]
    return kinds


def arrays_digest(arrays: dict[str, np.ndarray] | None) -> str:
    digest = hashlib.sha256()
    for name in sorted(arrays or {}):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}|{array.dtype}|{array.shape}|".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def make_artifact(
    kind: str,
    fp32_onnx: Path,
    fp32_sha256: str,
    out_dir: Path,
    settings: Int8Settings,
    plan: PrecisionPlan,
    calibration: dict[str, np.ndarray] | None,
) -> Artifact:
    """Build one artifact next to the FP32 model, or reuse it when nothing it depends on changed."""
    if kind == "fp32":
        return Artifact("fp32", fp32_onnx, 0.0, True, (), "")
    kept = plan.for_artifact(kind).node_names
    output = out_dir / ARTIFACT_FILES[kind]
    key = _cache_key(kind, fp32_sha256, settings, kept, calibration)
    key_file = output.with_name(output.name + ".key")
    if output.is_file() and key_file.is_file() and key_file.read_text() == key:
        return Artifact(kind, output, 0.0, True, kept, key)
    start = time.perf_counter()
    key_file.unlink(missing_ok=True)
    build_artifact(kind, fp32_onnx, output, settings, kept, calibration)
    key_file.write_text(key)
    return Artifact(kind, output, time.perf_counter() - start, False, kept, key)


def build_artifact(
    kind: str,
    fp32_onnx: Path,
    output: Path,
    settings: Int8Settings,
    kept: tuple[str, ...],
    calibration: dict[str, np.ndarray] | None,
) -> Path:
    """Build without caching (the search calls this with candidate exclusions), in a child process.

    ModelOpt patches ONNX Runtime's quantization module when imported, which breaks a later ONNX Runtime
    quantize_static in the same process; a child per build also returns its memory and contains crashes.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    context = multiprocessing.get_context("spawn")
    try:
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
            return pool.submit(_build_here, kind, fp32_onnx, output, settings, kept, calibration).result()
    except BrokenProcessPool:
        raise TritonRepoError(
            f"{output.name}: the {kind} build process died (out of memory or a crash in the quantizer)"
        ) from None


def _build_here(
    kind: str,
    fp32_onnx: Path,
    output: Path,
    settings: Int8Settings,
    kept: tuple[str, ...],
    calibration: dict[str, np.ndarray] | None,
) -> Path:
    """The child's side: one artifact, the quantizers' chatter silenced."""
    from builders.precision.cpu_int8 import CpuInt8Settings, quantize_for_cpu

    with _quiet():
        if kind == "fp16":
            return _autocast_fp16(fp32_onnx, output, kept)
        if kind == "int8":
            return _modelopt_int8(fp32_onnx, output, settings.calibration_method, kept, calibration)
        if kind == "int8-cpu":
            cpu = settings.cpu
            cpu_settings = CpuInt8Settings(
                mode=cpu.mode,
                per_channel=cpu.per_channel,
                optimize=cpu.optimize,
                exclude_nodes=kept,
                op_types=tuple(cpu.op_types) if cpu.op_types else None,
                smooth_alpha=cpu.smooth_alpha,
            )
            return quantize_for_cpu(fp32_onnx, output, cpu_settings, calibration, CALIBRATION_BATCH)
    raise ValueError(f"unknown artifact kind {kind!r}")


def _cache_key(kind, fp32_sha256, settings, kept, calibration) -> str:
    from importlib.metadata import version

    tools = {name: version(name) for name in ("nvidia-modelopt", "onnxruntime-gpu", "onnx")}
    payload = {
        "kind": kind,
        "fp32": fp32_sha256,
        "settings": settings.model_dump(mode="json") if kind != "fp16" else None,
        "kept": list(kept),
        "calibration": arrays_digest(calibration) if kind.startswith("int8") else None,
        "tools": tools,
    }
    return json.dumps(payload, sort_keys=True)


def _autocast_fp16(fp32_onnx: Path, output: Path, kept: tuple[str, ...]) -> Path:
    import onnx
    from modelopt.onnx.autocast import convert_to_mixed_precision

    model = convert_to_mixed_precision(
        onnx_path=str(fp32_onnx),
        low_precision_type="fp16",
        keep_io_types=True,
        nodes_to_exclude=list(kept) or None,
    )
    tmp = output.with_name(output.name + ".tmp")
    onnx.save(model, str(tmp))
    os.replace(tmp, output)
    return output


def _modelopt_int8(
    fp32_onnx: Path,
    output: Path,
    calibration_method: str,
    kept: tuple[str, ...],
    calibration: dict[str, np.ndarray] | None,
) -> Path:
    """Explicit Q/DQ for a strongly typed TensorRT build; everything not quantized stays FP32.

    ModelOpt rewrites the ONNX file it is given (it saves its pre-processed graph over the input), so it
    works on a private copy in a scratch directory beside the output.
    """
    import shutil
    import tempfile

    from modelopt.onnx.quantization import quantize

    if not calibration:
        raise ValueError("int8 needs calibration data")
    scratch = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    try:
        source = scratch / "model.onnx"
        shutil.copyfile(fp32_onnx, source)
        result = scratch / "model.int8.onnx"
        quantize(
            onnx_path=str(source),
            quantize_mode="int8",
            calibration_data=calibration,
            calibration_method=calibration_method,
            calibration_eps=["cpu"],
            nodes_to_exclude=list(kept) or None,
            high_precision_dtype="fp32",
            output_path=str(result),
            log_level="ERROR",
        )
        os.replace(result, output)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return output


@contextlib.contextmanager
def _quiet():
    """The quantizers log every pass through the root logger and print; keep the build's output readable."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with (
            open(os.devnull, "w") as devnull,
            contextlib.redirect_stdout(devnull),
            contextlib.redirect_stderr(devnull),  # tqdm progress bars
        ):
            yield
    finally:
        logging.disable(previous)
