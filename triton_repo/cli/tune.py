"""`triton-repo tune MODEL`: the best served configuration under a latency SLO, accuracy as a constraint."""

from __future__ import annotations

import os
import time
from pathlib import Path

import click

from triton_repo.cli.option_groups import GivenPorts, TuneSearch, option_group, port_options
from triton_repo.cli.options import protocol_option, repository_option, results_option, work_dir_option


@click.command()
@click.argument("model")
@option_group(
    "settings",
    TuneSearch,
    click.option(
        "--slo-p99",
        "slo_p99_ms",
        type=click.FloatRange(min=0, min_open=True),
        default=100.0,
        show_default=True,
        help="Latency SLO: p99 in milliseconds.",
    ),
    click.option(
        "--objective",
        type=click.Choice(["throughput", "latency"]),
        default="throughput",
        show_default=True,
        help="throughput: the most inferences/s with p99 within the SLO; latency: the lowest p99 of one client.",
    ),
    protocol_option(),
    click.option(
        "--search",
        type=click.Choice(["quick", "exhaustive"]),
        default="quick",
        show_default=True,
        help="quick: coordinate ascent with short windows, full windows for the best few; exhaustive: every candidate with full windows.",
    ),
    click.option(
        "--max-minutes",
        type=click.FloatRange(min=0, min_open=True),
        default=20.0,
        show_default=True,
        envvar="TRITON_REPO_TUNE_MINUTES",
        show_envvar=True,
        help="Stop searching after this long (the candidates measured so far are reported).",
    ),
    click.option(
        "--min-accuracy",
        type=float,
        default=None,
        help="A stricter budget in the spec's metric (cosine or agreement at least, or top-1 drop at most); default: every published variant.",
    ),
    click.option(
        "--max-concurrency",
        type=click.IntRange(1, 256),
        default=32,
        show_default=True,
        help="The most clients tried per candidate.",
    ),
    click.option(
        "--cores",
        type=click.IntRange(1),
        default=None,
        help="Cores the threads of all instances may use [default: this machine's].",
    ),
    click.option("--oversubscribe", is_flag=True, help="Also try more threads in total than cores."),
    click.option(
        "--traffic",
        type=click.Path(exists=True),
        help="Measure on your inputs (as bench --traffic: texts, images, .npy/.npz rows), not the golden request.",
    ),
    click.option("--batch", type=click.IntRange(1), default=1, show_default=True, help="Rows per request."),
)
@click.option(
    "--apply",
    "apply_",
    is_flag=True,
    help="Write the winner to models/<name>/tuning.yaml; the next build publishes it.",
)
@results_option("tune/results", "TRITON_REPO_TUNE_OUTPUT")
@port_options
@repository_option
@work_dir_option
def tune(
    model: str,
    settings: TuneSearch,
    apply_: bool,
    output: Path,
    ports: GivenPorts,
    repository: Path,
    work_dir: Path,
) -> None:
    """Find the best served configuration of MODEL (a source model) on the running `triton-repo serve`.

    Every candidate (a published variant within its accuracy budget, instances x threads per instance,
    the dynamic batcher off or on at several queue delays and preferred sizes) is loaded into the running
    server as a model of its own with a config override (its files are the published ones), warmed up,
    measured like `triton-repo bench` at rising concurrency until its p99 passes the SLO, and unloaded:
    no server restart, the published models keep serving. The result: every candidate, the winner and its
    gain over the committed settings measured in the same run, and tune/results/<date>-<model>/. With
    --traffic every candidate gets your inputs (raw data through what clients call: a fused-model or an
    ensemble candidate). --apply writes the winner to models/<name>/tuning.yaml. Exit 1: nothing meets the SLO.
    """
    from triton_repo.clients.tune.results import apply_winner, chosen_line, print_result, write_results
    from triton_repo.clients.tune.session import TuneOptions, no_slo_met, run_tune, running_server
    from triton_repo.core.log import info, out
    from triton_repo.serve import server

    state = server.running_state(work_dir / "server")
    chosen = ports.filled_from(state.ports if state else server.Ports())
    control = running_server(chosen)
    recorded = settings.recorded()
    slo_p99_ms = settings.slo_p99_ms
    options = TuneOptions(
        model=model,
        repository=repository,
        urls={"grpc": f"127.0.0.1:{chosen.grpc}", "http": f"127.0.0.1:{chosen.http}"},
        cores=settings.cores or os.cpu_count() or 1,
        server_pid=state.pid if state and state.ports == chosen else None,
        **recorded,
    )
    result = run_tune(options, control)
    print_result(result, out, slo_p99_ms)
    folder = write_results(result, recorded, output / f"{time.strftime('%Y-%m-%d-%H%M%S')}-{model}")
    info(f"results: {folder}/ (results.json, candidates.csv, pareto.png)")
    if result.interrupted:
        raise click.Abort()
    if result.winner is None:
        raise no_slo_met(result, slo_p99_ms)
    info(chosen_line(result))
    if apply_:
        path = apply_winner(result, repository, recorded)
        info(
            f"written: {path}; `make build-repo` publishes it (a new version of each variant, loaded by the running server)"
        )
