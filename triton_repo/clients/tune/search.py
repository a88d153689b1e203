"""Measuring candidates and searching among them.

A candidate is measured the way `triton-repo bench` measures a model (windows, stability, the server's
breakdown, CPU per request) at increasing concurrency until its p99 passes the SLO: its score is the
highest throughput whose p99 meets it. The quick search is coordinate ascent with short windows (variant,
then threading, then batching, until nothing improves), then full windows for the best few; the
exhaustive search measures every candidate with full windows.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from triton_repo.clients.bench.load import Request
from triton_repo.clients.bench.run import Level, Point, Settings, measure_point
from triton_repo.clients.tune.space import Candidate

# Short windows to rank candidates, full ones to confirm: the bench's method (stable when throughput and p99
# of the last 3 windows are within 10%) with the bench's defaults halved, so a grid fits in minutes.
QUICK = Settings(window_s=0.5, max_windows=4, warmup_s=0.3, min_requests=20)
FULL = Settings(window_s=1.0, max_windows=8, warmup_s=0.5, min_requests=30)


@dataclass
class Measured:
    """One candidate as measured: every concurrency tried, and the best one meeting the SLO."""

    candidate: Candidate
    settings: str  # quick | full
    points: list[Point] = field(default_factory=list)
    best: Point | None = None  # the highest throughput with p99 <= SLO (None: no level met it)
    failure: str = ""  # the server refused the candidate's config
    seconds: float = 0.0
    model: str = (
        ""  # the model the requests went to (the candidate, or the ensemble or fused model calling it)
    )

    @property
    def errors(self) -> int:
        """Requests that failed at any concurrency tried."""
        return sum(sum(p.errors.values()) for p in self.points)

    @property
    def throughput(self) -> float:
        return self.best.inferences_per_s if self.best else 0.0

    @property
    def p99(self) -> float | None:
        return self.best.latency.p99 if self.best else None

    @property
    def lowest_p99(self) -> float | None:
        """The lowest p99 any level reached (what the SLO line reports when nothing met it)."""
        return min((p.latency.p99 for p in self.points), default=None)


def slo_score(measured: Measured, objective: str) -> float:
    """Bigger is better: throughput at the SLO, or minus the p99 at concurrency 1."""
    if measured.best is None:
        return float("-inf")
    if objective == "latency":
        first = next((p for p in measured.points if p.level.concurrency == 1), measured.best)
        return -first.latency.p99
    return measured.throughput


def within_slo(points: list[Point], slo_p99_ms: float) -> Point | None:
    """The point with the highest throughput whose p99 meets the SLO and which saw no errors."""
    good = [p for p in points if p.latency.p99 <= slo_p99_ms and not p.errors]
    return max(good, key=lambda p: p.inferences_per_s, default=None)


def concurrency_ladder(max_concurrency: int) -> list[int]:
    ladder, level = [], 1
    while level <= max_concurrency:
        ladder.append(level)
        level *= 2
    return ladder


def measure_candidate(
    target: Request,
    candidate: Candidate,
    slo_p99_ms: float,
    settings: Settings,
    max_concurrency: int,
    progress: Callable[[str], None],
    server_pid: int | None,
) -> Measured:
    """Concurrency 1, 2, 4, ... until p99 passes the SLO or two levels in a row add under 5%."""
    measured = Measured(candidate, "quick" if settings is QUICK else "full")
    started = time.perf_counter()
    for concurrency in concurrency_ladder(max_concurrency):
        point = asyncio.run(
            measure_point(target, Level(concurrency=concurrency), 1, "", settings, progress, server_pid)
        )
        measured.points.append(point)
        if point.latency.p99 > slo_p99_ms or point.errors:
            break
        if past_the_knee([p.inferences_per_s for p in measured.points]):
            break  # more clients only queue
    measured.best = within_slo(measured.points, slo_p99_ms)
    measured.seconds = time.perf_counter() - started
    return measured


def past_the_knee(throughputs: list[float], gain: float = 1.05, patience: int = 2) -> bool:
    """True when each of the last `patience` levels failed to beat the best before them by `gain`.

    One flat level is not enough: with preferred batch sizes the batcher only forms full batches once
    enough requests are in flight, so throughput can stall at 2 clients and grow again at 8 (MiniLM's
    committed settings, preferred [8, 16], were once judged at 2 clients by a one-level rule)."""
    if len(throughputs) <= patience:
        return False
    for index in range(len(throughputs) - patience, len(throughputs)):
        if throughputs[index] >= gain * max(throughputs[:index]):
            return False
    return True


Measure = Callable[[Candidate, Settings], Measured]


def exhaustive(
    candidates: list[Candidate], measure: Measure, out_of_time: Callable[[], bool]
) -> list[Measured]:
    results = []
    for candidate in candidates:
        if out_of_time():
            break
        results.append(measure(candidate, FULL))
    return results


def quick(
    candidates: list[Candidate],
    start: list[Candidate],
    measure: Measure,
    objective: str,
    out_of_time: Callable[[], bool],
    confirm: int = 3,
) -> list[Measured]:
    """Coordinate ascent from the committed settings with short windows, then full windows for the best
    `confirm` candidates (and every variant's committed settings, the baseline the gain is measured on)."""
    tried: dict[Candidate, Measured] = {}

    def score(candidate: Candidate) -> float:
        if candidate not in tried:
            tried[candidate] = measure(candidate, QUICK)
        return slo_score(tried[candidate], objective)

    for candidate in start:  # every variant at its committed settings
        if out_of_time():
            break
        score(candidate)
    feasible = [c for c in start if c in tried]
    current = max(feasible, key=score) if feasible else None
    improved = current is not None
    while improved and not out_of_time():
        improved = False
        for dimension in ("variant", "threading", "batching"):
            for option in _neighbours(current, candidates, dimension):
                if out_of_time():
                    break
                if score(option) > score(current):
                    current, improved = option, True
    ranked = sorted(tried, key=score, reverse=True)
    best_few = ranked[: 1 if out_of_time() else confirm]  # out of time: only the best is confirmed
    finals = list(dict.fromkeys([*best_few, *start]))  # and the baselines the gain is measured on
    confirmed = [measure(candidate, FULL) for candidate in finals]
    return confirmed + [tried[c] for c in tried if c not in finals]


def _neighbours(current: Candidate, candidates: list[Candidate], dimension: str) -> list[Candidate]:
    """Candidates that differ from `current` in one dimension only."""

    def key(candidate: Candidate) -> tuple:
        parts = {
            "variant": candidate.variant,
            "threading": (candidate.instances, candidate.threads),
            "batching": candidate.batching,
        }
        return tuple(value for name, value in parts.items() if name != dimension)

    return [c for c in candidates if c != current and key(c) == key(current)]
