"""`triton-repo search-precision MODEL`: find the nodes to keep in higher precision, write precision.yaml."""

from __future__ import annotations

import datetime
from pathlib import Path

import click

from triton_repo.cli.options import artifact_runtime, serve_env_option, work_dir_option


@click.command("search-precision")
@click.argument("model", type=click.Path(path_type=Path))
@click.option(
    "--artifact",
    "artifacts",
    type=click.Choice(["int8-cpu", "int8-ov", "int8", "fp16", "fp16-cpu"]),
    multiple=True,
    help="Artifact(s) to search (repeatable). Default: every lower-precision artifact the spec builds.",
)
@click.option("--max-trials", default=24, show_default=True, type=click.IntRange(2), help="Per artifact.")
@click.option(
    "--max-minutes", default=20.0, show_default=True, type=click.FloatRange(0.5), help="Per artifact."
)
@click.option(
    "--rows", default=16, show_default=True, type=click.IntRange(1), help="Eval rows for the ranking."
)
@click.option(
    "--qad-steps",
    default=0,
    show_default=True,
    type=click.IntRange(0),
    help="When the int8 artifact is distilled (precision.int8.recover: qad): QAD steps per trial; the "
    "set found is then confirmed with the spec's steps.",
)
@click.option(
    "--margin",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0),
    help="Search as if the budget were this much stricter (0.001: a min cosine budget of 0.99 is searched "
    "at 0.991), so the plan holds on CPUs whose arithmetic differs a little from this one's.",
)
@work_dir_option
@serve_env_option("The serving environment whose runtime measures every trial.")
def search_precision(
    model: Path,
    artifacts: tuple[str, ...],
    max_trials: int,
    max_minutes: float,
    rows: int,
    qad_steps: int,
    margin: float,
    work_dir: Path,
    serve_env: Path | None,
) -> None:
    """Search the mixed precision of MODEL (a name under models/, or a folder holding model.yaml) that meets its accuracy budget.

    Ranks nodes by the error they add (as debug-int8 does), keeps the top 1, 2, 4... in higher precision
    until the variant is within budget, then drops every kept node the budget does not need. Each trial
    quantizes and measures on the eval set for real. The result goes to MODEL/precision.yaml, which every
    later build applies. Exits 1 when no passing set is found within the bounds.
    """
    from builders.precision.artifacts import ArtifactBuilder, artifacts_for
    from triton_repo.errors import CheckFailed
    from triton_repo.log import info
    from triton_repo.spec import find_model

    loaded = with_margin(find_model(model), margin)
    searchable = ("fp16", "fp16-cpu", "int8", "int8-cpu", "int8-ov")  # ranked by ONNX Runtime: no bf16
    kinds = list(artifacts) or [k for k in artifacts_for(loaded.spec.precisions) if k in searchable]
    if not kinds:
        raise click.UsageError(f"{loaded.spec.name} builds only fp32 (precision.variants): nothing to search")
    failed = []
    runtime = artifact_runtime(serve_env)
    with ArtifactBuilder() as builder:
        for kind in kinds:
            outcome = _search_one(
                loaded, kind, max_trials, max_minutes * 60, rows, work_dir, runtime, builder, qad_steps
            )
            if outcome is None:
                failed.append(kind)
    if len(failed) < len(kinds):
        info(f"written: {loaded.folder / 'precision.yaml'} (rebuild with `make build-repo` to apply it)")
    if failed:
        raise CheckFailed(f"{loaded.spec.name}: no passing mixed precision found for {', '.join(failed)}")


def with_margin(loaded, margin: float):
    """The spec with its accuracy budget made `margin` stricter (the plan records the budget searched)."""
    accuracy = loaded.spec.accuracy
    if not margin or accuracy is None:
        return loaded
    from builders.precision.accuracy import HIGHER_IS_BETTER

    budget = accuracy.effective_budget + (margin if HIGHER_IS_BETTER[accuracy.metric] else -margin)
    spec = loaded.spec.model_copy(update={"accuracy": accuracy.model_copy(update={"budget": budget})})
    return loaded.model_copy(update={"spec": spec})


