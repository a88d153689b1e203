"""In-process speed of each artifact in the runtime that serves it, measured in one interleaved run so
they compare fairly. Each artifact runs in its own worker process (triton_repo.runtimes.isolated)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from triton_repo.builders.precision.accuracy import row_count
from triton_repo.runtimes.isolated import ArtifactRunFailed, IsolatedSession

THROUGHPUT_BATCH = 8
BLOCK = 3
REAL_RUNS = 2  # timed runs of each real-shape batch in a turn (each after one untimed run)
SPEED_SECONDS = 12.0  # the default length of the interleaved timing run
# The least relative difference in throughput a choice between pairs treats as real. A pair's own
# noise (Timing.noise) misses what moves a whole run: re-timing digits' six pairs six times on a quiet
# 2-core machine moved the ratio of two pairs' medians by up to 3.5% (each median by up to 10%), and
# MiniLM's bf16/int8 ratio swung 3.3% between two builds with nothing changed.
NOISE_FLOOR = 0.05


@dataclass(frozen=True)
class Timing:
    latency_ms_b1: float  # median latency of one batch-1 inference
    throughput_b8: float  # inferences/s at batch 8 (median batch time)
    batch: int  # the batch the throughput was measured at (8, or the model's max batch if smaller)
    threads: int
    rounds: int
    # relative interquartile range of the batch-8 run times; 0.0 in results cached before it was measured
    noise: float = 0.0
    # inferences/s at `batch` over the eval set's real shapes (batches cut to their own length on each
    # dynamic non-batch axis), timed in the same interleaved run; None when not measured
    throughput_real: float | None = None
    noise_real: float = 0.0  # the relative interquartile range of those runs, each over its batch's median
    real_shapes: dict[str, list[int]] | None = None  # axis -> [min, median, max] over the batches timed
    real_batches: int = 0  # how many eval batches those are


def noise_between(a: Timing, b: Timing) -> float:
    """The relative throughput difference within which `a` and `b` are not told apart: the larger of
    their measured noise and NOISE_FLOOR."""
    return max(a.noise, b.noise, NOISE_FLOOR)


def faster_beyond_noise(a: Timing, b: Timing) -> bool:
    """`a` is faster than `b` by more than the noise of the two."""
    return a.throughput_b8 > b.throughput_b8 * (1 + noise_between(a, b))


def measure_speed(
    sessions: dict[str, IsolatedSession],
    batch1: dict[str, np.ndarray],
    batch8: dict[str, np.ndarray],
    threads: int,
    seconds: float = SPEED_SECONDS,
    min_rounds: int = 3,
    real: list[dict[str, np.ndarray]] | None = None,
) -> tuple[dict[str, Timing], dict[str, ArtifactRunFailed]]:
    """Round-robin over the artifacts until `seconds` pass, so a busy moment hits all of them alike.

    Each turn is a block (one untimed run, then BLOCK timed runs, timed inside the worker) rather than a
    single run: switching sessions on every run evicts caches and slowed every model by about 40%.
    `real` (batches at the eval set's real shapes) adds REAL_RUNS timed runs of a few of them to each
    turn, in turn, so that `min_rounds` rounds time every one of them.
    An artifact whose runtime fails here drops out and is returned with its failure.
    """
    real = real or []
    per_round = -(-len(real) // max(1, min_rounds))
    live = dict(sessions)
    failed: dict[str, ArtifactRunFailed] = {}

    def attempt(kind: str, action) -> None:
        try:
            action(live[kind])
        except ArtifactRunFailed as error:
            failed[kind] = error
            del live[kind]

    for kind in list(live):  # warm-up: first runs allocate and pick kernels
        attempt(
            kind, lambda s: (s.store("b1", batch1), s.store("b8", batch8), s.time("b1", 1), s.time("b8", 1))
        )
        if kind in live and real:  # stored only: each turn's untimed run warms its shape
            attempt(kind, lambda s: [s.store(f"r{i}", group) for i, group in enumerate(real)])
    single: dict[str, list[float]] = {kind: [] for kind in live}
    batched: dict[str, list[float]] = {kind: [] for kind in live}
    shaped: dict[str, list[list[float]]] = {kind: [[] for _ in real] for kind in live}
    deadline = time.perf_counter() + seconds
    rounds = 0
    while live and (rounds < min_rounds or time.perf_counter() < deadline):
        turn = [(rounds * per_round + i) % len(real) for i in range(per_round)] if real else []
        for kind in list(live):
            attempt(
                kind,
                lambda s, k=kind, t=turn: (
                    single[k].extend(s.time("b1", BLOCK)),
                    batched[k].extend(s.time("b8", BLOCK)),
                    [shaped[k][i].extend(s.time(f"r{i}", REAL_RUNS)) for i in t],
                ),
            )
        rounds += 1
        if rounds >= 100:
            break
    batch = row_count(batch8)
    timings = {
        kind: Timing(
            latency_ms_b1=float(np.median(single[kind]) * 1000),
            throughput_b8=float(batch / np.median(batched[kind])),
            batch=batch,
            threads=threads,
            rounds=rounds,
            noise=_relative_iqr(batched[kind]),
            **_real_rate(shaped[kind], row_count(real[0]) if real else batch),
        )
        for kind in live
    }
    return timings, failed


def _real_rate(shaped: list[list[float]], batch: int) -> dict:
    """Throughput over the real-shape batches timed (each at its median run time, every batch once) and
    the spread of the runs, each relative to its batch's median."""
    timed = [times for times in shaped if times]
    if not timed:
        return {}
    medians = [float(np.median(times)) for times in timed]
    relative = [t / median for times, median in zip(timed, medians, strict=True) for t in times]
    return {
        "throughput_real": batch * len(timed) / sum(medians),
        "noise_real": _relative_iqr(relative),
    }


def _relative_iqr(times: list[float]) -> float:
    """The spread of one pair's run times: their interquartile range over their median."""
    low, median, high = np.percentile(times, [25, 50, 75])
    return float((high - low) / median)
