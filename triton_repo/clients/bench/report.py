"""Benchmark results: terminal tables, JSON, CSV, PNG plots and a Markdown summary."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict
from pathlib import Path

from triton_repo.clients.bench.run import Point
from triton_repo.clients.bench.server_stats import PHASES

BREAKDOWN = ("client + network", "queue", "compute input", "compute infer", "compute output", "server other")


def _num(value: float | None, fmt: str = ".2f") -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, fmt)


def _errors(point: Point) -> str:
    return ", ".join(f"{status} {n}" for status, n in sorted(point.errors.items())) or "0"


def breakdown_ms(point: Point) -> dict[str, float] | None:
    """Where one request's end-to-end mean latency goes, in milliseconds (sums to the mean)."""
    if point.server is None or point.server.requests == 0:
        return None
    phases = point.server.phase_ms
    return dict(
        zip(
            BREAKDOWN,
            (point.client_ms, *(phases[p] for p in PHASES), point.server.other_ms),
            strict=True,
        )
    )


def point_row(point: Point) -> dict:
    """A flat record per point (CSV and the JSON's `points`)."""
    server = point.server
    breakdown = breakdown_ms(point) or dict.fromkeys(BREAKDOWN)
    return {
        "model": point.model,
        "protocol": point.protocol,
        "load": point.level.label,
        "batch": point.batch,
        "shape": point.shape,
        "stable": point.stable,
        "windows": point.windows,
        "throughput_spread": point.spread[0],
        "p99_spread": point.spread[1],
        "inferences_per_s": point.inferences_per_s,
        "requests_per_s": point.request_rate,
        **{f"latency_{k}_ms": v for k, v in asdict(point.latency).items()},
        "errors": sum(point.errors.values()),
        "errors_by_status": point.errors,
        "client_requests": point.requests,
        "server_requests": server.requests if server else None,
        "server_failures": server.failures if server else None,
        "count_gap": point.count_gap,
        "server_average_batch": server.average_batch if server else None,
        **{f"{k.replace(' + ', '_').replace(' ', '_')}_ms": v for k, v in breakdown.items()},
        "client_cpu_ms_per_request": point.client_cpu_ms,
        "server_cpu_ms_per_request": point.server_cpu_ms,
        "schedule_lag_p99_ms": point.schedule_lag_p99_ms,
        "floor_inferences_per_s": point.floor.inferences_per_s if point.floor else None,
        "floor_p50_ms": point.floor.latency.p50 if point.floor else None,
        "served_vs_floor": point.served_vs_floor,
        "added_p50_ms": point.added_p50_ms,
        "steps": step_rows(point),
        "stages": stage_rows(point),
    }


def step_rows(point: Point) -> list[dict] | None:
    """An ensemble's composing models over the point's windows: requests, queue and compute milliseconds
    per request (compute charged per batch, as Triton does), and the batch each step ran at."""
    if point.steps is None:
        return None
    rows = []
    for model, delta in point.steps.items():
        phases = delta.phase_ms
        rows.append(
            {
                "model": model,
                "requests": delta.requests,
                "queue_ms": phases["queue"],
                "compute_ms": phases["compute_input"] + phases["compute_infer"] + phases["compute_output"],
                "compute_infer_ms": phases["compute_infer"],
                "average_batch": delta.average_batch,
            }
        )
    return rows


def stage_rows(point: Point) -> list[dict]:
    """Stage timings a model exported as custom metrics: per request of this point (as the server counted
    them) and per row the stage processed."""
    requests = point.server.requests if point.server else 0
    return [
        {
            "model": s.model,
            "stage": s.stage,
            "seconds": s.seconds,
            "rows": s.rows,
            "ms_per_request": s.seconds * 1e3 / requests if requests else None,
            "ms_per_row": s.seconds * 1e3 / s.rows if s.rows else None,
        }
        for s in point.stages
    ]