def _search_one(
    loaded,
    kind: str,
    max_trials: int,
    max_seconds: float,
    rows: int,
    work_dir: Path,
    runtime,
    builder,
    qad_steps: int = 0,
):
    from builders.precision.debug import isolated_layerwise_errors
    from builders.precision.plan import ArtifactPlan, SearchResult, load_plan, save_plan
    from builders.precision.search import candidates, changed_nodes, eval_feeds, kept_nodes, search
    from builders.precision.workbench import open_workbench
    from triton_repo.log import info, out, step

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
        feeds = eval_feeds(bench.eval_inputs, bench.batch, rows)
        with step(f"{name}: rank nodes by the error they add (Polygraphy, {rows} eval rows)"):
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

    outcome = search(kind, evaluate, ranked, max_trials, max_seconds, progress=info)
    if outcome.found is not None and trial_settings is not None:
        with step(f"{name}: int8 keeping {len(outcome.found)} node(s), {own.qad.steps} QAD steps"):
            confirmed = bench.evaluate(kind, outcome.found, bench.scratch(kind, "trial"))
        info(f"{name} int8 with {own.qad.steps} QAD steps: {confirmed.verdict}")
        outcome.accuracy = confirmed
        if not confirmed.passed:
            outcome.found = None
            outcome.stopped_early = f"the set found at {qad_steps} QAD steps fails at {own.qad.steps}"
    _print_trials(name, kind, outcome, out)
    if outcome.found is None:
        info(f"[red]{name} {kind}: no passing set ({outcome.stopped_early})[/red]")
        return None
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
    plan = load_plan(loaded.folder).with_artifact(
        kind, ArtifactPlan(keep=kept_nodes(outcome, bench.op_types), result=result)
    )
    save_plan(plan, loaded.folder)
    info(
        f"{name} {kind}: keep {len(outcome.found)} node(s) -> {outcome.accuracy.verdict}; "
        f"batch-8 inferences/s: {', '.join(f'{k} {v:.0f}' for k, v in speed.items())}"
    )
    for path in bench.work.joinpath("precision-trials").glob("*"):
        path.unlink()
    return outcome


def _speed_cost(
    bench, kind: str, kept: tuple[str, ...], default_path: Path, built: Path | None = None
) -> dict[str, float]:
    """In-process batch-8 throughput of FP32, the fully quantized graph and the found plan, one interleaved run."""
    import contextlib
    import os

    from builders.golden import load_golden, sample_case
    from builders.precision.results import speed_inputs
    from builders.precision.timing import measure_speed
    from builders.runtime.isolated import ArtifactRunFailed, IsolatedSession
    from triton_repo.log import step, warn

    found_path = built or bench.scratch(kind, "found")
    if built is None:
        bench.build(kind, kept, found_path)
    sample = sample_case(load_golden(bench.work / "golden.npz")).inputs
    threads = bench.loaded.spec.triton.intra_op_threads or os.cpu_count() or 1
    engine = bench.engine(kind)
    paths = {
        "fp32": (bench.fp32, bench.engine("fp32")),
        f"{kind} all nodes": (default_path, engine),
        f"{kind} this plan": (found_path, engine),
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
            f"{bench.loaded.spec.name}: speed of FP32 vs {kind} (batch 8, {bench.runtime.label_of(engine)})"
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


def _print_trials(name: str, kind: str, outcome, console) -> None:
    from rich.table import Table

    table = Table(title=f"{name} {kind}: search trials ({outcome.seconds:.0f} s)")
    for column in ("trial", "nodes kept", "result", "seconds"):
        table.add_column(column)
    for number, trial in enumerate(outcome.trials, 1):
        verdict = trial.accuracy.verdict
        table.add_row(
            str(number),
            str(len(trial.kept)),
            verdict if trial.accuracy.passed else f"[red]{verdict}[/red]",
            f"{trial.seconds:.1f}",
        )
    console.print(table)
