"""`triton-repo search-precision MODEL`: find the nodes to keep in higher precision, write precision.yaml."""

from __future__ import annotations

from pathlib import Path

import click

from triton_repo.builders.precision.kinds import SEARCHABLE
from triton_repo.cli.option_groups import SearchLimits, option_group
from triton_repo.cli.options import artifact_runtime, model_argument, serve_env_option, work_dir_option


@click.command("search-precision")
@model_argument
@click.option(
    "--artifact",
    "artifacts",
    type=click.Choice(SEARCHABLE),
    multiple=True,
    help="Artifact(s) to search (repeatable). Default: every lower-precision artifact the spec builds.",
)
@option_group(
    "limits",
    SearchLimits,
    click.option("--max-trials", default=24, show_default=True, type=click.IntRange(2), help="Per artifact."),
    click.option(
        "--max-minutes", default=20.0, show_default=True, type=click.FloatRange(0.5), help="Per artifact."
    ),
    click.option(
        "--rows",
        default=16,
        show_default=True,
        type=click.IntRange(1, 64),
        help="Eval rows for the ranking: those the fully lowered variant gets worst by the task metric.",
    ),
    click.option(
        "--qad-steps",
        default=0,
        show_default=True,
        type=click.IntRange(0),
        help="When the int8 artifact is distilled (precision.int8.recover: qad): QAD steps per trial; the "
        "set found is then confirmed with the spec's steps.",
    ),
)
@click.option(
    "--margin",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0),
    help="Search as if the budget were this much stricter (0.001: a min cosine budget of 0.99 is searched "
    "at 0.991), so the nodes written to precision.yaml hold on CPUs whose arithmetic differs a little "
    "from this one's.",
)
@work_dir_option
@serve_env_option("The serving environment whose runtime measures every trial.")
def search_precision(
    model: Path,
    artifacts: tuple[str, ...],
    limits: SearchLimits,
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
    from triton_repo.builders.precision.artifacts import ArtifactBuilder
    from triton_repo.builders.precision.kinds import kinds_for
    from triton_repo.builders.precision.node_search import NodeSearchRequest, search_artifact, with_margin
    from triton_repo.core.errors import CheckFailed
    from triton_repo.core.log import info, out
    from triton_repo.core.spec import find_model

    loaded = with_margin(find_model(model), margin)
    kinds = list(artifacts) or [k for k in kinds_for(loaded.spec.precisions) if k in SEARCHABLE]
    if not kinds:
        raise click.UsageError(f"{loaded.spec.name} builds only fp32 (precision.variants): nothing to search")
    name, failed = loaded.spec.name, []
    runtime = artifact_runtime(serve_env)
    with ArtifactBuilder() as builder:
        for kind in kinds:
            request = NodeSearchRequest(
                loaded, kind, limits.max_trials, limits.max_minutes * 60, limits.rows, limits.qad_steps
            )
            found = search_artifact(request, work_dir, runtime, builder)
            outcome = found.outcome
            _print_trials(name, kind, outcome, out)
            if outcome.found is None:
                info(f"[red]{name} {kind}: no passing set ({outcome.stopped_early})[/red]")
                failed.append(kind)
                continue
            info(
                f"{name} {kind}: keep {len(outcome.found)} node(s) -> {outcome.accuracy.verdict}; "
                f"batch-8 inferences/s: {', '.join(f'{k} {v:.0f}' for k, v in found.speed.items())}"
            )
    if len(failed) < len(kinds):
        info(f"written: {loaded.folder / 'precision.yaml'} (rebuild with `make build-repo` to apply it)")
    if failed:
        raise CheckFailed(f"{name}: no passing mixed precision found for {', '.join(failed)}")


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
