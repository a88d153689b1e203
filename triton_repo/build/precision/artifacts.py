"""Precision stage: the FP16 and INT8 ONNX artifacts of a model, each cached by the hash of its inputs.

fp16      ModelOpt AutoCast, I/O kept FP32 (for TensorRT)                 -> model.fp16.onnx
fp16-cpu  ModelOpt AutoCast keeping in FP32 every op type the serving      -> model.fp16-cpu.onnx
          ONNX Runtime has no CPU FP16 kernel for (what the cpu target serves)
bf16      ModelOpt AutoCast to BF16, I/O kept FP32 (for TensorRT)          -> model.bf16.onnx
int8      ModelOpt ONNX PTQ, explicit Q/DQ (for TensorRT)                  -> model.int8.onnx
          or, with precision.int8.recover: qad, ModelOpt PyTorch quantization
          distilled from the FP32 model, FP16 high precision (qad.py)
int8-cpu  ONNX Runtime quantization (served by ONNX Runtime, cpu target)   -> model.int8-cpu.onnx
int8-ov   NNCF PTQ, Q/DQ placed for OpenVINO (served by OpenVINO, cpu)     -> model.int8-ov.onnx
int8-qad  with precision.int8.recover: qad, the same distilled student       -> model.int8-qad.onnx
          exported with explicit Q/DQ and FP32 elsewhere (served by OpenVINO at BF16, cpu)

The cpu target's bf16 is no artifact of its own: the FP32 graph run by OpenVINO at BF16 inference
precision. Half-precision artifacts keep recurrent ops (GRU, LSTM, RNN) in FP32 (lowered.RECURRENT_OPS).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from triton_repo.build.data import DataSet
from triton_repo.core.fingerprint import arrays_digest
from triton_repo.build.precision.lowered import RECURRENT_OPS
from triton_repo.build.precision.plan import PrecisionPlan
from triton_repo.build.precision.qad import QadJob
from triton_repo.core.errors import TritonRepoError
from triton_repo.core.spec import Int8Settings

ARTIFACT_FILES = {
    "fp32": "model.onnx",
    "fp16": "model.fp16.onnx",
    "fp16-cpu": "model.fp16-cpu.onnx",
    "bf16": "model.bf16.onnx",
    "int8": "model.int8.onnx",
    "int8-cpu": "model.int8-cpu.onnx",
    "int8-ov": "model.int8-ov.onnx",
    "int8-qad": "model.int8-qad.onnx",
}
BUILT_WITH = {
    "fp16": "ModelOpt AutoCast",
    "fp16-cpu": "ModelOpt AutoCast",
    "bf16": "ModelOpt AutoCast",
    "int8": "ModelOpt INT8 PTQ",
    "int8-cpu": "ONNX Runtime quantization",
    "int8-ov": "NNCF INT8 PTQ",
    "int8-qad": "ModelOpt QAD",
}
QAD_KINDS = ("int8", "int8-qad")  # what precision.int8.recover: qad distils (one student, two exports)
CALIBRATION_BATCH = 8
AUTOCAST_KINDS = ("fp16", "fp16-cpu", "bf16")  # made by ModelOpt AutoCast


def built_with(kind: str, settings: Int8Settings) -> str:
    if kind == "int8" and settings.recover == "qad":
        return "ModelOpt QAD"
    return BUILT_WITH[kind]


@dataclass(frozen=True)
class Artifact:
    kind: str  # fp32, fp16, fp16-cpu, int8, int8-cpu
    path: Path
    seconds: float
    cached: bool
    kept: tuple[str, ...]  # FP32-graph nodes kept in higher precision (precision.yaml)
    key: str  # what it was built from (see _cache_key); empty for fp32, which the export stage keys
    kept_op_types: tuple[str, ...] = ()  # op types kept in FP32 by rule (FP16 artifacts)
    kept_because: str = ""  # the rule, for the report


def artifacts_for(precisions: list[str], recover: str = "none") -> list[str]:
    """fp32 always; fp16: TensorRT's and the cpu target's; bf16: TensorRT's (the cpu target runs the FP32
    graph in OpenVINO at BF16); int8: TensorRT's, ONNX Runtime's and OpenVINO's, and with `recover` qad
    the distilled student's FP32 Q/DQ export for OpenVINO (after int8, whose build writes it too)."""
    kinds = ["fp32"]
    if "fp16" in precisions:
        kinds += ["fp16", "fp16-cpu"]
    if "bf16" in precisions:
        kinds.append("bf16")
    if "int8" in precisions:
        kinds += ["int8", "int8-cpu", "int8-ov"]
        if recover == "qad":
            kinds.append("int8-qad")
    return kinds


