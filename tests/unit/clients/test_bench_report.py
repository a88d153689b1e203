"""Benchmark results: the time breakdown, the per-variant comparison, and the files a run writes."""

from __future__ import annotations

import csv
import io
import json
import math

import pytest
from rich.console import Console

from triton_repo.clients.bench import report
from triton_repo.clients.bench.floor import Floor
from triton_repo.clients.bench.method import Latency
from triton_repo.clients.bench.run import Level, Point
from triton_repo.clients.bench.server_stats import ServerDelta

PHASE_MS = {"queue": 0.5, "compute_input": 0.1, "compute_infer": 1.0, "compute_output": 0.1}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def server(requests: int = 300, total_ms: float = 2.0) -> ServerDelta:
    return ServerDelta(requests, 0, requests * 4, requests, total_ms, dict(PHASE_MS))


def point(
    model: str = "toy_fp32",
    concurrency: int | None = 1,
    rate: float = 100.0,
    *,
    stable: bool = True,
    errors: dict[str, int] | None = None,
    batch: int = 1,
    p99: float = 9.0,
    mean: float = 5.0,
    server_delta: ServerDelta | None = None,
    floor: Floor | None = None,
    server_cpu_ms: float | None = None,
) -> Point:
    """A point as run.measure_point builds it; `rate` is requests per second."""
    level = Level(concurrency=concurrency) if concurrency is not None else Level(rate=rate)
    return Point(
        model=model,
        protocol="grpc",
        level=level,
        batch=batch,
        shape="batch=1,seq=16",
        stable=stable,
        windows=3 if stable else 10,
        spread=(0.02, 0.04) if stable else (0.3, 0.5),
        seconds=6.0,
        requests=int(rate * 6),
        request_rate=rate,
        latency=Latency(p50=4.0, p90=6.0, p95=7.0, p99=p99, max=12.0, mean=mean),
        errors=errors or {},
        server=server_delta,
        client_cpu_ms=0.2,
        server_cpu_ms=server_cpu_ms,
        floor=floor,
    )


def floor(rate: float = 400.0) -> Floor:
    return Floor("onnxruntime 1.20.1", 2, 1, rate, Latency(2.0, 2.5, 2.6, 3.0, 4.0, 2.1), True, 3, (rate,))


# breakdown_ms


def test_breakdown_sums_to_the_mean_end_to_end_latency():
    parts = report.breakdown_ms(point(mean=5.0, server_delta=server(total_ms=2.0)))
    assert list(parts) == list(report.BREAKDOWN)
    assert sum(parts.values()) == pytest.approx(5.0)
    assert parts["client + network"] == pytest.approx(3.0)
    assert parts["compute infer"] == pytest.approx(1.0)
    assert parts["server other"] == pytest.approx(0.3)  # 2.0 - (0.5 + 0.1 + 1.0 + 0.1)


def test_breakdown_is_none_without_server_statistics_or_server_counted_requests():
    assert report.breakdown_ms(point(server_delta=None)) is None
    assert report.breakdown_ms(point(server_delta=server(requests=0))) is None


# comparison


def test_comparison_picks_the_highest_throughput_stable_error_free_point():
    points = [
        point(concurrency=1, rate=100.0, p99=3.0),
        point(concurrency=2, rate=180.0, p99=5.0),
        point(concurrency=4, rate=250.0, p99=8.0, stable=False),  # faster, but unstable
        point(concurrency=8, rate=300.0, p99=20.0, errors={"UNAVAILABLE": 4}),  # fastest, but failed
    ]
    [row] = report.comparison(points)
    assert row["model"] == "toy_fp32"
    assert row["best"] == "c=2"
    assert row["best_stable"] is True
    assert row["inferences_per_s"] == 180.0
    assert row["p99_ms"] == 5.0
    assert row["c1_p50_ms"] == 4.0


def test_comparison_counts_inferences_as_requests_times_batch():
    [row] = report.comparison(
        [point(concurrency=1, rate=50.0, batch=8), point(concurrency=2, rate=90.0, batch=8)]
    )
    assert row["best"] == "c=2"
    assert row["inferences_per_s"] == 720.0


def test_comparison_falls_back_to_unstable_points_when_none_is_stable():
    points = [
        point(concurrency=1, rate=100.0, stable=False),
        point(concurrency=2, rate=150.0, stable=False),
        point(concurrency=4, rate=400.0, errors={"client timeout": 1}),
    ]
    [row] = report.comparison(points)
    assert row["best"] == "c=2"
    assert row["best_stable"] is False
    assert "(unstable)" in report.comparison_markdown([row], "grpc", 1, "seq=16")


