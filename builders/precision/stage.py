"""The precision stage for one model: build its artifacts, then measure every (artifact, engine) pair.

Results are cached in <work>/<name>/precision.json, keyed by the artifacts, the engines' versions and the
eval data, so a rebuild with nothing changed neither re-quantizes nor re-measures.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from builders.data import ModelData
from builders.export import ExportResult
from builders.golden import GoldenCase
from builders.precision.accuracy import AccuracyResult
from builders.precision.artifacts import (
    ARTIFACT_FILES,
    Artifact,
    ArtifactBuilder,
    artifacts_for,
    built_with,
    fp16_op_rule,
    make_artifact,
)
from builders.precision.lowered import describe_lowered
from builders.precision.pairs import ENGINES_OF, REFERENCE, engines_for, pair_id
from builders.precision.plan import PLAN_FILE, check_nodes, load_plan
from builders.precision.qad import qad_job
from builders.precision.timing import SPEED_SECONDS, Timing
from builders.runtime.isolated import ORT, ArtifactRunFailed, Engine, Runtime
from triton_repo.errors import SpecError
from triton_repo.log import step, warn
from triton_repo.references import inputs_at
from triton_repo.spec import LoadedSpec


@dataclass(frozen=True)
class VariantResult:
    """One (artifact, engine) pair as measured: accuracy vs the reference, speed, its golden outputs."""

    artifact: Artifact
    accuracy: AccuracyResult | None  # None for the reference
    timing: Timing | None  # None when the runtime could not run it
    sample: GoldenCase | None  # the golden sample inputs and the outputs this pair computes (None: not run)
    engine: Engine = ORT
    golden_ok: bool = True  # an FP32 pair's outputs match PyTorch's within the spec's tolerances

    @property
    def pair(self) -> str:
        return pair_id(self.artifact.kind, self.engine)

    @property
    def passed(self) -> bool:
        return self.accuracy is None or self.accuracy.passed

    @property
    def servable(self) -> bool:
        """Within budget, measured, and (an FP32 pair) equal to PyTorch within tolerance."""
        return self.passed and self.timing is not None and self.golden_ok

    @property
    def verdict(self) -> str:
        if self.accuracy is None:
            return "reference"
        if not self.golden_ok and self.accuracy.passed:
            return f"{self.accuracy.verdict}, but differs from PyTorch beyond the outputs' tolerance"
        return self.accuracy.verdict


@dataclass(frozen=True)
class PrecisionResult:
    variants: dict[str, VariantResult]  # by pair: fp32, fp32@ov-bf16, fp16-cpu, int8-ov@ov-bf16, ...
    measured_at: str
    cached: bool
    op_types: dict[str, str]  # FP32 node name -> op type
    runtime: str  # what ran the reference, e.g. "ONNX Runtime 1.32.0"
    engines: dict[str, str] = dataclasses.field(default_factory=dict)  # engine name -> its runtime's label
    flops: dict[str, float] = dataclasses.field(default_factory=dict)  # batch size -> FP32 graph FLOPs
    # Q/DQ artifact kind -> share of the matrix FLOPs (batch 8) it runs in INT8
    int8_flops: dict[str, float] = dataclasses.field(default_factory=dict)


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
    builder: ArtifactBuilder | None = None,
    kinds: frozenset[str] | None = None,
    data: ModelData | None = None,
) -> PrecisionResult:
    """Build the model's precision artifacts, then run every (artifact, engine) pair in `runtime` (a worker
    process per pair): accuracy vs FP32 on the eval set, its own outputs on the golden sample, and the
    interleaved timing. A pair the runtime crashes or fails on is refused with one line; the others go on.
    `builder` (the quantizers' child processes) can be shared by every model of a build; `kinds` limits
    the artifacts to those (a target's served kinds), None builds every kind the spec asks for; `data`,
    the spec's data sets, loaded only where a cache misses (the build shares them between stages)."""
    from builders.precision.measure import measure_pairs

    spec = loaded.spec
    plan = load_plan(loaded.folder)
    op_types = graph_node_names(exported.onnx_path)
    check_nodes(plan, set(op_types), loaded.folder / PLAN_FILE)
    # int8 needs it; fp16 and bf16 use it when given (AutoCast's reference run on real rows)
    wants = "int8" in spec.precisions or (spec.data.calibration is not None and spec.lower_precisions)
    data = data or ModelData(loaded, work_dir, exported.fingerprint)
    calibration = data.get("calibration") if wants else None
    with contextlib.ExitStack() as stack:
        builder = builder or stack.enter_context(ArtifactBuilder())
        artifacts, unbuilt = _build_artifacts(
            loaded, exported, work_dir, runtime, plan, data, calibration, builder, kinds
        )
    wanted = engines_for(spec.precisions)
    pairs = {
        pair_id(kind, engine): (artifact, engine)
        for kind, artifact in artifacts.items()
        for engine in wanted[kind]
        if runtime.has(engine)
    }
    missing = sorted({e.runtime for kind in artifacts for e in wanted[kind] if not runtime.has(e)})
    if missing:
        warn(
            f"{spec.name}: {', '.join(missing)} is not installed in {runtime.python}: its pairs are not measured"
        )
    result = measure_pairs(loaded, exported, work_dir, runtime, pairs, op_types, speed_seconds, data)
    return _with_unbuilt(result, unbuilt, spec, runtime)


def _with_unbuilt(result: PrecisionResult, unbuilt: dict, spec, runtime: Runtime) -> PrecisionResult:
    """The measured pairs and, refused, those whose quantizer failed (never cached: tried again)."""
    if not unbuilt:
        return result
    variants = dict(result.variants)
    for kind, (stand_in, line) in unbuilt.items():
        for engine in ENGINES_OF[kind]:
            if runtime.has(engine):
                variants[pair_id(kind, engine)] = VariantResult(
                    stand_in, AccuracyResult.not_run(spec, line), None, None, engine
                )
    return dataclasses.replace(result, variants=variants)


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0] if lines else ''}".strip().removesuffix(":")


