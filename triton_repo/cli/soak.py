"""`triton-repo soak`: minutes of steady load on one served model; every error counted, memory sampled."""

from __future__ import annotations

import json
from pathlib import Path

import click

from triton_repo.cli.option_groups import GivenPorts, SoakLoad, option_group, port_options
from triton_repo.cli.options import host_option, protocol_option, repository_option, work_dir_option


@click.command()
@click.argument("model", default="digits_fp32")
@option_group(
    "load",
    SoakLoad,
    click.option("--minutes", type=click.FloatRange(0.05), default=10.0, show_default=True),
    click.option("--concurrency", type=click.IntRange(1), default=16, show_default=True),
    protocol_option(),
)
@click.option(
    "--max-rss-growth",
    type=click.FloatRange(0),
    default=50.0,
    show_default=True,
    help="MB the local server's resident memory may grow from the end of warm-up to the end.",
)
@host_option
@port_options
@repository_option
@work_dir_option
def soak(model, load: SoakLoad, max_rss_growth, host, ports: GivenPorts, repository, work_dir) -> None:
    """Keep CONCURRENCY requests in flight to MODEL for MINUTES (after a warm-up of 10% of it, at most 10 s).

    Exit 1 if any request failed or the server's memory (tritonserver and its backend stubs, sampled
    every 5 s from /proc when the server was started by `triton-repo serve`) grew more than allowed.
    Results: <work-dir>/soak.json.
    """
    import asyncio

    from triton_repo.clients.bench.load import Request
    from triton_repo.clients.bench.report import finite
    from triton_repo.clients.bench.soak import soak as run_soak
    from triton_repo.clients.bench.workload import (
        axis_sizes,
        load_variant_spec,
        request_inputs,
        response_shapes,
        select_variants,
    )
    from triton_repo.core.errors import CheckFailed, TritonRepoError
    from triton_repo.core.log import console, info, out, warn
    from triton_repo.repo.publish import read_manifest
    from triton_repo.serve import server

    variants = select_variants(read_manifest(repository), repository, [model])
    if len(variants) != 1:
        raise TritonRepoError(f"soak {model}: name one served model, e.g. {variants[0].name}")
    variant = variants[0]
    loaded = load_variant_spec(variant)
    sizes = axis_sizes(loaded, 1, {})
    minutes, concurrency, protocol = load.minutes, load.concurrency, load.protocol
    state = server.running_state(work_dir / "server")
    chosen = ports.filled_from(state.ports if state else server.Ports())
    url = f"{host}:{chosen.grpc if protocol == 'grpc' else chosen.http}"
    local = state is not None and state.ports == chosen
    if not local:
        warn("the server was not started by `triton-repo serve` here: its memory is not sampled")
    target = Request(
        protocol,
        url,
        variant.name,
        request_inputs(loaded, variant.version_dir / "golden.npz", sizes, "golden"),
        response_shapes(loaded, sizes),
    )
    with console.status(f"{variant.name}: soak starting ...") as status:
        result = asyncio.run(
            run_soak(target, concurrency, minutes * 60, state.pid if local else None, status.update)
        )
    growth = result.rss_growth_mb
    rss = result.rss_mb
    lines = [
        f"{result.model} over {protocol}, concurrency {concurrency}, {result.seconds:,.0f} s: "
        f"{result.requests:,} requests ({result.request_rate:,.0f}/s), "
        f"errors {sum(result.errors.values())} {result.errors or ''}".rstrip(),
        f"latency p50 {result.latency.p50:.2f} ms, p99 {result.latency.p99:.2f} ms, max {result.latency.max:.2f} ms",
    ]
    if growth is not None:
        lines.append(
            f"server RSS {rss[0][1]:,.1f} MB after warm-up, {rss[-1][1]:,.1f} MB at the end "
            f"(growth {growth:+,.1f} MB, max {max(mb for _, mb in rss):,.1f} MB; limit +{max_rss_growth:g} MB)"
        )
    for line in lines:
        out.print(line)
    work_dir.mkdir(parents=True, exist_ok=True)
    record = {
        "model": result.model,
        "protocol": protocol,
        "concurrency": concurrency,
        "seconds": result.seconds,
        "requests": result.requests,
        "errors": result.errors,
        "latency_ms": vars(result.latency),
        "rss_mb": rss,
        "rss_growth_mb": growth,
        "max_rss_growth_mb": max_rss_growth,
    }
    (work_dir / "soak.json").write_text(json.dumps(finite(record), indent=2, allow_nan=False))
    info(f"results: {Path(work_dir) / 'soak.json'}")
    if result.errors:
        raise CheckFailed(f"soak: {sum(result.errors.values())} requests failed: {result.errors}")
    if growth is not None and growth > max_rss_growth:
        raise CheckFailed(f"soak: server memory grew {growth:,.1f} MB, more than {max_rss_growth:g} MB")
    if result.requests == 0:
        raise CheckFailed("soak: no request was answered")
