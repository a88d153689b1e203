"""The precision stage for one model: build its artifacts, gate each on accuracy, time them all.

Results are cached in <work>/<name>/precision.json, keyed by the artifacts and the eval data, so a rebuild
with nothing changed neither re-quantizes nor re-measures.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from builders.export import ExportResult
from builders.fingerprint import sha256_file
from builders.golden import GoldenCase, load_golden, sample_case
from builders.precision.accuracy import AccuracyResult, eval_batch_size, measure
from builders.precision.artifacts import (
    ARTIFACT_FILES,
    BUILT_WITH,
    Artifact,
    ArtifactBuilder,
    arrays_digest,
    artifacts_for,
    fp16_op_rule,
    make_artifact,
)
from builders.precision.lowered import describe_lowered
from builders.precision.plan import PLAN_FILE, check_nodes, load_plan
from builders.precision.timing import SPEED_SECONDS, THROUGHPUT_BATCH, Timing, measure_speed
from builders.runtime.isolated import ArtifactRunFailed, IsolatedSession, Runtime
from triton_repo.errors import CheckFailed, SpecError
from triton_repo.log import step, warn
from triton_repo.references import inputs_at, load_arrays, load_labels
from triton_repo.spec import LoadedSpec

RESULTS_FILE = "precision.json"


@dataclass(frozen=True)
class VariantResult:
    artifact: Artifact
    accuracy: AccuracyResult | None  # None for fp32 (the reference)
    timing: Timing | None  # None when the runtime could not run the artifact
    sample: GoldenCase | None  # the golden sample inputs and this artifact's own outputs (None: not run)

    @property
    def passed(self) -> bool:
        return self.accuracy is None or self.accuracy.passed

    @property
    def verdict(self) -> str:
        return self.accuracy.verdict if self.accuracy else "reference"


@dataclass(frozen=True)
class PrecisionResult:
    variants: dict[str, VariantResult]  # by artifact kind: fp32, fp16, fp16-cpu, int8, int8-cpu
    measured_at: str
    cached: bool
    op_types: dict[str, str]  # FP32 node name -> op type
    runtime: str  # what ran the artifacts, e.g. "ONNX Runtime 1.32.0"


def graph_node_names(onnx_path: Path) -> dict[str, str]:
    """Node name -> op type of an ONNX graph (top level)."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    return {node.name: node.op_type for node in model.graph.node}


def refusal(name: str, kind: str, path: Path, error: ArtifactRunFailed) -> str:
    """'seqtag fp16-cpu: ONNX Runtime 1.32.0 crashed (SIGSEGV) running model.fp16-cpu.onnx; it has GRU in FP16'."""
    return f"{name} {kind}: {error}; {describe_lowered(path)}"