@dataclass(frozen=True)
class OpTypeRule:
    """Op types an FP16 artifact keeps in FP32 whatever precision.yaml says, and why (for the report)."""

    op_types: tuple[str, ...]
    because: str


def fp16_op_rule(
    kind: str, graph_op_types: set[str], fp16_kernels: frozenset[str], runtime: str
) -> OpTypeRule:
    """fp16: recurrent ops. fp16-cpu: those, and every op type of the graph the serving runtime has no
    CPU FP16 kernel for (ONNX Runtime would otherwise wrap each in casts, and crashes on some)."""
    recurrent = sorted(RECURRENT_OPS & graph_op_types)
    if kind in ("fp16", "bf16"):
        return OpTypeRule(tuple(recurrent), "recurrent ops stay FP32" if recurrent else "")
    if kind != "fp16-cpu":
        return OpTypeRule((), "")
    missing = sorted(graph_op_types - fp16_kernels - RECURRENT_OPS - {"Cast", "Constant"})
    reasons = []
    if recurrent:
        reasons.append("recurrent ops stay FP32")
    if missing:
        reasons.append(f"{runtime} has no CPU FP16 kernel for {', '.join(missing)}")
    return OpTypeRule(tuple(recurrent + missing), "; ".join(reasons))


class ArtifactBuilder:
    """The child processes that build artifacts, kept for a model's (or a search's) whole run.

    A child per tool: ModelOpt's (fp16, fp16-cpu, bf16, int8), ONNX Runtime quantization's (int8-cpu)
    and NNCF's (int8-ov), because importing ModelOpt patches ONNX Runtime's quantization module and
    breaks a later quantize_static in the same process. Importing ModelOpt costs about 4 s, so a child is reused rather than started per
    artifact; a child that dies (out of memory, a crash in a quantizer) fails that artifact and is
    replaced for the next one. Use as a context manager.
    """

    def __init__(self) -> None:
        self._pools: dict[str, object] = {}

    def __enter__(self) -> ArtifactBuilder:
        return self

    def __exit__(self, *exc) -> None:
        for pool in self._pools.values():
            pool.shutdown(wait=True, cancel_futures=True)
        self._pools.clear()

    def build(
        self,
        kind: str,
        fp32_onnx: Path,
        output: Path,
        settings: Int8Settings,
        kept: tuple[str, ...],
        calibration: dict[str, np.ndarray] | None,
        kept_op_types: tuple[str, ...] = (),
        qad: QadJob | None = None,
        companion: Path | None = None,
    ) -> Path:
        """Build without caching (the search calls this with candidate exclusions). `qad`: the TensorRT
        int8 artifact is made by quantization-aware distillation of the PyTorch model (qad.py);
        `companion`: where that build also writes the student's FP32 Q/DQ export (int8-qad)."""
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor
        from concurrent.futures.process import BrokenProcessPool

        family = {"int8-cpu": "onnxruntime", "int8-ov": "nncf"}.get(kind, "modelopt")
        if family not in self._pools:
            context = multiprocessing.get_context("spawn")
            self._pools[family] = ProcessPoolExecutor(max_workers=1, mp_context=context)
        job = (kind, fp32_onnx, output, settings, kept, calibration, kept_op_types, qad, companion)
        try:
            return self._pools[family].submit(_build_here, *job).result()
        except BrokenProcessPool:
            self._pools.pop(family).shutdown(wait=False)
            raise TritonRepoError(
                f"{output.name}: the {kind} build process died (out of memory or a crash in the quantizer)"
            ) from None


