"""One benchmark point (a concurrency or a request rate) and a sweep over points, against a live server.

Per point: warm-up, then fixed windows until the last three are stable (or the window limit, and the
point says it is unstable). Around every window the server's statistics, the clock and this process'
CPU time are sampled together, so the server's breakdown and the load generator's cost cover exactly
the same windows as the client's latencies. An ensemble's composing models are sampled in the same
statistics call, and stage timings a model exports as custom metrics in the same breath.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from triton_repo.clients.bench.cpu import tree_cpu_seconds
from triton_repo.clients.bench.floor import Floor
from triton_repo.clients.bench.load import OPEN_LOOP_MAX_IN_FLIGHT, Connection, Load, Request
from triton_repo.clients.bench.method import STABLE_WINDOWS, Latency, Window, pool, stability, window_of
from triton_repo.clients.bench.server_stats import (
    ServerDelta,
    ServerSample,
    StageTime,
    combine,
    combine_stages,
    parse_stage_metrics,
    stage_deltas,
)


@dataclass(frozen=True)
class Settings:
    window_s: float = 2.0
    max_windows: int = 10
    warmup_s: float = 1.0
    min_requests: int = 50  # a window lasts until this many requests completed (at most 10 window lengths)


@dataclass(frozen=True)
class Level:
    """A closed-loop concurrency, or an open-loop rate (requests/s, constant or Poisson gaps)."""

    concurrency: int | None = None
    rate: float | None = None
    poisson: bool = False

    @property
    def label(self) -> str:
        if self.concurrency is not None:
            return f"c={self.concurrency}"
        return f"{self.rate:g}/s{' poisson' if self.poisson else ''}"


@dataclass
class Point:
    """What one point measured over its last (pooled) windows."""

    model: str
    protocol: str
    level: Level
    batch: int
    shape: str
    stable: bool
    windows: int
    spread: tuple[float, float]  # throughput, p99: largest relative distance from the mean
    seconds: float
    requests: int
    request_rate: float
    latency: Latency
    errors: dict[str, int]
    server: ServerDelta | None
    client_cpu_ms: float  # load generator CPU per request (all threads of this process)
    server_cpu_ms: float | None = None  # local server's CPU per request (tritonserver and its stubs)
    schedule_lag_p99_ms: float | None = None
    floor: Floor | None = None
    notes: list[str] = field(default_factory=list)
    steps: dict[str, ServerDelta] | None = None  # an ensemble's composing models over the same windows
    stages: list[StageTime] = field(default_factory=list)  # custom stage metrics over the same windows

    @property
    def inferences_per_s(self) -> float:
        return self.request_rate * self.batch

    @property
    def served_vs_floor(self) -> float | None:
        """Served throughput over the in-process throughput at the same batch and threads."""
        if self.floor is None or self.floor.inferences_per_s <= 0:
            return None
        return self.inferences_per_s / self.floor.inferences_per_s

    @property
    def added_p50_ms(self) -> float | None:
        """Latency the serving path adds at the median: served p50 minus in-process p50."""
        return None if self.floor is None else self.latency.p50 - self.floor.latency.p50

    @property
    def client_ms(self) -> float | None:
        """Client and network: end-to-end mean latency minus the server's time per request."""
        return None if self.server is None else self.latency.mean - self.server.total_ms

    @property
    def count_gap(self) -> float | None:
        """Relative difference between the requests this client and the server counted."""
        if self.server is None or max(self.requests, self.server.requests) == 0:
            return None
        return abs(self.requests - self.server.requests) / max(self.requests, self.server.requests)


Progress = Callable[[str], None]


@dataclass(frozen=True)
class _Sample:
    """Taken at each window boundary: server statistics, the clock, and CPU time of both sides."""

    server: ServerSample | None
    clock: float  # midway through the statistics call
    client_cpu: float
    server_cpu: float | None
    steps: dict[str, ServerSample] | None = None  # an ensemble's composing models
    stages: dict | None = None  # custom stage counters: (model, stage) -> (seconds, rows)


async def _sample(connection: Connection, model: str, server_pid: int | None) -> _Sample:
    before = time.perf_counter()
    steps = None
    try:
        statistics = await connection.statistics()
        server = ServerSample.from_json(statistics, model)
        if connection.target.steps:
            steps = {step: ServerSample.from_json(statistics, step) for step in connection.target.steps}
    except Exception:  # noqa: BLE001 - a server without statistics still gets client-side numbers
        server = None
    clock = (before + time.perf_counter()) / 2
    server_cpu = tree_cpu_seconds(server_pid) if server_pid else None
    stages = await _scrape(connection.target.metrics_url) if connection.target.metrics_url else None
    return _Sample(server, clock, time.process_time(), server_cpu, steps, stages)


async def _scrape(url: str) -> dict | None:
    """The custom stage counters on Triton's metrics port; None when it cannot be read."""
    import urllib.request

    def read() -> str:
        with urllib.request.urlopen(url, timeout=2.0) as response:
            return response.read().decode("utf-8", "replace")

    try:
        return parse_stage_metrics(await asyncio.to_thread(read))
    except Exception:  # noqa: BLE001 - no metrics port: nothing to report, the rest is measured
        return None


def _step_deltas(before: _Sample, after: _Sample) -> dict[str, ServerDelta] | None:
    if before.steps is None or after.steps is None:
        return None
    return {step: ServerDelta.between(before.steps[step], after.steps[step]) for step in after.steps}


