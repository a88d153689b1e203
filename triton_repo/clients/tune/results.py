"""What a tune run prints and writes: every candidate measured, the winner and its gain, a Pareto plot of
accuracy x throughput x p99, results.json and candidates.csv, and tuning.yaml when asked to apply."""

from __future__ import annotations

import csv
import datetime
import json
import math
from pathlib import Path

from triton_repo.clients.tune.search import Measured
from triton_repo.clients.tune.session import TuneResult
from triton_repo.core.spec import load_spec
from triton_repo.core.spec.tuning import write_tuning
from triton_repo.repo.publish import read_manifest


def row_of(measured: Measured, accuracy: dict[str, dict]) -> dict:
    c = measured.candidate
    best = measured.best
    return {
        "variant": c.variant,
        "precision": c.precision,
        "instances": c.instances,
        "threads": c.threads,
        "batching": c.batching.label,
        "windows": measured.settings,
        "accuracy": accuracy.get(c.variant, {}).get("verdict", ""),
        "accuracy_value": accuracy.get(c.variant, {}).get("value"),
        "concurrency": best.level.concurrency if best else None,
        "throughput_per_s": round(measured.throughput, 2) if best else None,
        "p99_ms": round(best.latency.p99, 2) if best else None,
        "p50_ms": round(best.latency.p50, 2) if best else None,
        "client_cpu_ms": _finite(best.client_cpu_ms) if best else None,
        "server_cpu_ms": _finite(best.server_cpu_ms) if best else None,
        "lowest_p99_ms": round(measured.lowest_p99, 2) if measured.lowest_p99 is not None else None,
        "failure": measured.failure,
        "errors": measured.errors,
        "model": measured.model,
        "seconds": round(measured.seconds, 1),
    }


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, 3)


def print_result(result: TuneResult, console, slo_p99_ms: float) -> None:
    from rich.table import Table

    on = f", on {result.traffic['label']}" if result.traffic else ""
    table = Table(title=f"{result.model}: candidates measured (throughput at p99 <= {slo_p99_ms:g} ms{on})")
    for column in (
        "#",
        "variant",
        "inst x thr",
        "batching",
        "windows",
        "accuracy",
        "c",
        "inf/s",
        "p99 ms",
        "CPU ms/req",
    ):
        table.add_column(column)
    ranked = sorted(result.measured, key=lambda m: (m.settings != "full", -m.throughput))
    for number, measured in enumerate(ranked, 1):
        row = row_of(measured, result.accuracy)
        mark = " *" if measured is result.winner else ""
        cpu = row["server_cpu_ms"]
        table.add_row(
            f"{number}{mark}",
            row["variant"],
            f"{row['instances']} x {row['threads']}",
            row["batching"],
            row["windows"],
            row["accuracy"],
            "—" if row["concurrency"] is None else str(row["concurrency"]),
            "—" if row["throughput_per_s"] is None else f"{row['throughput_per_s']:,.1f}",
            "—" if row["p99_ms"] is None else f"{row['p99_ms']:.1f}",
            "—" if cpu is None else f"{cpu:.2f}",
            style="red" if measured.failure else None,
        )
    console.print(table)


def pareto(rows: list[dict], higher_is_better: bool) -> list[dict]:
    """Rows no other row beats on accuracy, throughput and p99 all at once."""
    measured = [r for r in rows if r["throughput_per_s"]]  # a None accuracy is the FP32 reference

    def accuracy(row: dict) -> float:
        value = row["accuracy_value"]
        if value is None:
            return math.inf if higher_is_better else -math.inf  # the FP32 reference
        return value if higher_is_better else -value

    def dominates(a: dict, b: dict) -> bool:
        no_worse = (
            accuracy(a) >= accuracy(b)
            and a["throughput_per_s"] >= b["throughput_per_s"]
            and a["p99_ms"] <= b["p99_ms"]
        )
        better = (
            accuracy(a) > accuracy(b)
            or a["throughput_per_s"] > b["throughput_per_s"]
            or a["p99_ms"] < b["p99_ms"]
        )
        return no_worse and better

    return [r for r in measured if not any(dominates(o, r) for o in measured if o is not r)]


