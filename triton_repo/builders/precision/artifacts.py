"""Precision stage: the lower-precision ONNX artifacts of a model, each cached by the hash of its inputs.

Which kinds exist, how each is made (its maker) and its file are declared in kinds.py; this module runs
the makers: ModelOpt AutoCast (FP16/BF16, I/O kept FP32), ModelOpt ONNX PTQ (explicit Q/DQ, for TensorRT),
ONNX Runtime quantization and NNCF PTQ (for the cpu target's runtimes), and with precision.int8.recover:
qad, the student distilled from the FP32 model (qad.py), exported twice. Half-precision artifacts keep
recurrent ops (GRU, LSTM, RNN) in FP32 (lowered.RECURRENT_OPS).
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

from triton_repo.builders.data import DataSet
from triton_repo.builders.precision.kinds import (
    AUTOCAST,
    BY_NAME,
    EXPORT,
    KINDS,
    MODELOPT_INT8,
    NNCF_INT8,
    ONNXRUNTIME_INT8,
    QAD_EXPORT,
    TOOL_FAMILY,
)
from triton_repo.builders.precision.lowered import RECURRENT_OPS
from triton_repo.builders.precision.qad import QadJob
from triton_repo.core.errors import TritonRepoError
from triton_repo.core.fingerprint import arrays_digest
from triton_repo.core.spec import Int8Settings

CALIBRATION_BATCH = 8
_QAD_STUDENT = next(k.name for k in KINDS if k.maker == QAD_EXPORT)  # QAD's second export (int8-qad)


def built_with(kind: str, settings: Int8Settings) -> str:
    """The tool that made `kind` under these settings (a kind QAD can make says QAD when it did)."""
    made = BY_NAME[kind]
    if made.qad_high and settings.recover == "qad":
        return BY_NAME[_QAD_STUDENT].built_with
    return made.built_with


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


@dataclass(frozen=True)
class OpTypeRule:
    """Op types an FP16 artifact keeps in FP32 whatever precision.yaml says, and why (for the report)."""

    op_types: tuple[str, ...]
    because: str


@dataclass(frozen=True)
class ArtifactJob:
    """One artifact to build as asked, uncached: what the builder's child process gets (picklable)."""

    kind: str
    fp32_onnx: Path
    output: Path
    settings: Int8Settings
    kept: tuple[str, ...] = ()  # FP32-graph nodes kept in higher precision
    calibration: dict[str, np.ndarray] | None = None  # the calibration rows
    kept_op_types: tuple[str, ...] = ()
    qad: QadJob | None = None  # the TensorRT int8 artifact is distilled from the PyTorch model (qad.py)
    companion: Path | None = None  # where that build also writes the student's FP32 Q/DQ export (int8-qad)


@dataclass(frozen=True)
class ArtifactRequest:
    """One artifact of a model, built beside its FP32 graph unless a cached one was built from the same."""

    kind: str
    fp32_onnx: Path
    fp32_sha256: str
    out_dir: Path
    settings: Int8Settings  # the spec's precision.int8 (or a command line's)
    kept: tuple[str, ...]  # FP32-graph nodes kept in higher precision (precision.yaml's for the kind)
    calibration: DataSet | None
    rule: OpTypeRule = OpTypeRule((), "")
    qad: QadJob | None = None  # used when the kind is made by QAD and settings.recover is qad


def fp16_op_rule(
    kind: str, graph_op_types: set[str], fp16_kernels: frozenset[str], runtime: str
) -> OpTypeRule:
    """AutoCast kinds: recurrent ops. A kind for the cpu target's ONNX Runtime (fp16-cpu): those, and every
    op type of the graph it has no CPU FP16 kernel for (ONNX Runtime would otherwise wrap each in casts, and
    crashes on some)."""
    made = BY_NAME[kind]
    recurrent = sorted(RECURRENT_OPS & graph_op_types)
    if made.maker != AUTOCAST:
        return OpTypeRule((), "")
    if not made.cpu_kernels_only:
        return OpTypeRule(tuple(recurrent), "recurrent ops stay FP32" if recurrent else "")
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

    def build(self, job: ArtifactJob) -> Path:
        """Build without caching (the search calls this with candidate exclusions)."""
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor
        from concurrent.futures.process import BrokenProcessPool

        family = TOOL_FAMILY[BY_NAME[job.kind].maker]
        if family not in self._pools:
            context = multiprocessing.get_context("spawn")
            self._pools[family] = ProcessPoolExecutor(max_workers=1, mp_context=context)
        try:
            return self._pools[family].submit(_build_here, job).result()
        except BrokenProcessPool:
            self._pools.pop(family).shutdown(wait=False)
            raise TritonRepoError(
                f"{job.output.name}: the {job.kind} build process died (out of memory or a crash in the quantizer)"
            ) from None