def make_artifact(
    kind: str,
    fp32_onnx: Path,
    fp32_sha256: str,
    out_dir: Path,
    settings: Int8Settings,
    plan: PrecisionPlan,
    calibration: DataSet | None,
    builder: ArtifactBuilder,
    rule: OpTypeRule = OpTypeRule((), ""),
    qad: QadJob | None = None,
) -> Artifact:
    """Build one artifact next to the FP32 model, or reuse it when nothing it depends on changed (then
    the calibration rows are not even loaded: their digest keys the artifact)."""
    if kind == "fp32":
        return Artifact("fp32", fp32_onnx, 0.0, True, (), "")
    kept = plan.for_artifact(kind).node_names
    output = out_dir / ARTIFACT_FILES[kind]
    qad = qad if kind in QAD_KINDS and settings.recover == "qad" else None
    if kind == "int8-qad" and qad is None:
        raise TritonRepoError(
            "the int8-qad artifact is the QAD student: it needs precision.int8.recover: qad"
        )
    key = _cache_key(kind, fp32_sha256, settings, kept, calibration, rule.op_types, qad)
    key_file = output.with_name(output.name + ".key")
    facts = {"kept_op_types": rule.op_types, "kept_because": rule.because}
    if output.is_file() and key_file.is_file() and key_file.read_text() == key:
        return Artifact(kind, output, 0.0, True, kept, key, **facts)
    start = time.perf_counter()
    key_file.unlink(missing_ok=True)
    # The TensorRT QAD artifact's build also writes the student's FP32 Q/DQ export (int8-qad): one
    # training serves both, and int8-qad (built next) finds it under its own key.
    companion = out_dir / ARTIFACT_FILES["int8-qad"] if kind == "int8" and qad is not None else None
    if companion is not None:
        companion_key = _cache_key("int8-qad", fp32_sha256, settings, kept, calibration, (), qad)
        companion.with_name(companion.name + ".key").unlink(missing_ok=True)
    rows = calibration.arrays if calibration is not None else None
    qad = qad.loaded() if qad is not None else None
    builder.build(kind, fp32_onnx, output, settings, kept, rows, rule.op_types, qad, companion)
    key_file.write_text(key)
    if companion is not None and companion.is_file():
        companion.with_name(companion.name + ".key").write_text(companion_key)
    return Artifact(kind, output, time.perf_counter() - start, False, kept, key, **facts)


def _build_here(
    kind: str,
    fp32_onnx: Path,
    output: Path,
    settings: Int8Settings,
    kept: tuple[str, ...],
    calibration: dict[str, np.ndarray] | None,
    kept_op_types: tuple[str, ...],
    qad: QadJob | None = None,
    companion: Path | None = None,
) -> Path:
    """The child's side: one artifact, the quantizers' chatter silenced."""
    from triton_repo.build.precision.cpu_int8 import CpuInt8Settings, quantize_for_cpu

    with _quiet():
        if kind in QAD_KINDS and qad is not None:
            from triton_repo.build.precision.qad import qad_int8

            high = "fp16" if kind == "int8" else "fp32"
            return qad_int8(qad, output, settings, kept, calibration, kept_op_types, high, companion)
        if kind in AUTOCAST_KINDS:
            low = "bf16" if kind == "bf16" else "fp16"
            return _autocast(fp32_onnx, output, low, kept, kept_op_types, calibration)
        if kind == "int8-ov":
            return _nncf_int8(fp32_onnx, output, settings.openvino, kept, calibration)
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


def exact_names(names: tuple[str, ...]) -> list[str] | None:
    """ModelOpt matches nodes_to_exclude as regular expressions from the start of a name: '/l.1/MatMul'
    would also keep '/l.1/MatMul_1' and '/l11/MatMul'. Each name becomes a pattern matching only itself."""
    return [f"{re.escape(name)}$" for name in names] or None