def run_precision(
    loaded: LoadedSpec,
    exported: ExportResult,
    work_dir: Path,
    runtime: Runtime,
    speed_seconds: float = SPEED_SECONDS,
) -> PrecisionResult:
    """Build the model's precision artifacts, then run each in `runtime` (a worker process per artifact):
    accuracy vs FP32 on the eval set, its own outputs on the golden sample, and the interleaved timing.
    A variant the runtime crashes or fails on is refused with one line; the others go on."""
    spec = loaded.spec
    fp32_onnx, golden_path = exported.onnx_path, exported.golden_path
    plan = load_plan(loaded.folder)
    op_types = graph_node_names(fp32_onnx)
    check_nodes(plan, set(op_types), loaded.folder / PLAN_FILE)
    calibration = load_arrays(loaded, "calibration") if "int8" in spec.precisions else None
    kinds = artifacts_for(spec.precisions)
    with ArtifactBuilder() as builder:
        artifacts, unbuilt = _build_artifacts(loaded, exported, work_dir, runtime, plan, calibration, builder)
    eval_inputs = load_arrays(loaded, "eval") if spec.lower_precisions else None
    labels = load_labels(loaded) if eval_inputs is not None and spec.accuracy.metric == "top1_drop" else None
    key = _results_key(loaded, exported, artifacts, eval_inputs, labels, runtime.label)
    cached = _load_results(work_dir, key, artifacts, golden_path, op_types, runtime.label)
    if cached is not None:
        return _with_unbuilt(cached, unbuilt, spec, kinds)
    threads = spec.triton.intra_op_threads or os.cpu_count() or 1
    sample = sample_case(load_golden(golden_path))
    outputs = [o.name for o in spec.outputs]
    failures: dict[str, ArtifactRunFailed] = {}
    accuracy: dict[str, AccuracyResult | None] = {"fp32": None}
    samples: dict[str, GoldenCase] = {}
    with contextlib.ExitStack() as stack:
        sessions = _open_sessions(stack, runtime, artifacts, threads, failures)
        if "fp32" in failures:
            raise CheckFailed(f"{spec.name}: the FP32 model cannot be served: {failures['fp32']}")
        if eval_inputs is not None:
            batch = eval_batch_size(spec)
            rows = len(next(iter(eval_inputs.values())))
            with step(f"{spec.name}: FP32 on the eval set ({rows} rows, {runtime.label})"):
                reference = _run_fp32(spec.name, sessions["fp32"], eval_inputs, outputs, batch)
            for kind in [k for k in sessions if k != "fp32"]:
                with step(f"{spec.name}: {kind} vs FP32 on the eval set ({spec.accuracy.metric})"):
                    try:
                        result = sessions[kind].run(eval_inputs, outputs, batch)
                    except ArtifactRunFailed as error:
                        failures[kind] = error
                        continue
                    accuracy[kind] = measure(spec, reference, result, labels)
        for kind in [k for k in sessions if k not in failures]:
            try:
                samples[kind] = _own_sample(kind, sessions[kind], sample, outputs)
            except ArtifactRunFailed as error:
                failures[kind] = error
        live = {kind: session for kind, session in sessions.items() if kind not in failures}
        with step(
            f"{spec.name}: in-process speed in {runtime.label}, {threads} threads, "
            f"{len(live)} artifacts interleaved"
        ):
            timings, failed = measure_speed(
                live,
                speed_inputs(loaded, sample.inputs, 1),
                speed_inputs(loaded, sample.inputs, THROUGHPUT_BATCH),
                threads,
                seconds=speed_seconds,
            )
        failures.update(failed)
    if "fp32" in failures:
        raise CheckFailed(f"{spec.name}: the FP32 model cannot be served: {failures['fp32']}")
    for kind, error in failures.items():
        line = refusal(spec.name, kind, artifacts[kind].path, error)
        warn(f"refused {line}")
        accuracy[kind] = AccuracyResult.not_run(spec, line)
    variants = {
        kind: VariantResult(
            artifact,
            accuracy.get(kind),
            None if kind in failures else timings[kind],
            None if kind in failures else samples[kind],
        )
        for kind, artifact in artifacts.items()
    }
    measured_at = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    result = PrecisionResult(variants, measured_at, False, op_types, runtime.label)
    _save_results(work_dir, key, result)
    return _with_unbuilt(result, unbuilt, spec, kinds)


def _with_unbuilt(result: PrecisionResult, unbuilt: dict, spec, kinds: list[str]) -> PrecisionResult:
    """The measured variants and, refused, those whose quantizer failed (never cached: tried again)."""
    if not unbuilt:
        return result
    failed = {
        kind: VariantResult(stand_in, AccuracyResult.not_run(spec, line), None, None)
        for kind, (stand_in, line) in unbuilt.items()
    }
    variants = {kind: result.variants.get(kind) or failed[kind] for kind in kinds}
    return dataclasses.replace(result, variants=variants)


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0] if lines else ''}".strip().removesuffix(":")


def _build_artifacts(loaded, exported, work_dir, runtime, plan, calibration, builder):
    """Every artifact the spec asks for (cached when unchanged). A quantizer that fails refuses that
    variant: it comes back in `unbuilt` with a stand-in artifact and the one-line reason."""
    spec = loaded.spec
    op_types = set(graph_node_names(exported.onnx_path).values())
    kinds = artifacts_for(spec.precisions)
    fp16_kernels = runtime.fp16_kernel_ops() if "fp16-cpu" in kinds else frozenset()
    artifacts: dict[str, Artifact] = {}
    unbuilt: dict[str, tuple[Artifact, str]] = {}
    for kind in kinds:
        rule = fp16_op_rule(kind, op_types, fp16_kernels, runtime.label)
        kept = len(plan.for_artifact(kind).keep)
        by_rule = f", op types kept FP32: {', '.join(rule.op_types)}" if rule.op_types else ""
        label = f"{spec.name}: {kind} artifact" + (f" ({kept} nodes kept{by_rule})" if kind != "fp32" else "")
        try:
            with step(label):
                artifacts[kind] = make_artifact(
                    kind,
                    exported.onnx_path,
                    exported.onnx_sha256,
                    work_dir,
                    spec.precision.int8,
                    plan,
                    calibration,
                    builder,
                    rule,
                )
        except SpecError:
            raise
        except Exception as error:  # noqa: BLE001 - a quantizer failing refuses its variant, not the build
            if kind == "fp32":
                raise
            line = f"{spec.name} {kind}: {BUILT_WITH[kind]} failed: {_first_line(error)}"
            warn(f"refused {line}")
            unbuilt[kind] = (Artifact(kind, work_dir / ARTIFACT_FILES[kind], 0.0, False, (), ""), line)
    return artifacts, unbuilt


