"""The precision stage for one model: build its artifacts, then measure every (artifact, runner) pair.

Results are cached in <work>/<name>/precision.json, keyed by the artifacts, the engines' versions and the
eval data, so a rebuild with nothing changed neither re-quantizes nor re-measures.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from pathlib import Path

from triton_repo.builders.data import DataSet, ModelData
from triton_repo.builders.export import ExportResult
from triton_repo.builders.precision.accuracy import AccuracyResult
from triton_repo.builders.precision.artifacts import (
    Artifact,
    ArtifactBuilder,
    ArtifactRequest,
    built_with,
    fp16_op_rule,
    make_artifact,
)
from triton_repo.builders.precision.kinds import (
    BY_NAME,
    QAD_EXPORT,
    REFERENCE,
    kinds_for,
    pair_id,
    runners_for,
    split_pair,
)
from triton_repo.builders.precision.measure import measure_pairs
from triton_repo.builders.precision.node_choices import (
    CHOICES_FILE,
    PrecisionChoices,
    check_nodes,
    load_choices,
)
from triton_repo.builders.precision.qad import qad_job
from triton_repo.builders.precision.results import PrecisionResult, VariantResult
from triton_repo.builders.precision.timing import SPEED_SECONDS
from triton_repo.core.errors import SpecError
from triton_repo.core.log import step, warn
from triton_repo.core.spec import LoadedSpec
from triton_repo.runtimes.isolated import Runtime


def graph_node_names(onnx_path: Path) -> dict[str, str]:
    """Node name -> op type of an ONNX graph (top level)."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    return {node.name: node.op_type for node in model.graph.node}


def run_precision(
    loaded: LoadedSpec,
    exported: ExportResult,
    work_dir: Path,
    runtime: Runtime,
    speed_seconds: float = SPEED_SECONDS,
    builder: ArtifactBuilder | None = None,
    serves: frozenset[str] | None = None,
    data: ModelData | None = None,
) -> PrecisionResult:
    """Build the model's precision artifacts, then run every (artifact, runner) pair in `runtime` (a worker
    process per pair): accuracy vs FP32 on the eval set, its own outputs on the golden sample, and the
    interleaved timing. A pair the runtime crashes or fails on is refused with one line; the others go on.
    `builder` (the quantizers' child processes) can be shared by every model of a build; `serves` limits
    the pairs to those (a target's served pairs and the reference) and the artifacts to theirs, None builds
    and measures every pair the spec asks for; `data`,
    the spec's data sets, loaded only where a cache misses (the build shares them between stages)."""
    spec = loaded.spec
    choices = load_choices(loaded.folder)
    op_types = graph_node_names(exported.onnx_path)
    check_nodes(choices, set(op_types), loaded.folder / CHOICES_FILE)
    # int8 needs it; fp16 and bf16 use it when given (AutoCast's reference run on real rows)
    wants = "int8" in spec.precisions or (spec.data.calibration is not None and spec.lower_precisions)
    data = data or ModelData(loaded, work_dir, exported.fingerprint)
    calibration = data.get("calibration") if wants else None
    with contextlib.ExitStack() as stack:
        builder = builder or stack.enter_context(ArtifactBuilder())
        kinds = None if serves is None else frozenset(split_pair(pair)[0] for pair in serves)
        request = _ArtifactsRequest(loaded, exported, work_dir, runtime, choices, data, calibration, kinds)
        artifacts, unbuilt = _build_artifacts(request, builder)
    wanted = {
        kind: tuple(r for r in runners if serves is None or pair_id(kind, r) in serves)
        for kind, runners in runners_for(spec.precisions).items()
    }
    pairs = {
        pair_id(kind, runner): (artifact, runner)
        for kind, artifact in artifacts.items()
        for runner in wanted[kind]
        if runtime.has(runner)
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
        for runner in BY_NAME[kind].runners:
            if runtime.has(runner):
                variants[pair_id(kind, runner)] = VariantResult(
                    stand_in, AccuracyResult.not_run(spec, line), None, None, runner
                )
    return dataclasses.replace(result, variants=variants)


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0] if lines else ''}".strip().removesuffix(":")


@dataclass(frozen=True)
class _ArtifactsRequest:
    """A model's artifacts to build: from its exported FP32 graph, with its precision.yaml choices."""

    loaded: LoadedSpec
    exported: ExportResult
    work_dir: Path
    runtime: Runtime  # the serving runtime (which op types have CPU FP16 kernels)
    choices: PrecisionChoices
    data: ModelData
    calibration: DataSet | None
    only: frozenset[str] | None = None  # these kinds; None: every kind the spec asks for


def _build_artifacts(
    request: _ArtifactsRequest, builder: ArtifactBuilder
) -> tuple[dict[str, Artifact], dict[str, tuple[Artifact, str]]]:
    """Every artifact the spec asks for (cached when unchanged). A quantizer that fails refuses that
    variant: it comes back in `unbuilt` with a stand-in artifact and the one-line reason."""
    loaded, exported, work_dir, runtime = request.loaded, request.exported, request.work_dir, request.runtime
    spec = loaded.spec
    op_types = set(graph_node_names(exported.onnx_path).values())
    kinds = [
        k
        for k in kinds_for(spec.precisions, spec.precision.int8.recover)
        if request.only is None or k in request.only
    ]
    fp16_kernels = (
        runtime.fp16_kernel_ops() if any(BY_NAME[k].cpu_kernels_only for k in kinds) else frozenset()
    )
    artifacts: dict[str, Artifact] = {}
    unbuilt: dict[str, tuple[Artifact, str]] = {}
    qad = qad_job(loaded, data=request.data)
    for kind in kinds:
        rule = fp16_op_rule(kind, op_types, fp16_kernels, runtime.label)
        kept = request.choices.for_artifact(kind).node_names
        made_from = ArtifactRequest(
            kind,
            exported.onnx_path,
            exported.onnx_sha256,
            work_dir,
            spec.precision.int8,
            kept,
            request.calibration,
            rule,
            qad,
        )
        try:
            with step(_label(spec, made_from)):
                artifacts[kind] = make_artifact(made_from, builder)
        except SpecError:
            raise
        except Exception as error:  # noqa: BLE001 - a quantizer failing refuses its variant, not the build
            if kind == REFERENCE:
                raise
            line = f"{spec.name} {kind}: {built_with(kind, spec.precision.int8)} failed: {_first_line(error)}"
            warn(f"refused {line}")
            unbuilt[kind] = (Artifact(kind, work_dir / BY_NAME[kind].file, 0.0, False, (), ""), line)
    return artifacts, unbuilt


def _label(spec, request: ArtifactRequest) -> str:
    """The step's line: the artifact, the nodes and op types it keeps, and how QAD makes it."""
    kind, kept, rule = request.kind, len(request.kept), request.rule
    by_rule = f", op types kept FP32: {', '.join(rule.op_types)}" if rule.op_types else ""
    label = f"{spec.name}: {kind} artifact" + (
        f" ({kept} node{'' if kept == 1 else 's'} kept{by_rule})" if kind != REFERENCE else ""
    )
    made = BY_NAME[kind]
    if made.qad_high and made.maker != QAD_EXPORT and request.qad is not None:
        label += f" by QAD, {spec.precision.int8.qad.steps} steps"
    if made.maker == QAD_EXPORT:
        label += f", the QAD student with {made.qad_high.upper()} high precision (for {made.runners[0].runtime_name})"
    return label