def make_artifact(request: ArtifactRequest, builder: ArtifactBuilder) -> Artifact:
    """Build one artifact next to the FP32 model, or reuse it when nothing it depends on changed (then
    the calibration rows are not even loaded: their digest keys the artifact)."""
    kind, settings, kept, rule = request.kind, request.settings, request.kept, request.rule
    calibration = request.calibration
    made = BY_NAME[kind]
    if made.maker == EXPORT:
        return Artifact(kind, request.fp32_onnx, 0.0, True, (), "")
    output = request.out_dir / made.file
    qad = request.qad if made.qad_high and settings.recover == "qad" else None
    if made.maker == QAD_EXPORT and qad is None:
        raise TritonRepoError(f"the {kind} artifact is the QAD student: it needs precision.int8.recover: qad")
    key = _cache_key(kind, request.fp32_sha256, settings, kept, calibration, rule.op_types, qad)
    key_file = output.with_name(output.name + ".key")
    facts = {"kept_op_types": rule.op_types, "kept_because": rule.because}
    if output.is_file() and key_file.is_file() and key_file.read_text() == key:
        return Artifact(kind, output, 0.0, True, kept, key, **facts)
    start = time.perf_counter()
    key_file.unlink(missing_ok=True)
    # The TensorRT QAD artifact's build also writes the student's FP32 Q/DQ export (int8-qad): one
    # training serves both, and the export (built next) finds it under its own key.
    student = made.maker != QAD_EXPORT and qad is not None
    companion = request.out_dir / BY_NAME[_QAD_STUDENT].file if student else None
    if companion is not None:
        companion_key = _cache_key(_QAD_STUDENT, request.fp32_sha256, settings, kept, calibration, (), qad)
        companion.with_name(companion.name + ".key").unlink(missing_ok=True)
    rows = calibration.arrays if calibration is not None else None
    qad = qad.loaded() if qad is not None else None
    builder.build(
        ArtifactJob(kind, request.fp32_onnx, output, settings, kept, rows, rule.op_types, qad, companion)
    )
    key_file.write_text(key)
    if companion is not None and companion.is_file():
        companion.with_name(companion.name + ".key").write_text(companion_key)
    return Artifact(kind, output, time.perf_counter() - start, False, kept, key, **facts)


def _build_here(job: ArtifactJob) -> Path:
    """The child's side: one artifact, the quantizers' chatter silenced."""
    from triton_repo.builders.precision.cpu_int8 import CpuInt8Settings, quantize_for_cpu

    kind, fp32_onnx, output, settings = job.kind, job.fp32_onnx, job.output, job.settings
    kept, calibration, kept_op_types = job.kept, job.calibration, job.kept_op_types
    made = BY_NAME[kind]
    with _quiet():
        if made.qad_high and job.qad is not None:
            from triton_repo.builders.precision.qad import qad_int8

            return qad_int8(
                job.qad, output, settings, kept, calibration, kept_op_types, made.qad_high, job.companion
            )
        if made.maker == AUTOCAST:
            return _autocast(fp32_onnx, output, made.low, kept, kept_op_types, calibration)
        if made.maker == NNCF_INT8:
            return _nncf_int8(fp32_onnx, output, settings.openvino, kept, calibration)
        if made.maker == MODELOPT_INT8:
            return _modelopt_int8(fp32_onnx, output, settings.calibration_method, kept, calibration)
        if made.maker == ONNXRUNTIME_INT8:
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

    made = BY_NAME[kind]
    names = (
        ("nncf", "openvino", "onnx")
        if made.maker == NNCF_INT8
        else ("nvidia-modelopt", "onnxruntime-gpu", "onnx")
    )
    if qad is not None:
        names += ("torch",)
    tools = {name: version(name) for name in names}
    own_settings = {  # each artifact is keyed by the settings its quantizer reads
        MODELOPT_INT8: {"calibration_method": settings.calibration_method},
        ONNXRUNTIME_INT8: settings.cpu.model_dump(mode="json"),
        NNCF_INT8: settings.openvino.model_dump(mode="json"),
    }
    payload = {
        "kind": kind,
        "fp32": fp32_sha256,
        "settings": own_settings.get(made.maker),
        "kept": list(kept),
        "kept_op_types": list(kept_op_types),
        "node_match": "exact",
        "calibration": (calibration.digest if calibration is not None else arrays_digest(None))
        if made.maker != EXPORT
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

    from triton_repo.builders.precision.accuracy import row_batches

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

    from triton_repo.builders.precision.accuracy import row_batches

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
