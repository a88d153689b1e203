"""A diagnostic never kills a build, and an unexpected failure never prints a traceback: one line names the
model and the step, the traceback goes to <work-dir>/build.log, and the exit code says what happened."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.integration.conftest import (
    ROOT,
    TEST_ENV,
    TINY_MODEL_PY,
    TINY_SPEC,
    build,
    tree_hash,
    write_tiny_model,
)
from triton_repo.repo.publish import read_manifest

pytestmark = pytest.mark.integration

# The tiny model with an accuracy gate, so every lower precision is made, measured and published.
GATED_MODEL_PY = TINY_MODEL_PY + textwrap.dedent(
    """

    def rows(seed):
        rng = np.random.default_rng(seed)
        return {
            "ids": rng.integers(0, 50, size=(16, 6)).astype(np.int64),
            "features": rng.standard_normal((16, 4)).astype(np.float32),
        }


    def calibration():
        return rows(1)


    def evaluation():
        return rows(2)
    """
)
GATED_SPEC = TINY_SPEC.replace(
    'data: {sample: "model:sample"}',
    'data: {sample: "model:sample", calibration: "model:calibration", eval: "model:evaluation"}\n'
    "accuracy: {metric: cosine_min, budget: 0.9}\n"
    "precision: {variants: [fp32, fp16, int8]}",
)
assert GATED_SPEC != TINY_SPEC

# Every diagnostic of a build fails: the roofline, the INT8 FLOP share, the instruction-set report, the
# report's tables and the printed results table. Planted in the real CLI, run as a user runs it.
PLANTED = textwrap.dedent(
    """
    import sys

    import triton_repo.builders.precision.measure as measure
    import triton_repo.builders.report as report
    import triton_repo.cli.build_output as build_output

    def planted(*args, **kwargs):
        raise RuntimeError("planted diagnostic failure")

    measure.matrix_node_flops = planted
    report.cpu_facts = planted
    report.render_markdown = planted
    build_output.print_result = planted

    from triton_repo.cli import main

    sys.argv = ["triton-repo", *sys.argv[1:]]
    main()
    """
)


def _python(*args: str) -> subprocess.CompletedProcess:
    """This Python with `args`, as a user runs the CLI (the planted failures need `-c`)."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **TEST_ENV},
    )


def test_failing_diagnostics_each_cost_one_line_and_every_variant_is_still_published(tmp_path):
    models, repository, work_dir = tmp_path / "models", tmp_path / "repo", tmp_path / "build"
    write_tiny_model(models, model_py=GATED_MODEL_PY, spec=GATED_SPEC)
    result = _python(
        "-c",
        PLANTED,
        "build",
        str(models / "tiny"),
        "--repository",
        str(repository),
        "--work-dir",
        str(work_dir),
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    skipped = [line for line in result.stderr.splitlines() if "skipped: RuntimeError: planted" in line]
    assert [line.split(" skipped")[0] for line in skipped] == [
        "warning: tiny: roofline (matrix FLOPs)",
        "warning: tiny: instruction-set report",
        "warning: BUILD_REPORT.md tables",
        "warning: the results table",
    ]
    assert set(read_manifest(repository)["models"]) == {"tiny_fp32", "tiny_fp16", "tiny_int8"}
    report = json.loads((repository / "BUILD_REPORT.json").read_text())["models"]["tiny"]
    assert all(row["gflops"] is None for row in report["variants"])  # the roofline's columns stay empty
    assert "could not be rendered" in (repository / "BUILD_REPORT.md").read_text()
    log = (work_dir / "build.log").read_text()
    assert log.count("RuntimeError: planted diagnostic failure") >= 4 and "Traceback" in log
    assert "ok publish into" in log


FAILING_EXPORT_PY = TINY_MODEL_PY.replace(
    "        tokens = self.embed(ids)",
    "        if torch.onnx.is_in_onnx_export():\n"
    '            raise RuntimeError("custom op without an ONNX symbolic")\n'
    "        tokens = self.embed(ids)",
)
assert FAILING_EXPORT_PY != TINY_MODEL_PY


def test_a_model_that_fails_unexpectedly_gets_one_line_naming_model_and_step_and_exit_3(tmp_path):
    models, repository, work_dir = tmp_path / "models", tmp_path / "repo", tmp_path / "build"
    write_tiny_model(models)
    build(models / "tiny", repository, work_dir)
    before = tree_hash(repository)
    write_tiny_model(models, name="broken", model_py=FAILING_EXPORT_PY)
    result = _python(
        "-m",
        "triton_repo",
        "build",
        "--models-dir",
        str(models),
        "--repository",
        str(repository),
        "--work-dir",
        str(work_dir),
    )
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: broken: export to ONNX and golden data: failed unexpectedly: ")
    assert "custom op without an ONNX symbolic" in last
    assert last.endswith(f"(the traceback is in {work_dir / 'build.log'}; please report it with that file)")
    log = (work_dir / "build.log").read_text()
    assert "Traceback (most recent call last)" in log and 'raise RuntimeError("custom op' in log
    assert tree_hash(repository) == before  # nothing published, nothing half-written
    assert not list(repository.parent.glob(".*.staging"))
