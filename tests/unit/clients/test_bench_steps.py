"""An ensemble's steps and a model's own stage timings: the Prometheus text read, deltas over windows,
and the tables and results.json that show them."""

from __future__ import annotations

import json

import pytest
from rich.console import Console

from tests.unit.clients.test_bench_report import point, server
from triton_repo.clients.bench import report
from triton_repo.clients.bench.server_stats import (
    ServerDelta,
    StageTime,
    combine_stages,
    parse_stage_metrics,
    stage_deltas,
)

EXPOSITION = """\
# HELP nv_inference_request_success Number of successful inference requests
# TYPE nv_inference_request_success counter
nv_inference_request_success{model="minilm",version="5"} 120
# HELP triton_repo_stage_seconds_total Seconds spent per stage of a model served as one process
# TYPE triton_repo_stage_seconds_total counter
triton_repo_stage_seconds_total{model="minilm",stage="preprocess",version="5"} 1.5
triton_repo_stage_seconds_total{model="minilm",stage="runtime",version="5"} 12.25
triton_repo_stage_seconds_total{model="minilm",stage="runtime",version="4"} 0.75
triton_repo_stage_seconds_total{model="odd \\"name\\", here",stage="runtime",version="1"} 2
# HELP triton_repo_stage_rows_total Batch rows processed per stage
# TYPE triton_repo_stage_rows_total counter
triton_repo_stage_rows_total{model="minilm",stage="preprocess",version="5"} 960
triton_repo_stage_rows_total{model="minilm",stage="runtime",version="5"} 960
triton_repo_stage_rows_total{model="minilm",stage="runtime",version="4"} 40
"""


def test_stage_counters_are_read_per_model_and_stage_summed_over_versions():
    found = parse_stage_metrics(EXPOSITION)
    assert found[("minilm", "preprocess")] == (1.5, 960.0)
    assert found[("minilm", "runtime")] == (13.0, 1000.0)
    assert found[('odd "name", here', "runtime")] == (2.0, 0.0)
    assert len(found) == 3


def test_exposition_without_the_stage_families_gives_nothing():
    assert parse_stage_metrics('nv_inference_count{model="m",version="1"} 5\n# TYPE x counter\n') == {}


def test_stage_deltas_keep_the_models_asked_for_and_skip_a_counter_that_restarted():
    before = {("minilm", "runtime"): (10.0, 800.0), ("other", "runtime"): (1.0, 1.0)}
    after = {
        ("minilm", "runtime"): (13.0, 1000.0),
        ("minilm", "preprocess"): (0.5, 200.0),
        ("other", "runtime"): (2.0, 2.0),
    }
    deltas = stage_deltas(before, after, {"minilm"})
    assert deltas == [
        StageTime("minilm", "runtime", 3.0, 200.0),
        StageTime("minilm", "preprocess", 0.5, 200.0),
    ]
    assert stage_deltas(after, before, {"minilm"}) == []  # the model reloaded: its counters went down


def test_stages_of_several_windows_are_summed():
    windows = [[StageTime("m", "runtime", 1.0, 10.0)], [StageTime("m", "runtime", 2.0, 30.0)]]
    assert combine_stages(windows) == [StageTime("m", "runtime", 3.0, 40.0)]


def stepped_point():
    p = point("digits", server_delta=server(300))
    phases = {"queue": 0.25, "compute_input": 0.5, "compute_infer": 2.0, "compute_output": 0.25}
    p.steps = {
        "digits_preprocess": ServerDelta(300, 0, 2400, 300, 1.0, dict(phases)),
        "digits_fp32": ServerDelta(300, 0, 2400, 150, 3.5, dict(phases)),
    }
    p.stages = [StageTime("digits", "runtime", 0.6, 2400.0)]
    return p


def test_step_rows_give_queue_compute_per_request_and_the_batch_each_step_ran_at():
    rows = report.step_rows(stepped_point())
    assert [r["model"] for r in rows] == ["digits_preprocess", "digits_fp32"]
    assert rows[0]["compute_ms"] == pytest.approx(2.75) and rows[0]["queue_ms"] == 0.25
    assert rows[0]["average_batch"] == 8.0 and rows[1]["average_batch"] == 16.0
    assert report.step_rows(point()) is None


def test_stage_rows_are_per_request_counted_by_the_server_and_per_row():
    (row,) = report.stage_rows(stepped_point())
    assert row["ms_per_request"] == pytest.approx(2.0) and row["ms_per_row"] == pytest.approx(0.25)


def test_tables_show_the_steps_and_stages_only_when_there_are_some():
    console = Console(record=True, width=250)
    report.print_tables([stepped_point()], console)
    text = console.export_text()
    assert "Ensemble steps" in text and "digits_fp32" in text and "Stages a model reports" in text
    console = Console(record=True, width=250)
    report.print_tables([point(server_delta=server())], console)
    assert "Ensemble steps" not in console.export_text() and "Stages" not in console.export_text()


def test_results_json_has_the_steps_and_the_csv_leaves_them_out(tmp_path):
    points = [stepped_point()]
    report.write_results(points, report.comparison(points), {}, tmp_path, "")
    (record,) = json.loads((tmp_path / "results.json").read_text())["points"]
    assert [s["model"] for s in record["steps"]] == ["digits_preprocess", "digits_fp32"]
    assert record["stages"][0]["stage"] == "runtime"
    header = (tmp_path / "points.csv").read_text().splitlines()[0].split(",")
    assert "steps" not in header and "stages" not in header
