"""In-process speed of each artifact in the runtime that serves it, measured in one interleaved run so
they compare fairly. Each artifact runs in its own worker process (triton_repo.runtimes.isolated)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from triton_repo.build.precision.accuracy import row_count
from triton_repo.runtimes.isolated import ArtifactRunFailed, IsolatedSession

THROUGHPUT_BATCH = 8
BLOCK = 3
SPEED_SECONDS = 12.0  # the default length of the interleaved timing run


@dataclass(frozen=True)
class Timing:
    latency_ms_b1: float  # median latency of one batch-1 inference
    throughput_b8: float  # inferences/s at batch 8 (median batch time)
    batch: int  # the batch the throughput was measured at (8, or the model's max batch if smaller)
    threads: int
    rounds: int


def measure_speed(
    sessions: dict[str, IsolatedSession],
    batch1: dict[str, np.ndarray],
    batch8: dict[str, np.ndarray],
    threads: int,
    seconds: float = SPEED_SECONDS,
    min_rounds: int = 3,
) -> tuple[dict[str, Timing], dict[str, ArtifactRunFailed]]:
    """Round-robin over the artifacts until `seconds` pass, so a busy moment hits all of them alike.

    Each turn is a block (one untimed run, then BLOCK timed runs, timed inside the worker) rather than a
    single run: switching sessions on every run evicts caches and slowed every model by about 40%.
    An artifact whose runtime fails here drops out and is returned with its failure.
    """
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
    single: dict[str, list[float]] = {kind: [] for kind in live}
    batched: dict[str, list[float]] = {kind: [] for kind in live}
    deadline = time.perf_counter() + seconds
    rounds = 0
    while live and (rounds < min_rounds or time.perf_counter() < deadline):
        for kind in list(live):
            attempt(
                kind,
                lambda s, k=kind: (
                    single[k].extend(s.time("b1", BLOCK)),
                    batched[k].extend(s.time("b8", BLOCK)),
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
        )
        for kind in live
    }
    return timings, failed
