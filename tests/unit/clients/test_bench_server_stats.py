"""Triton's statistics extension turned into time per request: samples, deltas, and windows combined."""

from __future__ import annotations

import math

import pytest

from triton_repo.clients.bench.server_stats import PHASES, ServerDelta, ServerSample, combine


def model_stats(name: str = "m", version: str = "1", scale: int = 1) -> dict:
    """One model_stats entry as gRPC's as_json=True gives it: uint64 counts and nanoseconds are strings."""
    return {
        "name": name,
        "version": version,
        "last_inference": "1719400000000",
        "inference_count": str(3205 * scale),
        "execution_count": str(3190 * scale),
        "inference_stats": {
            "success": {"count": str(3205 * scale), "ns": str(1897131767 * scale)},
            "fail": {},
            "queue": {"count": str(3205 * scale), "ns": str(689396381 * scale)},
            "compute_input": {"count": str(3205 * scale), "ns": str(28511040 * scale)},
            "compute_infer": {"count": str(3205 * scale), "ns": str(1080346237 * scale)},
            "compute_output": {"count": str(3205 * scale), "ns": str(21578338 * scale)},
        },
        "batch_stats": [],
    }


def sample(success: int, success_ns: int, phase_ns: dict[str, int], inferences: int, executions: int):
    return ServerSample(success, success_ns, 0, phase_ns, inferences, executions)


def delta(requests: int, total_ms: float, phase_ms: dict[str, float] | None = None, failures: int = 0):
    phases = phase_ms or dict.fromkeys(PHASES, total_ms / 4)
    return ServerDelta(requests, failures, requests, requests, total_ms, phases)


def test_sample_reads_tritons_json_where_counts_and_nanoseconds_are_strings():
    s = ServerSample.from_json({"model_stats": [model_stats()]}, "m")
    assert (s.success, s.success_ns, s.failures) == (3205, 1897131767, 0)
    assert s.phase_ns == {
        "queue": 689396381,
        "compute_input": 28511040,
        "compute_infer": 1080346237,
        "compute_output": 21578338,
    }
    assert (s.inferences, s.executions) == (3205, 3190)


def test_sample_reads_the_http_clients_dict_where_counts_are_numbers():
    entry = model_stats()
    entry["inference_stats"]["success"] = {"count": 7, "ns": 7000}
    entry["inference_stats"]["fail"] = {"count": 2, "ns": 10}
    entry["inference_count"] = 7
    s = ServerSample.from_json({"model_stats": [entry]}, "m")
    assert (s.success, s.success_ns, s.failures, s.inferences) == (7, 7000, 2, 7)


def test_sample_sums_every_loaded_version_of_the_model():
    s = ServerSample.from_json(
        {"model_stats": [model_stats(version="1"), model_stats(version="2", scale=2)]}, "m"
    )
    assert s.success == 3205 * 3
    assert s.success_ns == 1897131767 * 3
    assert s.phase_ns["compute_infer"] == 1080346237 * 3
    assert s.executions == 3190 * 3


def test_sample_ignores_other_models():
    statistics = {
        "model_stats": [model_stats("other", scale=5), model_stats("m"), model_stats("m_fp16", scale=9)]
    }
    assert ServerSample.from_json(statistics, "m") == ServerSample.from_json(
        {"model_stats": [model_stats("m")]}, "m"
    )


def test_sample_raises_naming_a_model_the_server_does_not_report():
    with pytest.raises(ValueError, match="'missing'"):
        ServerSample.from_json({"model_stats": [model_stats("m")]}, "missing")
    with pytest.raises(ValueError, match="'m'"):
        ServerSample.from_json({}, "m")


def test_sample_of_a_model_never_called_has_zero_counts():
    entry = {"name": "m", "version": "1", "inference_stats": {"success": {}, "fail": {}, "queue": {}}}
    s = ServerSample.from_json({"model_stats": [entry]}, "m")
    assert (s.success, s.success_ns, s.inferences, s.executions) == (0, 0, 0, 0)
    assert s.phase_ns == dict.fromkeys(PHASES, 0)


def test_delta_gives_milliseconds_per_successful_request_between_two_samples():
    before = sample(100, 10**9, dict.fromkeys(PHASES, 10**8), inferences=100, executions=40)
    after = sample(
        300,
        10**9 + 200 * 2_000_000,  # 2 ms per request
        {
            "queue": 10**8 + 200 * 500_000,
            "compute_input": 10**8 + 200 * 100_000,
            "compute_infer": 10**8 + 200 * 1_000_000,
            "compute_output": 10**8 + 200 * 100_000,
        },
        inferences=300,
        executions=90,
    )
    d = ServerDelta.between(before, after)
    assert d.requests == 200
    assert d.total_ms == pytest.approx(2.0)
    assert d.phase_ms == pytest.approx(
        {"queue": 0.5, "compute_input": 0.1, "compute_infer": 1.0, "compute_output": 0.1}
    )
    assert d.other_ms == pytest.approx(0.3)
    assert d.average_batch == pytest.approx(4.0)  # 200 inferences in 50 executions


def test_delta_counts_failures_between_the_samples():
    before = ServerSample(10, 0, 3, dict.fromkeys(PHASES, 0), 10, 10)
    after = ServerSample(20, 0, 8, dict.fromkeys(PHASES, 0), 20, 20)
    assert ServerDelta.between(before, after).failures == 5


def test_delta_without_requests_or_executions_has_nan_times_and_batch():
    same = sample(5, 5000, dict.fromkeys(PHASES, 100), inferences=5, executions=5)
    d = ServerDelta.between(same, same)
    assert d.requests == 0
    assert math.isnan(d.total_ms) and all(math.isnan(v) for v in d.phase_ms.values())
    assert math.isnan(d.average_batch)


def test_combine_weights_time_per_request_by_each_windows_requests():
    combined = combine([delta(100, 1.0), delta(300, 2.0, failures=2)])
    assert combined.requests == 400
    assert combined.failures == 2
    assert combined.total_ms == pytest.approx(1.75)  # (100 * 1 + 300 * 2) / 400, not the plain mean 1.5
    assert combined.phase_ms["queue"] == pytest.approx(1.75 / 4)
    assert combined.average_batch == 1.0


def test_combine_skips_windows_without_requests_but_keeps_their_failures():
    empty = ServerDelta(0, 7, 0, 0, math.nan, dict.fromkeys(PHASES, math.nan))
    combined = combine([delta(100, 1.0), empty, delta(300, 2.0)])
    assert combined.requests == 400
    assert combined.total_ms == pytest.approx(1.75)
    assert all(math.isfinite(v) for v in combined.phase_ms.values())
    assert combined.failures == 7


def test_combine_of_windows_without_any_requests_has_nan_times():
    empty = ServerDelta(0, 0, 0, 0, math.nan, dict.fromkeys(PHASES, math.nan))
    combined = combine([empty, empty])
    assert combined.requests == 0
    assert math.isnan(combined.total_ms)
