"""`triton-repo bench` against the real tritonserver: short windows, small sweeps, real sockets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.conftest import TINY_SPEC, build_all, run_cli, serve, write_tiny_model

# Short windows: these tests check the method and the accounting, not speed.
FAST = ["--window", "0.4", "--max-windows", "4", "--warmup", "0.2", "--min-requests", "5"]

QUEUED_SPEC = TINY_SPEC.replace(
    "max_queue_delay_microseconds: 2000}", "max_queue_delay_microseconds: 2000, max_queue_size: 1}"
)


@pytest.fixture(scope="module")
def bench_served(tmp_path_factory):
    """tiny_fp32, and tinyq_fp32 whose queue holds one request (the server rejects the rest)."""
    base = tmp_path_factory.mktemp("bench")
    models = base / "models"
    write_tiny_model(models)
    write_tiny_model(models, "tinyq", spec=QUEUED_SPEC)
    repository, work_dir = base / "model_repository", base / "build"
    build_all(models, repository, work_dir)
    served = serve(repository, work_dir)
    yield served
    run_cli("stop", "--work-dir", str(work_dir))


def bench(served, output: Path, *args: str):
    return run_cli("bench", *args, *FAST, "--output", str(output), *served.common_args, *served.port_args)


def results(output: Path, model: str) -> dict:
    folders = sorted(output.glob(f"*-{model}"))
    assert len(folders) == 1, f"expected one results folder for {model} in {output}: {folders}"
    return json.loads((folders[0] / "results.json").read_text())


def test_sweep_measures_each_concurrency_and_explains_the_time(bench_served, tmp_path):
    result = bench(bench_served, tmp_path, "tiny", "--concurrency", "1,2")
    assert result.returncode == 0, result.stdout + result.stderr
    document = results(tmp_path, "tiny")
    points = document["points"]
    assert [p["load"] for p in points] == ["c=1", "c=2"]
    for point in points:
        assert point["model"] == "tiny_fp32" and point["errors"] == 0
        assert point["inferences_per_s"] > 0 and point["latency_p50_ms"] <= point["latency_p99_ms"]
        assert point["windows"] >= 3
        # The client and the server counted the same requests over the same windows.
        assert point["client_requests"] > 0
        assert abs(point["client_requests"] - point["server_requests"]) <= 0.02 * point["client_requests"]
        # The breakdown adds up to the end-to-end mean, and the server's compute took time.
        parts = [
            point[k]
            for k in (
                "client_network_ms",
                "queue_ms",
                "compute_input_ms",
                "compute_infer_ms",
                "compute_output_ms",
                "server_other_ms",
            )
        ]
        assert sum(parts) == pytest.approx(point["latency_mean_ms"], rel=1e-6)
        assert point["compute_infer_ms"] > 0
        # The in-process floor ran in the server's runtime, and every row compares with it.
        assert point["floor_inferences_per_s"] > 0 and point["served_vs_floor"] > 0
        assert point["client_cpu_ms_per_request"] > 0 and point["server_cpu_ms_per_request"] > 0
    assert document["floors"]["tiny_fp32"]["runtime"].startswith("onnxruntime ")
    assert document["comparison"][0]["model"] == "tiny_fp32"
    folder = next(tmp_path.glob("*-tiny"))
    for name in ("points.csv", "summary.md", "throughput_vs_p99.png", "time_breakdown.png"):
        assert (folder / name).stat().st_size > 0, name
    assert len((folder / "points.csv").read_text().splitlines()) == 3
    assert "Where the time goes" in result.stdout and "variants compared" in result.stdout


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_shared_memory_requests_succeed_over_both_protocols(bench_served, tmp_path, protocol):
    result = bench(
        bench_served, tmp_path, "tiny_fp32", "--protocol", protocol, "--shared-memory", "--concurrency", "2"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (point,) = results(tmp_path, "tiny")["points"]
    assert point["protocol"] == protocol and point["errors"] == 0 and point["client_requests"] > 0
    assert abs(point["client_requests"] - point["server_requests"]) <= 0.02 * point["client_requests"]


def test_open_loop_sends_at_the_requested_rate(bench_served, tmp_path):
    result = bench(
        bench_served, tmp_path, "tiny", "--protocol", "http", "--request-rate", "40", "--arrivals", "poisson"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (point,) = results(tmp_path, "tiny")["points"]
    assert point["load"] == "40/s poisson"
    # Poisson gaps over ~1.2 s: the mean rate is 40/s give or take the draw, far from closed-loop rates.
    assert 20 <= point["requests_per_s"] <= 60
    assert point["schedule_lag_p99_ms"] is not None


def test_rejected_requests_are_counted_by_status_and_fail_the_run(bench_served, tmp_path):
    result = bench(bench_served, tmp_path, "tinyq", "--concurrency", "16", "--no-floor")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "requests failed during the benchmark" in result.stderr
    document = results(tmp_path, "tinyq")
    (point,) = document["points"]
    # A full queue is UNAVAILABLE over gRPC; nothing else went wrong, and some requests still got through.
    assert set(point["errors_by_status"]) == {"UNAVAILABLE"}
    assert point["errors"] > 0 and point["client_requests"] > 0
    # Triton's statistics do not see requests refused by a full queue (its fail count stays 0), so only
    # the client's count shows them; the successes still agree.
    assert abs(point["client_requests"] - point["server_requests"]) <= 0.02 * point["client_requests"]
    assert document["comparison"][0]["best"] is None  # no error-free point to recommend


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nosuch"], "'nosuch' is neither a published model nor a source model"),
        (["tiny", "--batch", "17"], "--batch 17: tiny accepts 1..16"),
        (["tiny", "--shape", "seq=99"], "--shape seq=99: outside tiny's range 1..32"),
        (["tiny", "--shape", "width=3"], "--shape width=...: none of the selected models has an input axis"),
        (["tiny", "--shape", "seq"], "--shape 'seq': expected AXIS=SIZE"),
        (["tiny", "--concurrency", "0"], "expected comma-separated integers > 0"),
        (["tiny", "--concurrency", "2", "--request-rate", "5"], "choose one (closed loop or open loop)"),
        (["tiny", "--request-rate", "5", "--shared-memory"], "--shared-memory works with --concurrency only"),
    ],
)
def test_bad_bench_options_exit_2_with_one_line(bench_served, tmp_path, args, message):
    result = bench(bench_served, tmp_path, *args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not any(tmp_path.iterdir()), "no results are written for a refused run"


def test_bench_names_the_server_it_cannot_reach(bench_served, tmp_path):
    from triton_repo.serve.server import free_ports

    (port,) = free_ports(1)
    result = run_cli(
        "bench", "tiny", "--grpc-port", str(port), "--output", str(tmp_path), *bench_served.common_args
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"cannot reach Triton at 127.0.0.1:{port} over grpc" in result.stderr


def test_soak_of_20_seconds_has_no_errors_and_reports_server_memory(bench_served):
    """The CI version of `make soak` (10 minutes there): steady load, every error counted, RSS sampled."""
    result = run_cli(
        "soak",
        "tiny_fp32",
        "--minutes",
        "0.35",
        "--concurrency",
        "16",
        *bench_served.common_args,
        *bench_served.port_args,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    record = json.loads((bench_served.work_dir / "soak.json").read_text())
    assert record["errors"] == {} and record["requests"] > 0 and record["seconds"] >= 20
    assert len(record["rss_mb"]) >= 4 and record["rss_growth_mb"] is not None  # sampled every 5 s
    assert "server RSS" in result.stdout and "growth" in result.stdout


def test_soak_fails_when_requests_fail(bench_served):
    result = run_cli(
        "soak",
        "tinyq_fp32",
        "--minutes",
        "0.05",
        "--concurrency",
        "16",
        *bench_served.common_args,
        *bench_served.port_args,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "requests failed" in result.stderr and "UNAVAILABLE" in result.stderr
