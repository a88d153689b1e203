"""A whole `triton-repo bench` run: pick variants, measure each one's floor and sweep, report per model."""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

from triton_repo.clients.bench import report
from triton_repo.clients.bench.floor import (
    Floor,
    FloorPlan,
    best_floor,
    ensemble_floor_plan,
    floor_plan,
    measure_floor,
)
from triton_repo.clients.bench.load import Request
from triton_repo.clients.bench.run import Level, Point, Settings, sweep
from triton_repo.clients.bench.server_stats import parse_stage_metrics
from triton_repo.clients.bench.traffic import Traffic, load_traffic, plan_traffic, traffic_targets
from triton_repo.clients.bench.workload import (
    Variant,
    as_sent,
    axis_sizes,
    load_variant_spec,
    parse_shape,
    request_inputs,
    response_shapes,
    select_variants,
    sequence_load,
    shape_label,
)
from triton_repo.core.errors import CheckFailed, ServerError, TritonRepoError


@dataclass(frozen=True)
class BenchOptions:
    models: list[str]
    urls: dict[str, str]
    floor_python: Path
    protocol: str
    concurrency: list[int] | None
    request_rate: list[float] | None
    arrivals: str
    batch: int
    shape: tuple[str, ...]
    data: str
    shared_memory: bool
    window: float
    min_requests: int
    max_windows: int
    warmup: float
    timeout: float
    floor: bool
    output: Path
    repository: Path
    work_dir: Path
    server_pid: int | None = None  # a local server's pid: its CPU time is sampled too
    sequence_length: int | None = None  # a stateful model: chunks per sequence (default its streams')
    traffic: Path | None = None  # a traffic sample: the user's inputs instead of the golden request


def levels_of(options: BenchOptions) -> list[Level]:
    if options.concurrency and options.request_rate:
        raise TritonRepoError("--concurrency and --request-rate: choose one (closed loop or open loop)")
    if options.request_rate:
        if options.shared_memory:
            raise TritonRepoError(
                "--shared-memory works with --concurrency only (one output region per request in flight)"
            )
        return [Level(rate=r, poisson=options.arrivals == "poisson") for r in options.request_rate]
    return [Level(concurrency=c) for c in options.concurrency or [1, 2, 4, 8, 16, 32]]


