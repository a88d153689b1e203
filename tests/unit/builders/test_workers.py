"""`build -j N`: models built in worker processes come back in the specs' order, their lines reach the
terminal and the build log through the parent, and a model that fails (or whose worker dies) stops the
others and ends the build with the one line the build in one process would have printed."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from triton_repo.builders import pipeline
from triton_repo.builders.workers import STOP_SECONDS, WorkerFailed, build_in_workers, died, worker_count
from triton_repo.core import log
from triton_repo.core.errors import UNEXPECTED, SpecError


@dataclass(frozen=True)
class FakeJob:
    """A model whose build sleeps `seconds`, then does what `ends` says (a worker unpickles it)."""

    name: str
    seconds: float = 0.0
    ends: str = "built"  # built | user error | unexpected | killed | hangs
    pid_file: Path | None = None  # where it writes its worker's pid
    waits_for: Path | None = None  # a file to wait for before it ends (another job's pid file)


def fake_build(job: FakeJob, builder) -> str:
    """What a worker runs for a FakeJob: one line, one step, then the job's ending."""
    if job.pid_file is not None:
        job.pid_file.write_text(str(os.getpid()))
    log.info(f"{job.name}: a line from the worker")
    with log.step(f"{job.name}: export to ONNX and golden data"):
        time.sleep(job.seconds)
        while job.waits_for is not None and not job.waits_for.exists():
            time.sleep(0.05)
        if job.ends == "user error":
            raise SpecError(f"{job.name}/model.yaml: source.factory: no such function")
        if job.ends == "unexpected":
            raise RuntimeError("custom op without an ONNX symbolic")
        if job.ends == "killed":
            os.kill(os.getpid(), signal.SIGKILL)
        if job.ends == "hangs":
            time.sleep(600)
    return f"built {job.name}"


@pytest.fixture
def build_log(tmp_path, monkeypatch) -> Path:
    monkeypatch.setattr(log, "_log_file", None)
    log.open_log(tmp_path / "build.log")
    return tmp_path / "build.log"


def test_results_come_back_in_the_jobs_order_and_every_worker_line_reaches_terminal_and_log(
    build_log, capsys
):
    jobs = [FakeJob("slow", seconds=0.5), FakeJob("quick"), FakeJob("third")]  # slow finishes last
    assert build_in_workers(jobs, 2, fake_build) == ["built slow", "built quick", "built third"]
    terminal = capsys.readouterr().err.splitlines()
    written = build_log.read_text()
    for name in ("slow", "quick", "third"):
        assert f"{name}: a line from the worker" in terminal
        assert any(line.startswith(f"✓ {name}: export to ONNX and golden data (") for line in terminal)
        assert f"ok {name}: export to ONNX and golden data (" in written
        assert f"{name}: a line from the worker\n" in written


def test_a_model_that_fails_unexpectedly_stops_the_others_and_ends_with_its_one_line_and_exit_3(
    build_log, tmp_path
):
    hanging = tmp_path / "hanging.pid"
    jobs = [
        FakeJob("hangs", ends="hangs", pid_file=hanging),
        FakeJob("broken", ends="unexpected", waits_for=hanging),
    ]
    start = time.monotonic()
    with pytest.raises(WorkerFailed) as raised:
        build_in_workers(jobs, 2, fake_build)
    assert time.monotonic() - start < STOP_SECONDS  # the hanging model was stopped, not waited for
    assert raised.value.exit_code == UNEXPECTED
    assert str(raised.value) == (
        "broken: export to ONNX and golden data: failed unexpectedly: RuntimeError: custom op without an "
        f"ONNX symbolic (the traceback is in {build_log}; please report it with that file)"
    )
    written = build_log.read_text()
    assert "Traceback (most recent call last)" in written and "in fake_build" in written
    with pytest.raises(ProcessLookupError):  # the other worker is gone
        os.kill(int(hanging.read_text()), 0)


def test_a_user_error_in_a_worker_keeps_its_message_and_exit_code(build_log):
    with pytest.raises(WorkerFailed) as raised:
        build_in_workers([FakeJob("broken", ends="user error")], 1, fake_build)
    assert (str(raised.value), raised.value.exit_code) == (
        "broken/model.yaml: source.factory: no such function",
        2,
    )


def test_a_killed_worker_ends_the_build_with_one_line_naming_its_model_and_step(build_log):
    with pytest.raises(WorkerFailed) as raised:
        build_in_workers([FakeJob("fine"), FakeJob("oom", ends="killed")], 2, fake_build)
    assert raised.value.exit_code == 2
    assert str(raised.value).startswith(
        "oom: export to ONNX and golden data: the build worker died (SIGKILL); out of memory?"
    )
    assert "\n" not in str(raised.value)


def test_a_worker_that_dies_before_its_first_step_is_named_by_its_model():
    assert died("ocrdet", None, -9).message.startswith("ocrdet: build: the build worker died (SIGKILL)")
    assert "(exit code 1)" in died("ocrdet", "ocrdet: verify", 1).message


def test_workers_are_never_more_than_the_models_and_at_least_one():
    assert worker_count(4, 2) == 2
    assert worker_count(2, 5) == 2
    assert worker_count(3, 0) == 1
    with pytest.raises(ValueError, match="at least 1"):
        worker_count(0, 3)


def test_one_job_builds_every_model_in_this_process_in_the_specs_order(monkeypatch):
    def no_workers(*args):
        raise AssertionError("-j 1 must not start a worker process")

    monkeypatch.setattr(pipeline, "build_in_workers", no_workers)
    monkeypatch.setattr(pipeline, "build_model", lambda job, builder: (job.name, os.getpid()))
    built = pipeline._build_models([FakeJob("b"), FakeJob("a")], 1)
    assert built == [("b", os.getpid()), ("a", os.getpid())]
