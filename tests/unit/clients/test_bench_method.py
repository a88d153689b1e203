"""The measurement method: windows, pooled percentiles and perf_analyzer's stability rule."""

from __future__ import annotations

import math

import numpy as np
import pytest

from triton_repo.clients.bench.method import Completion, Latency, Window, pool, spread, stability, window_of


def window(rate: float, p99: float, seconds: float = 1.0, errors: dict[str, int] | None = None) -> Window:
    """A window of `rate` successes per second, every one taking `p99` ms (so its p99 is exactly that)."""
    latencies = np.full(round(rate * seconds), p99, dtype=np.float64)
    return Window(0.0, seconds, latencies, errors or {})


def test_point_is_stable_when_throughput_and_p99_stay_within_10_percent():
    stable, rate_spread, p99_spread = stability([window(100, 10.0), window(105, 10.5), window(95, 9.5)])
    assert stable
    assert rate_spread == pytest.approx(0.05)
    assert p99_spread == pytest.approx(0.05)


def test_point_is_unstable_when_throughput_varies_more_than_10_percent():
    stable, rate_spread, p99_spread = stability([window(100, 10.0), window(100, 10.0), window(130, 10.0)])
    assert not stable
    assert rate_spread == pytest.approx(20 / 110)
    assert p99_spread == 0


def test_point_is_unstable_when_only_p99_varies_more_than_10_percent():
    stable, rate_spread, p99_spread = stability([window(100, 10.0), window(100, 10.0), window(100, 13.0)])
    assert not stable
    assert rate_spread == 0
    assert p99_spread == pytest.approx(2 / 11)


def test_point_is_unstable_with_fewer_than_3_windows_however_steady_they_are():
    assert stability([window(100, 10.0), window(100, 10.0)]) == (False, math.inf, math.inf)


def test_point_is_unstable_when_a_window_had_no_successful_requests():
    failed = window(0, 10.0, errors={"UNAVAILABLE": 40})
    assert stability([window(100, 10.0), window(100, 10.0), failed]) == (False, math.inf, math.inf)


def test_stability_judges_only_the_last_3_windows():
    noisy_start = [window(10, 90.0), window(400, 1.0)]
    steady = [window(100, 10.0), window(101, 10.1), window(99, 9.9)]
    assert stability(noisy_start + steady)[0]
    assert not stability(steady + noisy_start)[0]


def test_stability_counts_and_threshold_can_be_changed():
    windows = [window(100, 10.0), window(100, 10.0), window(108, 10.0)]
    assert stability(windows)[0]
    assert not stability(windows, threshold=0.02)[0]
    assert not stability(windows, count=4)[0]


def test_spread_is_the_largest_relative_distance_from_the_mean_and_infinite_for_a_zero_mean():
    assert spread([90.0, 100.0, 110.0]) == pytest.approx(0.1)
    assert spread([5.0, 5.0]) == 0
    assert spread([0.0, 0.0]) == math.inf
    assert spread([1.0, math.nan]) == math.inf


def test_window_counts_completions_answered_from_its_start_up_to_but_not_at_its_end():
    completions = [
        Completion(sent=0.5, done=0.999),  # before
        Completion(sent=0.9, done=1.0),  # at the start: inside
        Completion(sent=1.0, done=1.5),  # inside
        Completion(sent=1.9, done=2.0),  # at the end: the next window's
    ]
    w = window_of(completions, 1.0, 2.0)
    assert w.requests == 2
    assert w.latencies_ms.tolist() == pytest.approx([100.0, 500.0])
    assert w.seconds == 1.0
    assert w.request_rate == 2.0


def test_window_counts_errors_by_status_and_keeps_them_out_of_latencies():
    completions = [
        Completion(0.0, 0.010),
        Completion(0.0, 0.100, "UNAVAILABLE"),
        Completion(0.0, 0.200, "UNAVAILABLE"),
        Completion(0.0, 0.300, "client timeout"),
        Completion(0.0, 0.020),
    ]
    w = window_of(completions, 0.0, 1.0)
    assert w.errors == {"UNAVAILABLE": 2, "client timeout": 1}
    assert w.requests == 2
    assert w.latencies_ms.tolist() == pytest.approx([10.0, 20.0])


def test_window_with_no_completions_has_no_requests_and_zero_rate():
    w = window_of([Completion(0.0, 5.0)], 1.0, 2.0)
    assert (w.requests, w.errors, w.request_rate) == (0, {}, 0.0)
    assert math.isnan(w.p99)


def test_pool_takes_percentiles_over_the_concatenated_windows_not_the_mean_of_each():
    fast = Window(0.0, 1.0, np.full(10, 1.0), {})
    slow = Window(1.0, 2.0, np.full(90, 100.0), {})
    pooled = pool([fast, slow])
    everything = np.concatenate([fast.latencies_ms, slow.latencies_ms])
    assert pooled.latency.p50 == 100.0  # the mean of the windows' p50s would be 50.5
    assert pooled.latency.p90 == pytest.approx(np.percentile(everything, 90))
    assert pooled.latency.mean == pytest.approx(90.1)
    assert pooled.latency.max == 100.0
    assert pooled.requests == 100


def test_pool_sums_errors_by_status_across_windows():
    pooled = pool(
        [
            Window(0.0, 1.0, np.ones(5), {"UNAVAILABLE": 2}),
            Window(1.0, 2.0, np.ones(5), {"UNAVAILABLE": 3, "client timeout": 1}),
            Window(2.0, 3.0, np.ones(5), {}),
        ]
    )
    assert pooled.errors == {"UNAVAILABLE": 5, "client timeout": 1}


def test_pool_rate_is_successes_over_the_total_seconds_of_all_windows():
    pooled = pool([Window(0.0, 1.0, np.ones(10), {"UNAVAILABLE": 50}), Window(1.0, 4.0, np.ones(30), {})])
    assert pooled.seconds == 4.0
    assert pooled.request_rate == 10.0  # 40 successes / 4 s; errors are not throughput


def test_pool_of_no_windows_has_zero_rate_and_nan_latency():
    pooled = pool([])
    assert (pooled.seconds, pooled.requests, pooled.request_rate, pooled.errors) == (0, 0, 0.0, {})
    assert math.isnan(pooled.latency.p50)


def test_latency_of_an_empty_array_is_nan_everywhere():
    latency = Latency.of(np.array([]))
    values = (latency.p50, latency.p90, latency.p95, latency.p99, latency.max, latency.mean)
    assert all(math.isnan(v) for v in values)


def test_latency_of_values_gives_numpy_percentiles_max_and_mean():
    values = np.arange(1.0, 101.0)
    latency = Latency.of(values)
    assert (latency.p50, latency.p90, latency.p95, latency.p99) == pytest.approx(
        tuple(np.percentile(values, (50, 90, 95, 99)))
    )
    assert (latency.max, latency.mean) == (100.0, 50.5)
