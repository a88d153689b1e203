"""What `triton-repo build` prints: the table of built models and what publishing changed."""

from __future__ import annotations

from triton_repo.core.errors import CheckFailed
from triton_repo.core.log import info, out


def print_result(result, repository, gpu_reason: str) -> None:
    """The table, the publish summary, and for the gpu target what to run on a GPU host (`repository`:
    the repo.repository.Repository published into)."""
    _print_table(result.rows, result.target)
    _print_publish(result.published, repository.loaded_by())
    if result.pending:
        from triton_repo.repo.gpu_writer import GPU_HOST_COMMANDS

        info(
            f"TensorRT plans not built here ({gpu_reason}); {len(result.pending)} _trt model(s) published "
            f"without a plan: {', '.join(result.pending)}"
        )
        info(f"On a GPU host, in this checkout: {' && '.join(GPU_HOST_COMMANDS)}")
    info(f"repository: {repository}   report: {repository.report_location()}")
    info(f"served models: {', '.join(result.served)}")


def refusals(result, names: list[str]) -> CheckFailed:
    """One line for the build's exit 1: each refused Triton model and why."""

    def without_name(why: str) -> str:  # a refusal line starts with the spec's name; the model says it
        first, _, rest = why.partition(" ")
        return rest if first in names and rest else why

    details = "; ".join(f"{model}: {without_name(why)}" for model, why in result.refused)
    return CheckFailed(
        f"{len(result.refused)} variant(s) refused, not published ({details}); see BUILD_REPORT.md, "
        "`triton-repo debug-int8 MODEL` and `triton-repo search-precision MODEL`"
    )


def _print_publish(published, loaded_by: str = "the running server") -> None:
    """What changed in the repository: new versions (and those kept for rollback), retired models."""
    if not published.versions and not published.retired:
        info("nothing changed: nothing published")
        return
    for name, version in sorted(published.versions.items()):
        kept = [v for v in published.kept[name] if v != version]
        also = f"; kept for rollback: {', '.join(map(str, kept))}" if kept else ""
        served = f"loaded by {loaded_by}" if published.loaded else "served from the next start"
        info(f"published {name} version {version} ({served}{also})")
    for name in published.retired:
        info(f"retired {name} (removed{' and unloaded' if published.loaded else ''})")


def _print_table(rows: list[dict], target: str) -> None:
    from rich.table import Table

    table = Table(
        title="Built models: every (artifact, runtime) pair, accuracy vs FP32 on the eval set, speed in-process"
    )
    for column in (
        "model",
        "artifact",
        "runtime",
        "Triton model",
        "check",
        "MB",
        "b1 ms",
        "b8 inf/s",
        "x fp32",
        "kept",
        "repository",
    ):
        table.add_column(column)
    served = {row["triton_model"] for row in rows if row["triton_model"]}
    for row in rows:
        if row["triton_model"] is None and row["status"].startswith("refused"):
            # bold when no pair serves the variant; plain when a sibling pair serves it instead
            status = (
                "[red]refused[/red]" if row["candidate_for"] in served else "[bold red]REFUSED[/bold red]"
            )
        elif row["status"].startswith("measured, not published"):  # the report and the build say why
            status = "[dim]not published: not faster than FP32[/dim]"
        elif row["triton_model"] is None:
            measured = row["status"].startswith("measured")  # within budget, a sibling pair chosen
            status = f"[dim]{'not chosen' if measured else f'not served ({target})'}[/dim]"
        else:
            status = f"published v{row['published']}" if row["published"] else "unchanged"
        if row["verified_cases"] is not None:
            check = (
                f"vs {row['reference']}: {row['verified_cases']} shapes, max abs {row['max_abs_diff']:.1e}; "
                f"export {row['export']}"
            )
        else:
            check = row["check"] if row["within_budget"] else f"[red]{row['check']}[/red]"
        table.add_row(
            row["model"],
            row["artifact"],
            row["runtime"],
            row["triton_model"] or (f"({row['candidate_for']})" if row["candidate_for"] else "—"),
            check,
            _number(row["mb"], ".1f"),
            _number(row["b1_ms"], ".2f"),
            _number(row["b8"], ".0f"),
            _number(row["speedup"], ".2f"),
            str(row["kept"]),
            status,
        )
    out.print(table)


def _number(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)
