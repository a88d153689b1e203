"""`triton-repo build -j 2` publishes what `-j 1` publishes: the same model folders, configs and report
(but for the timings), with each worker's steps on the terminal and in build.log; a model that fails in
a worker ends the build as it does in one process, with nothing published."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.integration.conftest import TINY_MODEL_PY, run_cli, tree_hash, write_tiny_model
from tests.integration.test_diagnostics import GATED_MODEL_PY, GATED_SPEC

pytestmark = pytest.mark.integration

# One model with an fp16 variant (made by a quantizer child process of its worker) and two plain ones, so
# a worker builds two models in turn.
MODELS = ("gated", "plain", "plain2")
FP16_SPEC = GATED_SPEC.replace("variants: [fp32, fp16, int8]", "variants: [fp32, fp16]")
assert FP16_SPEC != GATED_SPEC
# What a build measures, so differs from one build to the next whatever -j is.
TIMINGS = frozenset(
    {"measured_at", "latency_ms_batch1", "throughput_per_s", "throughput_noise", "speedup_vs_fp32", "gflops"}
    | {"throughput_real_per_s", "throughput_real_noise", "speedup_real_vs_fp32"}
)
ROW_TIMINGS = frozenset({"b1_ms", "b8", "speedup", "export"})
BROKEN_MODEL_PY = TINY_MODEL_PY.replace(
    "    return Tiny().eval()", '    raise RuntimeError("no weights here")'
)
assert BROKEN_MODEL_PY != TINY_MODEL_PY


def build_with_jobs(jobs: int, models: Path, base: Path):
    """`triton-repo build -j JOBS` of every model folder in `models`, into base/repo-jJOBS with its own
    work dir."""
    repository, work_dir = base / f"repo-j{jobs}", base / f"work-j{jobs}"
    where = ["--models-dir", str(models), "--repository", str(repository), "--work-dir", str(work_dir)]
    result = run_cli("build", "-j", str(jobs), "--speed-seconds", "1", *where, timeout=300)
    return result, repository, work_dir


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    """The same three models built with -j 1 and with -j 2."""
    base = tmp_path_factory.mktemp("parallel")
    models = base / "models"
    write_tiny_model(models, "gated", model_py=GATED_MODEL_PY, spec=FP16_SPEC)
    write_tiny_model(models, "plain")
    write_tiny_model(models, "plain2")
    return {jobs: build_with_jobs(jobs, models, base) for jobs in (1, 2)}


def without_timings(value):
    """A report with what it measured left out, and the numbers of each choice's `why` masked."""
    if isinstance(value, dict):
        return {
            key: re.sub(r"\d[\d,.]*", "#", item) if key == "why" else without_timings(item)
            for key, item in value.items()
            if key not in TIMINGS
        }
    if isinstance(value, list):
        return [without_timings(item) for item in value]
    return value


def without_row_timings(rows: list[dict]) -> list[dict]:
    return [{key: value for key, value in row.items() if key not in ROW_TIMINGS} for row in rows]


def test_both_builds_publish_every_model_and_j2_the_same_folders_and_configs(both):
    (one, repo_one, _), (two, repo_two, _) = both[1], both[2]
    assert one.returncode == 0, one.stderr
    assert two.returncode == 0, two.stderr
    published = sorted(path.name for path in repo_two.iterdir() if path.is_dir())
    assert published == ["gated_fp16", "gated_fp32", "plain2_fp32", "plain_fp32"]
    assert published == sorted(path.name for path in repo_one.iterdir() if path.is_dir())
    for model in published:
        configs = [(repo / model / "config.pbtxt").read_text() for repo in (repo_one, repo_two)]
        assert configs[0] == configs[1], model
        assert tree_hash(repo_two / model) == tree_hash(repo_one / model), model  # ONNX, golden, warmup, ...
    manifests = [json.loads((repo / "manifest.json").read_text()) for repo in (repo_one, repo_two)]
    for manifest in manifests:
        for entry in manifest["models"].values():
            del entry["published"], entry["published_at"]  # when
    assert manifests[0] == manifests[1]


def test_j2_reports_what_j1_reports_but_for_the_timings_in_the_specs_order(both):
    reports = [json.loads((repo / "BUILD_REPORT.json").read_text()) for _, repo, _ in both.values()]
    assert without_timings(reports[0]) == without_timings(reports[1])
    rows = [json.loads((work / "build.json").read_text())["models"] for _, _, work in both.values()]
    assert [without_row_timings(found) for found in rows[1:]] == [without_row_timings(rows[0])]
    assert list(dict.fromkeys(row["model"] for row in rows[1])) == list(MODELS)  # the specs' order


def test_each_workers_steps_reach_the_terminal_and_build_log_in_whole_lines(both):
    result, repository, work_dir = both[2]
    log = (work_dir / "build.log").read_text()
    steps = [line for line in result.stderr.splitlines() if line.startswith("✓")]
    for model in MODELS:
        assert f"ok {model}: export to ONNX and golden data (" in log
        assert f"ok {model}: stage {model}_fp32 (" in log
        assert any(line.startswith(f"✓ {model}: stage {model}_fp32 (") for line in steps)
    named = re.compile(
        rf"✓ ({'|'.join(MODELS)}): .* \(\d+\.\d s\)$|✓ publish into {re.escape(str(repository))} "
    )
    assert [line for line in steps if not named.match(line)] == []  # every line whole and named


def test_a_model_failing_in_a_worker_ends_the_build_as_in_one_process_and_publishes_nothing(tmp_path):
    models = tmp_path / "models"
    write_tiny_model(models, "broken", model_py=BROKEN_MODEL_PY)
    write_tiny_model(models, "plain")
    ended = {}
    for jobs in (1, 2):
        result, repository, work_dir = build_with_jobs(jobs, models, tmp_path)
        assert "Traceback" not in result.stdout + result.stderr
        last = result.stderr.strip().splitlines()[-1]
        ended[jobs] = (result.returncode, last.replace(str(work_dir), "WORK"))
        assert 'raise RuntimeError("no weights here")' in (work_dir / "build.log").read_text()
        assert not repository.exists()  # nothing published
        assert not list(tmp_path.glob(".*.staging"))
    line = (
        "error: broken: export to ONNX and golden data: failed unexpectedly: RuntimeError: no weights here "
        "(the traceback is in WORK/build.log; please report it with that file)"
    )
    assert ended == {1: (3, line), 2: (3, line)}