def run_bench(options: BenchOptions) -> None:
    from triton_repo.clients.triton_client import TritonClient
    from triton_repo.core.log import console, info, out, warn
    from triton_repo.repo.publish import read_manifest

    levels = levels_of(options)
    traffic = _traffic(options)
    manifest = read_manifest(options.repository)
    if traffic is None:
        variants = select_variants(manifest, options.repository, options.models)
    else:
        variants = traffic_targets(manifest, options.repository, options.models, traffic)
    shape = parse_shape(options.shape)
    specs = {v.name: load_variant_spec(v) for v in variants}
    plans = {
        v.name: plan_traffic(v, specs[v.name], traffic, options.batch, options.repository)
        for v in variants
        if traffic is not None
    }
    for axis in shape:
        if not any(axis in s.spec.used_axes() for s in specs.values()):
            raise TritonRepoError(
                f"--shape {axis}=...: none of the selected models has an input axis '{axis}'"
            )
    # Every model's shape is checked before the first request, so a bad --batch cannot stop a long run midway.
    sizes_of = {
        name: axis_sizes(
            loaded, options.batch, {a: n for a, n in shape.items() if a in loaded.spec.used_axes()}
        )
        for name, loaded in specs.items()
        if name not in plans
    }
    url = options.urls[options.protocol]
    probe = TritonClient(options.protocol, url, timeout_s=5.0)
    try:
        for v in variants:
            if not probe.is_model_ready(v.name):
                raise ServerError(f"{v.name} is not ready on the server at {url}; start it with `make serve`")
    finally:
        probe.close()
    metrics_url = _stage_metrics_url(options, variants, plans)
    settings = Settings(options.window, options.max_windows, options.warmup, options.min_requests)
    stamp = time.strftime("%Y-%m-%d-%H%M%S")
    failed = 0
    for source in dict.fromkeys(v.source_model for v in variants):
        points: list[Point] = []
        labels = set()
        for variant in [v for v in variants if v.source_model == source]:
            loaded = specs[variant.name]
            traffic_plan = plans.get(variant.name)
            sizes = sizes_of.get(variant.name, {})
            label = traffic_plan.label if traffic_plan else shape_label(sizes)
            labels.add(label)
            sequences = None
            if traffic_plan is not None:
                inputs = list(traffic_plan.graph_requests)
                if traffic_plan.note:
                    info(f"  {variant.name}: {traffic_plan.note}")
            elif "sequence" in variant.entry:
                live = [level.concurrency for level in levels]
                sequences = sequence_load(
                    variant, options.batch, live, options.shared_memory, options.sequence_length
                )
                inputs = sequences.chunks[0][0]
            else:
                inputs = request_inputs(loaded, variant.version_dir / "golden.npz", sizes, options.data)
            ensemble = variant.entry.get("kind") == "ensemble"
            models = manifest["models"] if ensemble else None
            plan = _floor_plan(variant, options, warn, models) if sequences is None else None
            if sequences is not None and options.floor:
                warn(f"{variant.name}: no in-process floor (a stateful model; its state is the server's)")
            floors = [_floor(variant, plan, inputs, options, settings, warn)] if plan else []
            if traffic_plan is not None:
                target = Request(
                    options.protocol,
                    url,
                    variant.name,
                    traffic_plan.requests[0],
                    traffic_plan.outputs,
                    options.timeout,
                    traffic=traffic_plan.requests,
                    steps=traffic_plan.steps,
                    metrics_url=metrics_url,
                )
            else:
                target = Request(
                    options.protocol,
                    url,
                    variant.name,
                    inputs if sequences else as_sent(loaded, inputs),
                    response_shapes(loaded, sizes),
                    options.timeout,
                    options.shared_memory,
                    sequences,
                    metrics_url=metrics_url,
                )
            with console.status(f"{variant.name}: starting ...") as status:
                measured = sweep(
                    target,
                    levels,
                    options.batch,
                    label,
                    settings,
                    progress=lambda line, status=status: status.update(line),
                    done=lambda point, sequences=sequences: info(_point_line(point, sequences)),
                    server_pid=options.server_pid,
                )
            if plan:  # again after the sweep: the machine's noise shows as two different floors
                floors.append(_floor(variant, plan, inputs, options, settings, warn))
            floors = [f for f in floors if f is not None]
            floor = best_floor(floors) if floors else None
            if floor is not None:
                info(_floor_line(variant, floor))
            for point in measured:
                point.floor = floor
            points.extend(measured)
        failed += sum(sum(p.errors.values()) for p in points)
        report.print_tables(points, out)
        rows = report.comparison(points)
        title = f"{source}: variants compared ({options.protocol}, batch {options.batch}, {', '.join(sorted(labels))})"
        report.print_comparison(rows, out, title)
        folder = options.output / f"{stamp}-{source}"
        markdown = f"## {source}\n\n" + report.comparison_markdown(
            rows, options.protocol, options.batch, ", ".join(sorted(labels))
        )
        report.write_results(points, rows, _meta(options, url, levels), folder, markdown)
        info(
            f"results: {folder}/ (results.json, points.csv, summary.md, throughput_vs_p99.png, time_breakdown.png)"
        )
    if failed:
        raise CheckFailed(
            f"{failed} requests failed during the benchmark; see the errors column and results.json"
        )


def _traffic(options: BenchOptions) -> Traffic | None:
    """The traffic sample, refused with the options it cannot go with."""
    if options.traffic is None:
        return None
    if options.shape:
        raise TritonRepoError("--shape and --traffic: choose one (the traffic's rows decide the shapes)")
    if options.shared_memory:
        raise TritonRepoError(
            "--shared-memory and --traffic: choose one (shared memory holds one request, traffic many)"
        )
    return load_traffic(options.traffic)