def _build_artifacts(loaded, exported, work_dir, runtime, plan, data, calibration, builder, only=None):
    """Every artifact the spec asks for (cached when unchanged). A quantizer that fails refuses that
    variant: it comes back in `unbuilt` with a stand-in artifact and the one-line reason."""
    spec = loaded.spec
    op_types = set(graph_node_names(exported.onnx_path).values())
    kinds = [
        k for k in artifacts_for(spec.precisions, spec.precision.int8.recover) if only is None or k in only
    ]
    fp16_kernels = runtime.fp16_kernel_ops() if "fp16-cpu" in kinds else frozenset()
    artifacts: dict[str, Artifact] = {}
    unbuilt: dict[str, tuple[Artifact, str]] = {}
    qad = qad_job(loaded, data=data)
    for kind in kinds:
        rule = fp16_op_rule(kind, op_types, fp16_kernels, runtime.label)
        kept = len(plan.for_artifact(kind).keep)
        by_rule = f", op types kept FP32: {', '.join(rule.op_types)}" if rule.op_types else ""
        label = f"{spec.name}: {kind} artifact" + (
            f" ({kept} node{'' if kept == 1 else 's'} kept{by_rule})" if kind != REFERENCE else ""
        )
        if kind == "int8" and qad is not None:
            label += f" by QAD, {spec.precision.int8.qad.steps} steps"
        if kind == "int8-qad":
            label += ", the QAD student with FP32 high precision (for OpenVINO)"
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
                    qad,
                )
        except SpecError:
            raise
        except Exception as error:  # noqa: BLE001 - a quantizer failing refuses its variant, not the build
            if kind == REFERENCE:
                raise
            line = f"{spec.name} {kind}: {built_with(kind, spec.precision.int8)} failed: {_first_line(error)}"
            warn(f"refused {line}")
            unbuilt[kind] = (Artifact(kind, work_dir / ARTIFACT_FILES[kind], 0.0, False, (), ""), line)
    return artifacts, unbuilt


def speed_inputs(loaded: LoadedSpec, sample: dict[str, np.ndarray], batch: int) -> dict[str, np.ndarray]:
    """The golden sample at `batch` rows (capped at the model's max batch) and every other axis at opt."""
    spec = loaded.spec
    sizes = {axis: spec.axes[axis].opt for axis in spec.used_axes()}
    if spec.batched:
        sizes["batch"] = min(batch, spec.effective_max_batch_size)
    return inputs_at(loaded, sample, sizes)