def print_tables(points: list[Point], console) -> None:
    from rich.table import Table

    table = Table(title="Throughput and latency (pooled over the last 3 windows)")
    columns = ("model", "load", "batch", "inf/s", "req/s", "p50", "p90", "p95", "p99", "max ms", "errors")
    for column in (*columns, "stable", "served / in-process", "+p50 ms"):
        table.add_column(column, justify="left" if column in ("model", "load", "errors") else "right")
    for p in points:
        lat = p.latency
        table.add_row(
            p.model,
            f"{p.protocol} {p.level.label}",
            str(p.batch),
            f"{p.inferences_per_s:,.1f}",
            f"{p.request_rate:,.1f}",
            *(_num(v) for v in (lat.p50, lat.p90, lat.p95, lat.p99, lat.max)),
            _errors(p),
            "yes" if p.stable else f"[yellow]NO[/yellow] ({p.spread[0]:.0%}/{p.spread[1]:.0%})",
            _num(p.served_vs_floor),
            _num(p.added_p50_ms),
        )
    console.print(table)

    table = Table(
        title="Where the time goes (ms per request, mean; server statistics and CPU over the same windows)"
    )
    short = ("client+net", "queue", "in", "infer", "out", "other")
    for column in ("model", "load", "e2e", *short, "batch", "in-proc", "CPU gen", "CPU server", "requests"):
        table.add_column(column, justify="left" if column in ("model", "load") else "right")
    for p in points:
        parts = breakdown_ms(p)
        counts = "—" if p.count_gap is None else f"{p.requests:,}/{p.server.requests:,} ({p.count_gap:.1%})"
        table.add_row(
            p.model,
            f"{p.protocol} {p.level.label}",
            _num(p.latency.mean),
            *((_num(parts[k]) for k in BREAKDOWN) if parts else ["—"] * len(BREAKDOWN)),
            _num(p.server.average_batch if p.server else None, ".1f"),
            _num(p.floor.latency.mean if p.floor else None),
            _num(p.client_cpu_ms, ".3f"),
            _num(p.server_cpu_ms, ".3f"),
            counts,
        )
    console.print(table)
    console.print(
        "[dim]client+net = end-to-end minus server time; queue/in/infer/out = Triton's queue and compute "
        "phases; other = rest of server time; batch = inferences per model execution; in-proc = the same "
        "ONNX file without a server; CPU = milliseconds of CPU per request (this load generator, and the "
        "local tritonserver with its backend stubs); requests = counted by this client / by the server.[/dim]"
    )
    print_steps(points, console)


def print_steps(points: list[Point], console) -> None:
    """The ensemble's steps, and stage timings models export, under the breakdown (nothing without them)."""
    from rich.table import Table

    stepped = [p for p in points if p.steps]
    if stepped:
        table = Table(title="Ensemble steps (ms per request, mean; server statistics over the same windows)")
        for column in ("model", "load", "step", "requests", "queue", "compute", "infer", "batch"):
            table.add_column(column, justify="left" if column in ("model", "load", "step") else "right")
        for p in stepped:
            for row in step_rows(p):
                table.add_row(
                    p.model,
                    f"{p.protocol} {p.level.label}",
                    row["model"],
                    f"{row['requests']:,}",
                    _num(row["queue_ms"]),
                    _num(row["compute_ms"]),
                    _num(row["compute_infer_ms"]),
                    _num(row["average_batch"], ".1f"),
                )
        console.print(table)
        console.print(
            "[dim]requests = the step's requests (one per ensemble request); compute = input + infer + output "
            "(a batch's time charged to each of its requests); batch = inferences per execution.[/dim]"
        )
    staged = [p for p in points if p.stages]
    if staged:
        table = Table(title="Stages a model reports (triton_repo_stage_seconds_total, same windows)")
        for column in ("model", "load", "step", "stage", "ms/request", "ms/row", "rows/request"):
            table.add_column(
                column, justify="left" if column in ("model", "load", "step", "stage") else "right"
            )
        for p in staged:
            requests = p.server.requests if p.server else 0
            for row in stage_rows(p):
                table.add_row(
                    p.model,
                    f"{p.protocol} {p.level.label}",
                    row["model"],
                    row["stage"],
                    _num(row["ms_per_request"], ".3f"),
                    _num(row["ms_per_row"], ".3f"),
                    _num(row["rows"] / requests if requests else None, ".1f"),
                )
        console.print(table)


def comparison(points: list[Point]) -> list[dict]:
    """Per variant: its best stable throughput, the latency there, and its single-request latency."""
    rows = []
    for model in dict.fromkeys(p.model for p in points):
        mine = [p for p in points if p.model == model and not p.errors]
        candidates = [p for p in mine if p.stable] or mine
        if not candidates:
            rows.append({"model": model, "best": None})
            continue
        best = max(candidates, key=lambda p: p.inferences_per_s)
        single = next((p for p in mine if p.level.concurrency == 1), None)
        rows.append(
            {
                "model": model,
                "best": best.level.label,
                "best_stable": best.stable,
                "inferences_per_s": best.inferences_per_s,
                "p99_ms": best.latency.p99,
                "served_vs_floor": best.served_vs_floor,
                "floor_inferences_per_s": best.floor.inferences_per_s if best.floor else None,
                "c1_p50_ms": single.latency.p50 if single else None,
                "c1_added_p50_ms": single.added_p50_ms if single else None,
            }
        )
    return rows


