"""In-process ONNX Runtime speed of each artifact, measured in one interleaved run so they compare fairly."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from builders.onnx_runtime import cpu_session

THROUGHPUT_BATCH = 8
BLOCK = 3


@dataclass(frozen=True)
class Timing:
    latency_ms_b1: float  # median latency of one batch-1 inference
    throughput_b8: float  # inferences/s at batch 8 (median batch time)
    batch: int  # the batch the throughput was measured at (8, or the model's max batch if smaller)
    threads: int
    rounds: int


def measure_speed(
    artifacts: dict[str, Path],
    batch1: dict[str, np.ndarray],
    batch8: dict[str, np.ndarray],
    threads: int,
    seconds: float = 12.0,
    min_rounds: int = 3,
) -> dict[str, Timing]:
    """Round-robin over the artifacts until `seconds` pass, so a busy moment hits all of them alike.

    Each turn is a block (one untimed run, then BLOCK timed runs) rather than a single run: switching
    sessions on every run evicts caches and slowed every model by about 40%.
    """
    sessions = {kind: cpu_session(path, threads) for kind, path in artifacts.items()}
    for session in sessions.values():  # warm-up: first runs allocate and pick kernels
        for _ in range(2):
            session.run(None, batch1)
            session.run(None, batch8)
    single: dict[str, list[float]] = {kind: [] for kind in sessions}
    batched: dict[str, list[float]] = {kind: [] for kind in sessions}
    deadline = time.perf_counter() + seconds
    rounds = 0
    while rounds < min_rounds or time.perf_counter() < deadline:
        for kind, session in sessions.items():
            single[kind] += _timed_block(session, batch1)
            batched[kind] += _timed_block(session, batch8)
        rounds += 1
        if rounds >= 100:
            break
    batch = len(next(iter(batch8.values())))
    return {
        kind: Timing(
            latency_ms_b1=float(np.median(single[kind]) * 1000),
            throughput_b8=float(batch / np.median(batched[kind])),
            batch=batch,
            threads=threads,
            rounds=rounds,
        )
        for kind in sessions
    }


def _timed_block(session, feed: dict[str, np.ndarray]) -> list[float]:
    session.run(None, feed)
    times = []
    for _ in range(BLOCK):
        start = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - start)
    return times