def test_comparison_reports_no_error_free_point_when_every_point_had_errors():
    points = [
        point(concurrency=1, errors={"UNAVAILABLE": 1}),
        point(concurrency=2, errors={"client timeout": 3}),
    ]
    assert report.comparison(points) == [{"model": "toy_fp32", "best": None}]
    markdown = report.comparison_markdown(report.comparison(points), "grpc", 1, "seq=16")
    assert "| toy_fp32 | no error-free point |" in markdown


def test_comparison_has_one_row_per_model_in_order_of_first_appearance():
    points = [point("toy_int8"), point("toy_fp32"), point("toy_int8", concurrency=2, rate=300.0)]
    rows = report.comparison(points)
    assert [(r["model"], r["best"]) for r in rows] == [("toy_int8", "c=2"), ("toy_fp32", "c=1")]


def test_comparison_has_no_single_request_latency_without_a_concurrency_1_point():
    [row] = report.comparison([point(concurrency=None, rate=50.0), point(concurrency=4, rate=200.0)])
    assert row["best"] == "c=4"
    assert row["c1_p50_ms"] is None and row["c1_added_p50_ms"] is None


def test_comparison_relates_the_best_point_to_the_in_process_floor():
    [row] = report.comparison([point(concurrency=2, rate=200.0, floor=floor(400.0))])
    assert row["served_vs_floor"] == pytest.approx(0.5)
    assert row["floor_inferences_per_s"] == 400.0


# tables


def test_tables_print_points_without_server_statistics_and_models_without_an_error_free_point():
    console = Console(record=True, width=250)
    points = [point(server_delta=None), point("toy_fp16", errors={"UNAVAILABLE": 2}, server_delta=server())]
    report.print_tables(points, console)
    report.print_comparison(report.comparison(points), console, "toy: variants compared")
    text = console.export_text()
    assert "UNAVAILABLE 2" in text
    assert "no error-free point" in text


# write_results


def test_write_results_writes_json_csv_markdown_and_both_plots(tmp_path):
    points = [
        point(concurrency=1, rate=100.0, server_delta=server(), floor=floor()),
        point(concurrency=2, rate=180.0, server_delta=server(), floor=floor(), errors={"UNAVAILABLE": 2}),
    ]
    rows = report.comparison(points)
    folder = tmp_path / "results" / "2024-01-01-000000-toy"
    report.write_results(points, rows, {"protocol": "grpc"}, folder, "## toy\n")

    document = json.loads((folder / "results.json").read_text())
    assert document["meta"] == {"protocol": "grpc"}
    assert [p["load"] for p in document["points"]] == ["c=1", "c=2"]
    assert document["points"][1]["errors_by_status"] == {"UNAVAILABLE": 2}
    assert document["points"][0]["queue_ms"] == 0.5
    assert document["comparison"][0]["best"] == "c=1"
    assert document["floors"]["toy_fp32"]["request_rate"] == 400.0

    with (folder / "points.csv").open(newline="") as handle:
        reader = csv.DictReader(handle)
        records = list(reader)
    assert "errors_by_status" not in reader.fieldnames
    assert {"model", "load", "latency_p99_ms", "client_network_ms", "server_other_ms"} <= set(
        reader.fieldnames
    )
    assert [r["load"] for r in records] == ["c=1", "c=2"]
    assert [r["errors"] for r in records] == ["0", "2"]

    assert (folder / "summary.md").read_text() == "## toy\n"
    for plot in ("throughput_vs_p99.png", "time_breakdown.png"):
        assert (folder / plot).read_bytes().startswith(PNG_SIGNATURE)


def test_write_results_skips_the_breakdown_plot_when_no_point_has_server_statistics(tmp_path):
    report.write_results([point(server_delta=None)], [], {}, tmp_path, "")
    assert (tmp_path / "throughput_vs_p99.png").is_file()
    assert not (tmp_path / "time_breakdown.png").exists()


def test_points_csv_keeps_the_breakdown_columns_when_the_first_point_has_no_server_statistics(tmp_path):
    points = [point(concurrency=1, server_delta=None), point(concurrency=2, server_delta=server())]
    report.write_results(points, report.comparison(points), {}, tmp_path, "")
    with (tmp_path / "points.csv").open(newline="") as handle:
        records = list(csv.DictReader(handle))
    assert records[1].get("queue_ms") == "0.5"


def _reject_constant(name: str):
    raise ValueError(f"{name} is not JSON (RFC 8259)")


def test_results_json_is_strict_json_when_a_point_has_nan_or_infinite_values(tmp_path):
    unstable = point(concurrency=2, stable=False, server_cpu_ms=math.nan)
    unstable.spread = (math.inf, math.inf)
    report.write_results([unstable], report.comparison([unstable]), {}, tmp_path, "")
    json.load(io.StringIO((tmp_path / "results.json").read_text()), parse_constant=_reject_constant)