def _stage_deltas(before: _Sample, after: _Sample, models: set[str]) -> list[StageTime] | None:
    if before.stages is None or after.stages is None:
        return None
    return stage_deltas(before.stages, after.stages, models)


def _per_request_ms(before: float | None, after: float | None, answered: int) -> float:
    if before is None or after is None or not answered:
        return float("nan")
    return (after - before) * 1e3 / answered


async def measure_point(
    target: Request,
    level: Level,
    batch: int,
    shape: str,
    settings: Settings,
    progress: Progress,
    server_pid: int | None = None,
) -> Point:
    slots = level.concurrency or 1
    # Open loop: requests do not wait for each other, so HTTP may need a connection for each in flight.
    connection = Connection(target, slots, in_flight=level.concurrency or OPEN_LOOP_MAX_IN_FLIGHT)
    await connection.open()
    load = Load(connection)
    try:
        if level.concurrency is not None:
            load.start_closed_loop(level.concurrency)
        else:
            load.start_open_loop(level.rate, level.poisson)
        await asyncio.sleep(settings.warmup_s)
        sample = await _sample(connection, target.model, server_pid)
        windows: list[Window] = []
        deltas: list[ServerDelta | None] = []
        client_cpu: list[float] = []
        server_cpu: list[float] = []
        step_deltas: list[dict[str, ServerDelta] | None] = []
        stages: list[list[StageTime] | None] = []
        while len(windows) < settings.max_windows:
            await asyncio.sleep(settings.window_s)
            deadline = sample.clock + 10 * settings.window_s
            while (
                _completed_since(load, sample.clock) < settings.min_requests
                and time.perf_counter() < deadline
            ):
                await asyncio.sleep(settings.window_s / 10)
            following = await _sample(connection, target.model, server_pid)
            windows.append(window_of(load.completions, sample.clock, following.clock))
            load.completions = [c for c in load.completions if c.done >= following.clock]
            answered = windows[-1].requests + sum(windows[-1].errors.values())
            client_cpu.append(_per_request_ms(sample.client_cpu, following.client_cpu, answered))
            server_cpu.append(_per_request_ms(sample.server_cpu, following.server_cpu, answered))
            both = sample.server is not None and following.server is not None
            deltas.append(ServerDelta.between(sample.server, following.server) if both else None)
            step_deltas.append(_step_deltas(sample, following))
            stages.append(_stage_deltas(sample, following, {target.model, *target.steps}))
            sample = following
            stable, rate_spread, p99_spread = stability(windows)
            last = windows[-1]
            progress(
                f"{target.model} {target.protocol} {level.label} batch {batch} · window {len(windows)}"
                f"/{settings.max_windows} · {last.request_rate * batch:,.1f} inf/s · p99 {last.p99:.2f} ms"
                + (
                    f" · spread {rate_spread:.0%} / {p99_spread:.0%}"
                    if len(windows) >= STABLE_WINDOWS
                    else ""
                )
                + (f" · errors {sum(last.errors.values())}" if last.errors else "")
            )
            if stable:
                break
    finally:
        await load.stop()
        await connection.end_sequences()
        await connection.close()
    stable, rate_spread, p99_spread = stability(windows)
    used = windows[-STABLE_WINDOWS:]
    pooled = pool(used)
    used_deltas = deltas[-STABLE_WINDOWS:]
    server = combine([d for d in used_deltas if d is not None]) if all(used_deltas) else None
    lag = sorted(load.schedule_lag_ms)
    used_steps = step_deltas[-STABLE_WINDOWS:]
    used_stages = stages[-STABLE_WINDOWS:]
    return Point(
        model=target.model,
        protocol=target.protocol,
        level=level,
        batch=batch,
        shape=shape,
        stable=stable,
        windows=len(windows),
        spread=(rate_spread, p99_spread),
        seconds=pooled.seconds,
        requests=pooled.requests,
        request_rate=pooled.request_rate,
        latency=pooled.latency,
        errors=pooled.errors,
        server=server,
        client_cpu_ms=_mean(client_cpu[-STABLE_WINDOWS:]),
        server_cpu_ms=_mean(server_cpu[-STABLE_WINDOWS:]),
        schedule_lag_p99_ms=lag[int(0.99 * (len(lag) - 1))] if lag else None,
        steps={s: combine([w[s] for w in used_steps]) for s in target.steps} if all(used_steps) else None,
        stages=combine_stages(used_stages) if used_stages and all(s is not None for s in used_stages) else [],
    )


def _completed_since(load: Load, start: float) -> int:
    return sum(1 for c in load.completions if c.done >= start)


def _mean(values: list[float]) -> float:
    finite = [v for v in values if v == v]
    return sum(finite) / len(finite) if finite else float("nan")


def sweep(
    target: Request,
    levels: list[Level],
    batch: int,
    shape: str,
    settings: Settings,
    progress: Progress,
    done: Callable[[Point], None],
    server_pid: int | None = None,
) -> list[Point]:
    """Measure each level in order (a fresh connection per point, so no point inherits another's state)."""
    points = []
    for level in levels:
        point = asyncio.run(measure_point(target, level, batch, shape, settings, progress, server_pid))
        done(point)
        points.append(point)
    return points