def _cache_key(kind, fp32_sha256, settings, kept, calibration, kept_op_types=(), qad=None) -> str:
    from importlib.metadata import version

    names = (
        ("nncf", "openvino", "onnx") if kind == "int8-ov" else ("nvidia-modelopt", "onnxruntime-gpu", "onnx")
    )
    if qad is not None:
        names += ("torch",)
    tools = {name: version(name) for name in names}
    own_settings = {  # each artifact is keyed by the settings its quantizer reads
        "int8": {"calibration_method": settings.calibration_method},
        "int8-cpu": settings.cpu.model_dump(mode="json"),
        "int8-ov": settings.openvino.model_dump(mode="json"),
    }
    payload = {
        "kind": kind,
        "fp32": fp32_sha256,
        "settings": own_settings.get(kind),
        "kept": list(kept),
        "kept_op_types": list(kept_op_types),
        "node_match": "exact",
        "calibration": (calibration.digest if calibration is not None else arrays_digest(None))
        if kind.startswith("int8") or kind in AUTOCAST_KINDS
        else None,
        "qad": None
        if qad is None
        else {
            "settings": settings.qad.model_dump(mode="json"),
            "train": qad.train_digest,
            "target": qad.target,
            "v": 1,
        },
        "tools": tools,
    }
    return json.dumps(payload, sort_keys=True)


def _autocast(
    fp32_onnx: Path,
    output: Path,
    low: str,
    kept: tuple[str, ...],
    kept_op_types: tuple[str, ...],
    calibration: dict[str, np.ndarray] | None = None,
) -> Path:
    """ModelOpt AutoCast. Its reference run decides which nodes see values FP16 cannot hold; without
    data it feeds random values in [-1, 1] with every dynamic dim 1, which a Conv1d over audio cannot
    even run and which misses real activation ranges: the calibration rows, when the spec has them,
    go in instead (one .npz per batch)."""
    import onnx
    from modelopt.onnx.autocast import convert_to_mixed_precision

    from triton_repo.build.precision.accuracy import row_batches

    with tempfile.TemporaryDirectory(prefix=f".{output.name}.", dir=output.parent) as scratch:
        batches = None
        if calibration:
            for index, batch in enumerate(row_batches(calibration, CALIBRATION_BATCH)):
                np.savez(Path(scratch) / f"batch{index:04d}.npz", **batch)
            batches = scratch
        model = convert_to_mixed_precision(
            onnx_path=str(fp32_onnx),
            low_precision_type=low,
            keep_io_types=True,
            nodes_to_exclude=exact_names(kept),
            op_types_to_exclude=list(kept_op_types) or None,
            calibration_data=batches,
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
            nodes_to_exclude=exact_names(kept),
            high_precision_dtype="fp32",
            output_path=str(result),
            log_level="ERROR",
        )
        os.replace(result, output)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return output


def openvino_model_type(settings, op_types: set[str]) -> tuple[str, str]:
    """(model type, preset) for NNCF: `auto` reads the graph (Softmax and no Conv: a transformer)."""
    model_type = settings.model_type
    if model_type == "auto":
        model_type = "transformer" if "Softmax" in op_types and "Conv" not in op_types else "cnn"
    preset = settings.preset
    if preset == "auto":
        preset = "mixed" if model_type == "transformer" else "performance"
    return model_type, preset


def _nncf_int8(
    fp32_onnx: Path,
    output: Path,
    settings,
    kept: tuple[str, ...],
    calibration: dict[str, np.ndarray] | None,
) -> Path:
    """NNCF post-training quantization of the ONNX graph, Q/DQ placed for OpenVINO (which runs the
    quantized MatMul/Conv in INT8, on AMX or VNNI where the CPU has them); `kept` is its ignored scope."""
    os.environ.setdefault("NNCF_CI", "1")  # NNCF's switch that keeps its usage telemetry off
    import nncf
    import onnx

    from triton_repo.build.precision.accuracy import row_batches

    if not calibration:
        raise ValueError("int8 needs calibration data")
    model = onnx.load(str(fp32_onnx))
    model_type, preset = openvino_model_type(settings, {node.op_type for node in model.graph.node})
    batches = list(row_batches(calibration, CALIBRATION_BATCH))
    options = {"model_type": nncf.ModelType.TRANSFORMER} if model_type == "transformer" else {}
    quantized = nncf.quantize(
        model,
        nncf.Dataset(batches),
        preset=nncf.QuantizationPreset.MIXED if preset == "mixed" else nncf.QuantizationPreset.PERFORMANCE,
        subset_size=len(batches),
        ignored_scope=nncf.IgnoredScope(names=list(kept)) if kept else None,
        **options,
    )
    tmp = output.with_name(output.name + ".tmp")
    onnx.save(quantized, str(tmp))
    os.replace(tmp, output)
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