def _stage_metrics_url(options: BenchOptions, variants: list[Variant], plans: dict) -> str | None:
    """Triton's metrics page when a benchmarked model (or an ensemble's step) exports stage timings."""
    import urllib.request

    url = options.urls.get("metrics")
    if not url:
        return None
    try:
        with urllib.request.urlopen(url, timeout=2.0) as response:
            found = parse_stage_metrics(response.read().decode("utf-8", "replace"))
    except Exception:  # noqa: BLE001 - no metrics port: no stage timings, everything else is measured
        return None
    models = {v.name for v in variants} | {s for p in plans.values() for s in p.steps}
    return url if any(model in models for model, _ in found) else None


def _floor_plan(variant: Variant, options: BenchOptions, warn, manifest: dict | None) -> FloorPlan | None:
    """How to measure `variant` in-process; an ensemble's (`manifest` given) is its step then its model."""
    if not options.floor:
        return None
    if manifest is not None:
        plan = ensemble_floor_plan(options.repository, manifest, variant.name)
        if plan is None:
            warn(f"{variant.name}: no in-process floor (an ensemble with a postprocess step)")
    else:
        plan = floor_plan(variant.version_dir.parent / "config.pbtxt", variant.version_dir)
    if plan is None and manifest is None:
        warn(f"{variant.name}: no in-process floor (not a python-backend ONNX Runtime model)")
    elif not options.floor_python.exists():
        warn(f"{variant.name}: no in-process floor: {options.floor_python} not found (set --serve-env)")
        return None
    return plan


def _floor(
    variant: Variant, plan: FloorPlan, inputs: dict | list, options: BenchOptions, settings: Settings, warn
):
    from triton_repo.core.log import console

    with console.status(f"{variant.name}: in-process floor ..."):
        try:
            return measure_floor(
                options.floor_python,
                plan,
                inputs,
                options.batch,
                settings.window_s,
                settings.max_windows,
                settings.warmup_s,
            )
        except RuntimeError as error:
            warn(f"{variant.name}: {error}")
            return None


def _floor_line(variant: Variant, floor: Floor) -> str:
    runs = " and ".join(f"{m:,.1f}" for m in floor.measurements)
    noisy = max(floor.measurements) > 1.1 * min(floor.measurements)
    return (
        f"  {variant.name} in-process ({floor.runtime}, {floor.threads or 'all'} threads, batch {floor.batch}): "
        f"{floor.inferences_per_s:,.1f} inf/s, p50 {floor.latency.p50:.3f} ms (best of {runs} inf/s"
        + (", [yellow]the machine is noisy[/yellow]" if noisy else "")
        + ")"
    )


def _point_line(point: Point, sequences=None) -> str:
    state = (
        "stable"
        if point.stable
        else f"[yellow]unstable[/yellow] (spread {point.spread[0]:.0%}/{point.spread[1]:.0%})"
    )
    errors = sum(point.errors.values())
    if sequences is not None:  # a stateful model: each request is one chunk of a live sequence
        load = f"{point.level.concurrency} live sequences of {sequences.length} chunks"
        speed, per = f"{point.inferences_per_s:,.1f} chunks/s", " per chunk"
    else:
        load, speed, per = point.level.label, f"{point.inferences_per_s:,.1f} inf/s", ""
    return (
        f"  {point.model} {point.protocol} {load}: {speed}, "
        f"p50 {point.latency.p50:.2f} ms, p99 {point.latency.p99:.2f} ms{per}, {state} after {point.windows} windows"
        + (f", [red]{errors} errors[/red]" if errors else "")
    )


def _meta(options: BenchOptions, url: str, levels: list[Level]) -> dict:
    import tritonclient

    return {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "url": url,
        "protocol": options.protocol,
        "loads": [level.label for level in levels],
        "batch": options.batch,
        "data": options.data if options.traffic is None else f"traffic {options.traffic}",
        "shared_memory": options.shared_memory,
        "window_s": options.window,
        "min_requests": options.min_requests,
        "max_windows": options.max_windows,
        "warmup_s": options.warmup,
        "stability": "throughput and p99 of the last 3 windows within 10% of their mean",
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "load_generator": f"tritonclient {getattr(tritonclient, '__version__', '?')} asyncio, one process",
    }