def _open_sessions(
    stack: contextlib.ExitStack,
    runtime: Runtime,
    artifacts: dict[str, Artifact],
    threads: int,
    failures: dict[str, ArtifactRunFailed],
) -> dict[str, IsolatedSession]:
    """A worker per artifact, each with the served thread count; one the runtime cannot load is a failure."""
    sessions = {}
    for kind, artifact in artifacts.items():
        try:
            sessions[kind] = stack.enter_context(IsolatedSession(runtime, artifact.path, threads))
        except ArtifactRunFailed as error:
            failures[kind] = error
    return sessions


def _run_fp32(name: str, session: IsolatedSession, inputs, outputs: list[str], batch: int):
    try:
        return session.run(inputs, outputs, batch)
    except ArtifactRunFailed as error:
        raise CheckFailed(f"{name}: the FP32 model cannot be served: {error}") from None


def speed_inputs(loaded: LoadedSpec, sample: dict[str, np.ndarray], batch: int) -> dict[str, np.ndarray]:
    """The golden sample at `batch` rows (capped at the model's max batch) and every other axis at opt."""
    spec = loaded.spec
    sizes = {axis: spec.axes[axis].opt for axis in spec.used_axes()}
    if spec.batched:
        sizes["batch"] = min(batch, spec.effective_max_batch_size)
    return inputs_at(loaded, sample, sizes)


def _own_sample(kind: str, session: IsolatedSession, sample: GoldenCase, outputs: list[str]) -> GoldenCase:
    """FP32 keeps the PyTorch outputs (after checking the runtime runs it); a variant's served check
    expects what the variant itself computes."""
    computed = session.run(sample.inputs, outputs)
    return sample if kind == "fp32" else GoldenCase(sample.label, sample.inputs, computed)


def _results_key(
    loaded: LoadedSpec,
    exported: ExportResult,
    artifacts: dict[str, Artifact],
    eval_inputs,
    labels,
    runtime: str,
) -> str:
    """Everything the measurements depend on: artifacts, eval data and labels, golden sample, settings,
    and the runtime that ran them."""
    spec = loaded.spec
    payload = {
        "artifacts": {kind: artifact.key for kind, artifact in artifacts.items()},
        "fp32": exported.onnx_sha256,
        "eval": arrays_digest(eval_inputs),
        "labels": arrays_digest(None if labels is None else {"labels": labels}),
        "golden": sha256_file(exported.golden_path),
        "accuracy": spec.accuracy.model_dump(mode="json") if spec.accuracy else None,
        "threads": spec.triton.intra_op_threads,
        "axes": {name: r.model_dump() for name, r in spec.axes.items()},
        "runtime": runtime,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _save_results(work_dir: Path, key: str, result: PrecisionResult) -> None:
    data = {
        "key": key,
        "measured_at": result.measured_at,
        "runtime": result.runtime,
        "variants": {
            kind: {
                "accuracy": asdict(v.accuracy) if v.accuracy else None,
                "timing": asdict(v.timing) if v.timing else None,
                "sample_outputs": f"{kind}.sample.npz" if v.sample else None,
            }
            for kind, v in result.variants.items()
        },
    }
    for kind, variant in result.variants.items():
        if variant.sample is not None:
            np.savez(work_dir / f"{kind}.sample.npz", **variant.sample.outputs)
    tmp = work_dir / (RESULTS_FILE + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(work_dir / RESULTS_FILE)


def _load_results(
    work_dir: Path,
    key: str,
    artifacts: dict[str, Artifact],
    golden_path: Path,
    op_types: dict[str, str],
    runtime: str,
) -> PrecisionResult | None:
    path = work_dir / RESULTS_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if data.get("key") != key or set(data["variants"]) != set(artifacts):
        return None
    sample = sample_case(load_golden(golden_path))
    variants = {}
    for kind, entry in data["variants"].items():
        own = None
        if entry["sample_outputs"]:
            try:
                with np.load(work_dir / entry["sample_outputs"], allow_pickle=False) as archive:
                    own = GoldenCase(sample.label, sample.inputs, {n: archive[n] for n in archive.files})
            except OSError:
                return None  # a sample file went missing: measure again
        variants[kind] = VariantResult(
            artifacts[kind],
            AccuracyResult(**entry["accuracy"]) if entry["accuracy"] else None,
            Timing(**entry["timing"]) if entry["timing"] else None,
            own,
        )
    return PrecisionResult(variants, data["measured_at"], True, op_types, runtime)