def write_results(result: TuneResult, options: dict, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = [row_of(m, result.accuracy) for m in result.measured]
    higher = next(iter(result.accuracy.values()), {}).get("higher_is_better", True)
    front = pareto([r for r in rows if r["windows"] == "full"], higher)
    data = {
        "model": result.model,
        "options": options,
        "traffic": result.traffic,  # None: the golden request at the opt shape
        "seconds": round(result.seconds, 1),
        "interrupted": result.interrupted,
        "search_space": result.candidates,
        "winner": row_of(result.winner, result.accuracy) if result.winner else None,
        "baseline": row_of(result.baseline, result.accuracy) if result.baseline else None,
        "gain": round(result.gain, 3) if result.gain else None,
        "pareto": front,
        "candidates": rows,
    }
    (folder / "results.json").write_text(json.dumps(data, indent=2, allow_nan=False))
    with (folder / "candidates.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else ["variant"])
        writer.writeheader()
        writer.writerows(rows)
    _plot(rows, front, folder / "pareto.png", result.model, higher)
    return folder


def _plot(rows: list[dict], front: list[dict], png: Path, model: str, higher: bool) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 5), layout="constrained")
    axes = fig.subplots()
    shown = [r for r in rows if r["throughput_per_s"]]
    if shown:
        scatter = axes.scatter(
            [r["throughput_per_s"] for r in shown],
            [
                r["accuracy_value"] if r["accuracy_value"] is not None else (1.0 if higher else 0.0)
                for r in shown
            ],
            c=[r["p99_ms"] for r in shown],
            cmap="viridis_r",
            s=[60 if r in front else 20 for r in shown],
            edgecolors=["black" if r in front else "none" for r in shown],
        )
        fig.colorbar(scatter, ax=axes, label="p99 ms at that throughput")
    axes.set(
        xlabel="throughput at the SLO (inferences/s)",
        ylabel="accuracy vs FP32 (the spec's metric; FP32 at 1)",
        title=f"{model}: candidates (outlined: the Pareto front)",
    )
    fig.savefig(png, dpi=110)


def tuning_measured(result: TuneResult, options: dict) -> dict:
    """What tuning.yaml records next to the settings: the numbers that chose them."""
    winner = row_of(result.winner, result.accuracy)
    baseline = row_of(result.baseline, result.accuracy) if result.baseline else None
    return {
        "date": datetime.date.today().isoformat(),
        "slo_p99_ms": options["slo_p99_ms"],
        "objective": options["objective"],
        "protocol": options["protocol"],
        "search": options["search"],
        "winner": {
            k: winner[k] for k in ("variant", "accuracy", "concurrency", "throughput_per_s", "p99_ms")
        },
        "committed": (
            {
                k: baseline[k]
                for k in ("variant", "instances", "threads", "batching", "throughput_per_s", "p99_ms")
            }
            if baseline
            else None
        ),
        "gain": round(result.gain, 3) if result.gain else None,
        **({"traffic": result.traffic["label"]} if result.traffic else {}),
    }


def apply_winner(result: TuneResult, repository: Path, options: dict) -> Path:
    """Write the winner's settings to its model's tuning.yaml (for the variant, when the model has an
    ensemble that picks one), with what was measured; the next build publishes them."""
    winner = result.winner
    entry = read_manifest(repository)["models"][winner.candidate.variant]
    loaded = load_spec(entry["spec"])
    variant = winner.candidate.precision if loaded.spec.ensemble else None
    return write_tuning(
        loaded.folder, winner.candidate.triton_settings(), variant, tuning_measured(result, options)
    )


def chosen_line(result: TuneResult) -> str:
    """The winner, its numbers and accuracy, and its gain over the committed settings, in one line."""
    winner = result.winner
    gain = (
        f"{result.gain:.2f}x the committed settings ({result.baseline.candidate.label})"
        if result.gain
        else "no committed baseline measured"
    )
    return (
        f"chosen: {winner.candidate.label}; {winner.throughput:,.1f} inf/s at p99 {winner.p99:.1f} ms "
        f"(c={winner.best.level.concurrency}); accuracy {result.accuracy[winner.candidate.variant]['verdict']}; {gain}; "
        f"{len(result.measured)} measurements in {result.seconds / 60:.1f} min"
        + (
            f"; chosen on {result.traffic['label']}, sent to the {result.traffic['sent_to']}"
            if result.traffic
            else ""
        )
    )