def comparison_markdown(rows: list[dict], protocol: str, batch: int, shape: str) -> str:
    lines = [
        f"Best stable throughput per variant ({protocol}, batch {batch}, {shape}); in-process = the same "
        "ONNX file in the server's ONNX Runtime, one request at a time, same threads.",
        "",
        "| variant | best load | inf/s | p99 ms | in-process inf/s | served / in-process | c=1 p50 ms "
        "| c=1 added p50 ms |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r["best"] is None:
            lines.append(f"| {r['model']} | no error-free point | | | | | | |")
            continue
        best = r["best"] + ("" if r["best_stable"] else " (unstable)")
        lines.append(
            f"| {r['model']} | {best} | {r['inferences_per_s']:,.1f} | {_num(r['p99_ms'])} "
            f"| {_num(r['floor_inferences_per_s'], ',.1f')} | {_num(r['served_vs_floor'])} "
            f"| {_num(r['c1_p50_ms'])} | {_num(r['c1_added_p50_ms'])} |"
        )
    return "\n".join(lines) + "\n"


def print_comparison(rows: list[dict], console, title: str) -> None:
    from rich.table import Table

    table = Table(title=title)
    headers = (
        "variant",
        "best load",
        "inf/s",
        "p99 ms",
        "in-process inf/s",
        "served / in-process",
        "c=1 p50",
        "c=1 +p50",
    )
    for column in headers:
        table.add_column(column, justify="left" if column in ("variant", "best load") else "right")
    for r in rows:
        if r["best"] is None:
            table.add_row(r["model"], "[red]no error-free point[/red]", *[""] * 6)
            continue
        table.add_row(
            r["model"],
            r["best"] + ("" if r["best_stable"] else " [yellow](unstable)[/yellow]"),
            f"{r['inferences_per_s']:,.1f}",
            _num(r["p99_ms"]),
            _num(r["floor_inferences_per_s"], ",.1f"),
            _num(r["served_vs_floor"]),
            _num(r["c1_p50_ms"]),
            _num(r["c1_added_p50_ms"]),
        )
    console.print(table)


def write_results(points: list[Point], rows: list[dict], meta: dict, folder: Path, markdown: str) -> None:
    """results.json (everything), points.csv (one row per point), summary.md, and the plots."""
    folder.mkdir(parents=True, exist_ok=True)
    records = [point_row(p) for p in points]
    floors = {p.model: asdict(p.floor) for p in points if p.floor}
    document = {"meta": meta, "floors": floors, "comparison": rows, "points": records}
    (folder / "results.json").write_text(json.dumps(finite(document), indent=2, default=str, allow_nan=False))
    with (folder / "points.csv").open("w", newline="") as handle:
        nested = ("errors_by_status", "steps", "stages")
        fields = [k for k in records[0] if k not in nested] if records else []
        writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(records)
    (folder / "summary.md").write_text(markdown)
    plot_results(points, folder)


def finite(value):
    """NaN and infinity (no measurement, an unbounded spread) as null: strict JSON for any parser."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def plot_results(points: list[Point], folder: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(p.model for p in points))
    figure, axes = plt.subplots(figsize=(8, 5))
    for model in models:
        mine = [p for p in points if p.model == model]
        axes.plot([p.latency.p99 for p in mine], [p.inferences_per_s for p in mine], marker="o", label=model)
        for p in mine:
            axes.annotate(p.level.label, (p.latency.p99, p.inferences_per_s), fontsize=7)
    axes.set_xlabel("p99 latency (ms)")
    axes.set_ylabel("throughput (inferences/s)")
    axes.set_title("Throughput vs p99 latency")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(folder / "throughput_vs_p99.png", dpi=120)
    plt.close(figure)

    measured = [(p, breakdown_ms(p)) for p in points]
    measured = [(p, parts) for p, parts in measured if parts]
    if not measured:
        return
    figure, axes = plt.subplots(figsize=(max(6, 0.5 * len(measured) + 2), 5))
    labels = [f"{p.model}\n{p.level.label}" for p, _ in measured]
    bottom = [0.0] * len(measured)
    for part in BREAKDOWN:
        heights = [max(parts[part], 0.0) for _, parts in measured]
        axes.bar(labels, heights, bottom=bottom, label=part)
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    floors = [
        (label, p.floor.latency.mean) for label, (p, _) in zip(labels, measured, strict=True) if p.floor
    ]
    if floors:
        axes.scatter(*zip(*floors, strict=True), marker="_", s=300, color="black", label="in-process latency")
    axes.set_ylabel("ms per request (mean)")
    axes.set_title("Where the time goes")
    axes.tick_params(axis="x", labelsize=6, rotation=90)
    axes.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(folder / "time_breakdown.png", dpi=120)
    plt.close(figure)
