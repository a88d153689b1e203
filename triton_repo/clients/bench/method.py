"""The measurement method: fixed windows, percentiles, and perf_analyzer's stability rule.

A point is stable when, over the last `count` windows, throughput and p99 latency each stay within
`threshold` of their mean. Only stable windows are pooled into a result; an unstable point says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

PERCENTILES = (50, 90, 95, 99)
STABLE_WINDOWS = 3
STABLE_THRESHOLD = 0.10


@dataclass(frozen=True)
class Completion:
    """One request: when it was sent and answered (time.perf_counter seconds), and its status ('' = ok)."""

    sent: float
    done: float
    status: str = ""


@dataclass(frozen=True)
class Latency:
    """Milliseconds."""

    p50: float
    p90: float
    p95: float
    p99: float
    max: float
    mean: float

    @staticmethod
    def of(latencies_ms: np.ndarray) -> Latency:
        if latencies_ms.size == 0:
            nan = float("nan")
            return Latency(nan, nan, nan, nan, nan, nan)
        p50, p90, p95, p99 = (float(v) for v in np.percentile(latencies_ms, PERCENTILES))
        return Latency(p50, p90, p95, p99, float(latencies_ms.max()), float(latencies_ms.mean()))


@dataclass(frozen=True)
class Window:
    """What completed in [start, end): successes, their latencies, and errors counted by status."""

    start: float
    end: float
    latencies_ms: np.ndarray = field(repr=False)
    errors: dict[str, int]

    @property
    def seconds(self) -> float:
        return self.end - self.start

    @property
    def requests(self) -> int:
        return int(self.latencies_ms.size)

    @property
    def request_rate(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    @property
    def p99(self) -> float:
        return Latency.of(self.latencies_ms).p99


def window_of(completions: list[Completion], start: float, end: float) -> Window:
    """The completions answered within [start, end)."""
    inside = [c for c in completions if start <= c.done < end]
    latencies = np.array([(c.done - c.sent) * 1e3 for c in inside if not c.status], dtype=np.float64)
    errors: dict[str, int] = {}
    for c in inside:
        if c.status:
            errors[c.status] = errors.get(c.status, 0) + 1
    return Window(start, end, latencies, errors)


def spread(values: list[float]) -> float:
    """Largest relative distance from the mean (0 for identical values; inf when the mean is 0 or NaN)."""
    mean = float(np.mean(values))
    if not np.isfinite(mean) or mean == 0:
        return float("inf")
    return max(abs(v - mean) for v in values) / mean


def stability(
    windows: list[Window], count: int = STABLE_WINDOWS, threshold: float = STABLE_THRESHOLD
) -> tuple[bool, float, float]:
    """(stable, throughput spread, p99 spread) over the last `count` windows."""
    if len(windows) < count:
        return False, float("inf"), float("inf")
    last = windows[-count:]
    if any(w.requests == 0 for w in last):
        return False, float("inf"), float("inf")
    rate_spread = spread([w.request_rate for w in last])
    p99_spread = spread([w.p99 for w in last])
    return rate_spread <= threshold and p99_spread <= threshold, rate_spread, p99_spread


@dataclass(frozen=True)
class Pooled:
    """The last windows taken together: the numbers a point reports."""

    seconds: float
    requests: int
    request_rate: float
    latency: Latency
    errors: dict[str, int]


def pool(windows: list[Window]) -> Pooled:
    seconds = sum(w.seconds for w in windows)
    latencies = np.concatenate([w.latencies_ms for w in windows]) if windows else np.array([])
    errors: dict[str, int] = {}
    for w in windows:
        for status, n in w.errors.items():
            errors[status] = errors.get(status, 0) + n
    rate = latencies.size / seconds if seconds > 0 else 0.0
    return Pooled(seconds, int(latencies.size), rate, Latency.of(latencies), errors)
