"""search-precision's workflow: for one artifact kind, rank the nodes by the error they add, search the
fewest to keep in higher precision within the budget, measure its speed, and write them to precision.yaml."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import os
from dataclasses import dataclass, field
from pathlib import Path

from triton_repo.builders.precision.artifacts import ArtifactBuilder
from triton_repo.builders.precision.node_choices import (
    ArtifactChoices,
    SearchResult,
    load_choices,
    save_choices,
)
from triton_repo.builders.precision.results import speed_inputs
from triton_repo.builders.precision.search import (
    SearchOutcome,
    candidates,
    changed_nodes,
    eval_feeds,
    kept_nodes,
    search,
)
from triton_repo.builders.precision.timing import measure_speed
from triton_repo.core.golden import load_golden, sample_case
from triton_repo.core.log import info, step, warn
from triton_repo.core.spec import LoadedSpec
from triton_repo.runtimes.isolated import ArtifactRunFailed, IsolatedSession, Runtime


@dataclass
class ArtifactSearch:
    """One artifact's search: its trials and the set found (outcome.found None: none passed), and the
    batch-8 throughput of FP32, every node quantized and the nodes found (empty when nothing was found)."""

    kind: str
    outcome: SearchOutcome
    speed: dict[str, float] = field(default_factory=dict)


def with_margin(loaded: LoadedSpec, margin: float) -> LoadedSpec:
    """The spec with its accuracy budget made `margin` stricter (precision.yaml records the budget searched)."""
    accuracy = loaded.spec.accuracy
    if not margin or accuracy is None:
        return loaded
    spec = loaded.spec.model_copy(update={"accuracy": accuracy.stricter(margin)})
    return loaded.model_copy(update={"spec": spec})


@dataclass(frozen=True)
class NodeSearchRequest:
    """One artifact kind of one model to search, and the search's bounds."""

    loaded: LoadedSpec
    kind: str
    max_trials: int = 24
    max_seconds: float = 1200.0
    rows: int = 16  # eval rows the layer-wise ranking runs
    qad_steps: int = 0  # a distilled int8: QAD steps per trial (the set found is confirmed at the spec's)


def search_artifact(
    request: NodeSearchRequest, work_dir: Path, runtime: Runtime, builder: ArtifactBuilder
) -> ArtifactSearch:
    """Search the nodes `request.kind` keeps in higher precision to meet the spec's budget; a set found is
    written to the model's precision.yaml (with its accuracy and speed) for every later build to apply."""
    from triton_repo.builders.precision.debug import isolated_layerwise_errors
    from triton_repo.builders.precision.workbench import open_workbench

    loaded, kind, rows, qad_steps = request.loaded, request.kind, request.rows, request.qad_steps
    name = loaded.spec.name
    bench = open_workbench(loaded, work_dir, kind, runtime, builder)
    own = loaded.spec.precision.int8
    distilled = kind == "int8" and own.recover == "qad"
    trial_settings = None
    if distilled and qad_steps != own.qad.steps:  # trials at fewer steps; the found set confirmed below
        trial_settings = own.model_copy(update={"qad": own.qad.model_copy(update={"steps": qad_steps})})
        info(f"{name} int8 is distilled: trials train {qad_steps} QAD steps, the found set {own.qad.steps}")
    default_path = bench.scratch(kind, "all")
    with step(f"{name}: {kind} with every node quantized, measured on the eval set"):
        default = bench.evaluate(kind, (), default_path, trial_settings)
    info(f"{name} {kind}, nothing kept: {default.verdict}")
    ranked: list[str] = []
    if not default.passed:
        ranked_on, which = worst_inputs(bench, default, rows)
        feeds = eval_feeds(ranked_on, bench.batch, rows)
        with step(f"{name}: rank nodes by the error they add (Polygraphy, {which})"):
            changed = None if kind.startswith("fp16") else changed_nodes(bench.fp32, default_path)
            if distilled:  # QAD keeps modules: only their MatMul/Gemm/Conv nodes can be kept
                changed = {n for n in changed if bench.op_types.get(n) in ("MatMul", "Gemm", "Conv")}
            report = isolated_layerwise_errors(name, kind, bench.fp32, default_path, feeds)
            ranked = candidates(report, changed)
        info(f"{len(ranked)} candidate nodes; top 5: {', '.join(ranked[:5])}")

    def evaluate(kept: tuple[str, ...]):
        if not kept:
            return default
        with step(f"{name}: {kind} keeping {len(kept)} node(s)"):
            return bench.evaluate(kind, kept, bench.scratch(kind, "trial"), trial_settings)

    outcome = search(kind, evaluate, ranked, request.max_trials, request.max_seconds, progress=info)
    if outcome.found is not None and trial_settings is not None:
        with step(f"{name}: int8 keeping {len(outcome.found)} node(s), {own.qad.steps} QAD steps"):
            confirmed = bench.evaluate(kind, outcome.found, bench.scratch(kind, "trial"))
        info(f"{name} int8 with {own.qad.steps} QAD steps: {confirmed.verdict}")
        outcome = dataclasses.replace(outcome, accuracy=confirmed)
        if not confirmed.passed:
            stopped = f"the set found at {qad_steps} QAD steps fails at {own.qad.steps}"
            outcome = dataclasses.replace(outcome, found=None, stopped_early=stopped)
    if outcome.found is None:
        return ArtifactSearch(kind, outcome)
    confirmed_path = bench.scratch(kind, "trial") if trial_settings is not None else None
    speed = _speed_cost(bench, kind, outcome.found, default_path, confirmed_path)
    result = SearchResult(
        metric=outcome.accuracy.metric,
        value=round(outcome.accuracy.value, 6),
        bound=outcome.accuracy.bound,
        budget=outcome.accuracy.budget,
        default_value=round(default.value, 6),
        trials=len(outcome.trials),
        seconds=round(outcome.seconds, 1),
        searched_on=datetime.date.today().isoformat(),
        throughput_per_s=speed,
    )
    choices = load_choices(loaded.folder).with_artifact(
        kind, ArtifactChoices(keep=kept_nodes(outcome, bench.op_types), result=result)
    )
    save_choices(choices, loaded.folder)
    for path in bench.work.joinpath("precision-trials").glob("*"):
        path.unlink()
    return ArtifactSearch(kind, outcome, speed)


