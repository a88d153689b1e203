"""Soak: constant closed-loop load for minutes, counting every error and sampling the server's memory.

A leak shows as resident memory that keeps growing under a steady load; growth is measured from the
first sample after warm-up (the server's pools and ONNX Runtime's arenas are sized by then) to the end.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from triton_repo.clients.bench.cpu import tree_rss_mb
from triton_repo.clients.bench.load import Connection, Load, Request
from triton_repo.clients.bench.method import Latency


@dataclass
class SoakResult:
    model: str
    protocol: str
    concurrency: int
    seconds: float
    requests: int
    errors: dict[str, int]
    latency: Latency
    rss_mb: list[tuple[float, float]] = field(default_factory=list)  # (seconds since start, MB)

    @property
    def request_rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def rss_growth_mb(self) -> float | None:
        """Last sample minus the first one after warm-up (None without a local server to sample)."""
        return self.rss_mb[-1][1] - self.rss_mb[0][1] if len(self.rss_mb) >= 2 else None


async def soak(
    target: Request,
    concurrency: int,
    seconds: float,
    server_pid: int | None,
    progress: Callable[[str], None],
    sample_every_s: float = 5.0,
) -> SoakResult:
    connection = Connection(target, concurrency)
    await connection.open()
    load = Load(connection)
    warmup = min(10.0, 0.1 * seconds)
    latencies: list[np.ndarray] = []
    errors: dict[str, int] = {}
    result = SoakResult(target.model, target.protocol, concurrency, 0.0, 0, errors, Latency.of(np.array([])))
    load.start_closed_loop(concurrency)
    start = time.perf_counter()
    try:
        await asyncio.sleep(warmup)
        load.completions = []  # warm-up requests are not counted
        measured_from = time.perf_counter()
        end = measured_from + seconds
        while (now := time.perf_counter()) < end:
            await asyncio.sleep(min(sample_every_s, end - now))
            done, load.completions = load.completions, []
            latencies.append(np.array([(c.done - c.sent) * 1e3 for c in done if not c.status]))
            for c in done:
                if c.status:
                    errors[c.status] = errors.get(c.status, 0) + 1
            rss = tree_rss_mb(server_pid) if server_pid else None
            if rss is not None:
                result.rss_mb.append((time.perf_counter() - start, rss))
            answered = sum(a.size for a in latencies)
            progress(
                f"{target.model} soak c={concurrency}: {time.perf_counter() - measured_from:,.0f}/{seconds:,.0f} s, "
                f"{answered:,} ok, {sum(errors.values())} errors"
                + (f", server RSS {rss:,.0f} MB" if rss is not None else "")
            )
        result.seconds = time.perf_counter() - measured_from
    finally:
        await load.stop()
        await connection.close()
    pooled = np.concatenate(latencies) if latencies else np.array([])
    result.requests = int(pooled.size)
    result.latency = Latency.of(pooled)
    return result