def worst_inputs(bench, default, rows: int) -> tuple[dict, str]:
    """The eval rows the fully lowered variant gets worst by the task metric (as NNCF ranks quantizers on
    the items whose metric drops most), else the first rows; and how they were chosen."""
    worst = list(default.worst_rows[:rows]) if default.worst_rows else []
    if not worst or bench.loaded.spec.sequence is not None:
        return bench.eval_inputs, f"the first {rows} eval rows"
    picked = {name: a if a.ndim == 0 else a[worst] for name, a in bench.eval_inputs.items()}
    return picked, f"the {len(worst)} eval rows farthest from FP32 by {default.label or default.metric}"


def _speed_cost(
    bench, kind: str, kept: tuple[str, ...], default_path: Path, built: Path | None = None
) -> dict[str, float]:
    """In-process batch-8 throughput of FP32, the fully quantized graph and the nodes found kept, one
    interleaved run."""
    found_path = built or bench.scratch(kind, "found")
    if built is None:
        bench.build(kind, kept, found_path)
    sample = sample_case(load_golden(bench.work / "golden.npz")).inputs
    threads = bench.loaded.spec.triton.intra_op_threads or os.cpu_count() or 1
    runner = bench.runner(kind)
    paths = {
        "fp32": (bench.fp32, bench.runner("fp32")),
        f"{kind} all nodes": (default_path, runner),
        f"{kind} this plan": (found_path, runner),  # the key precision.yaml files already hold
    }
    if not kept:
        paths.pop(f"{kind} all nodes")
    with contextlib.ExitStack() as stack:
        sessions = {}
        for label, (path, how) in paths.items():
            try:
                sessions[label] = stack.enter_context(IsolatedSession(bench.runtime, path, threads, how))
            except ArtifactRunFailed as error:
                warn(f"{label}: not timed: {error}")
        with step(
            f"{bench.loaded.spec.name}: speed of FP32 vs {kind} (batch 8, {bench.runtime.label_of(runner)})"
        ):
            timings, failed = measure_speed(
                sessions,
                speed_inputs(bench.loaded, sample, 1),
                speed_inputs(bench.loaded, sample, 8),
                threads,
                seconds=8,
            )
    for label, error in failed.items():
        warn(f"{label}: not timed: {error}")
    return {label: round(t.throughput_b8, 1) for label, t in timings.items()}
