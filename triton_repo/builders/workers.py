"""`triton-repo build -j N`: models built side by side in N worker processes.

Each worker is a spawned process with its own quantizer children (an ArtifactBuilder, reused for every
model it builds); it gets one model at a time over a pipe and sends back the model's record, or its
failure as the one line the build in one process would have ended with. It prints and logs nothing
itself: every line goes to the parent (core.log.forward_lines), which prints it (lines already name
their model), writes it to the build log, and shows each worker's step in one spinner.

The first model that fails stops the others (their whole process trees) and the build ends with its
line; so does a worker that dies (out of memory, a crash, a kill), naming the model it was building.
Ctrl-C stops them too. The results come back in the jobs' order, whatever order they finished in.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path

from triton_repo.builders.model_build import ModelBuilt, ModelJob, build_model
from triton_repo.builders.precision.artifacts import ArtifactBuilder
from triton_repo.core.errors import UNEXPECTED, TritonRepoError
from triton_repo.core.log import (
    console,
    forward_lines,
    info,
    log_path,
    log_traceback,
    replay,
    unexpected_line,
    where_failed,
)
from triton_repo.core.proc import all_stat_fields
from triton_repo.runtimes.isolated import signal_name

STOP_SECONDS = 10.0  # a stopped worker's time to clean up (scratch folders) before it is killed


def worker_count(jobs: int, models: int) -> int:
    """How many workers `-j jobs` starts for `models` models: never more than there are models."""
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    return max(1, min(jobs, models))


@dataclass(frozen=True)
class ModelFailed:
    """A model's build failed in a worker: the line and exit code the build ends with."""

    model: str
    message: str
    exit_code: int
    detail: str | None = None


class WorkerFailed(TritonRepoError):
    """A model failed in a build worker: its line and its exit code, as if it had failed in this process."""

    def __init__(self, failure: ModelFailed) -> None:
        super().__init__(failure.message, failure.detail)
        self.exit_code = failure.exit_code
        self.model = failure.model


def died(model: str, step: str | None, exitcode: int | None) -> ModelFailed:
    """The failure of a worker that ended without an answer (killed, out of memory, crashed)."""
    how = signal_name(exitcode) if exitcode is not None else "no exit code"
    where = step or f"{model}: build"
    return ModelFailed(
        model,
        f"{where}: the build worker died ({how}); out of memory? each worker loads its own PyTorch and "
        "ONNX Runtime: build with fewer --jobs",
        2,
    )


Work = Callable[[ModelJob, ArtifactBuilder], ModelBuilt]


def build_in_workers(model_jobs: list[ModelJob], workers: int, work: Work = build_model) -> list[ModelBuilt]:
    """`work(job, builder)` for every job (each has a `.name`) in `workers` spawned processes; the results
    in the jobs' order. A failure stops every worker and raises WorkerFailed."""
    context = multiprocessing.get_context("spawn")
    count = worker_count(workers, len(model_jobs))
    info(f"building {len(model_jobs)} models side by side in {count} worker processes")
    pool = [_Worker.start(context, work) for _ in range(count)]
    waiting = list(enumerate(model_jobs))
    results: dict[int, object] = {}
    try:
        with console.status("starting the build workers ...", spinner="dots") as status:
            for worker in pool:
                worker.give(waiting.pop(0) if waiting else None)
            while len(results) < len(model_jobs):
                busy = [worker for worker in pool if worker.job is not None]
                ready = set(wait([w.conn for w in busy] + [w.process.sentinel for w in busy]))
                for worker in busy:
                    if worker.conn in ready or worker.process.sentinel in ready:
                        done = worker.read()  # raises WorkerFailed for a failed model or a dead worker
                        if done is not None:
                            results[done[0]] = done[1]
                            worker.give(waiting.pop(0) if waiting else None)
                steps = [f"{w.step} ..." for w in pool if w.job is not None and w.step]
                status.update(" · ".join(steps) or "starting the build workers ...")
    finally:
        _stop(pool)
    return [results[index] for index in range(len(model_jobs))]


@dataclass
class _Worker:
    """One worker process and the model it builds (None: idle)."""

    process: multiprocessing.process.BaseProcess
    conn: Connection
    job: tuple[int, object] | None = None
    step: str | None = None  # the step it reported last
    finished: bool = False  # told to exit

    @classmethod
    def start(cls, context, work: Work) -> _Worker:
        ours, theirs = context.Pipe()
        process = context.Process(target=_worker_main, args=(theirs, work, log_path()), name="build-worker")
        process.start()
        theirs.close()  # only the worker holds its end: its exit is an end of file here
        return cls(process, ours)

    def give(self, job: tuple[int, object] | None) -> None:
        """Build this job next; None: exit."""
        self.job, self.step, self.finished = job, None, job is None
        with contextlib.suppress(OSError):  # it died idle: the next read names the model it was given
            self.conn.send(None if job is None else job[1])

    def read(self) -> tuple[int, object] | None:
        """Handle what the worker sent; (index, result) when its model is built."""
        while True:
            try:
                if not self.conn.poll():
                    if self.process.is_alive():
                        return None
                    raise EOFError
                message = self.conn.recv()
            except (EOFError, OSError):
                self.process.join(timeout=5)
                name = self.job[1].name
                self.job = None
                raise WorkerFailed(died(name, self.step, self.process.exitcode)) from None
            kind, value = message
            if kind == "line":
                if value[0] == "step":
                    self.step = value[1]
                replay(value)
            elif kind == "failed":
                self.job = None
                raise WorkerFailed(value)
            elif kind == "built":
                return self.job[0], value


def _worker_main(conn: Connection, work: Work, log: Path | None) -> None:
    """The worker's side: build each model the parent sends until it sends None."""
    signal.signal(signal.SIGTERM, _stopped)  # the parent stops it: unwind, removing scratch folders
    try:
        forward_lines(log, lambda event: conn.send(("line", event)))
        with ArtifactBuilder() as builder:
            while (job := conn.recv()) is not None:
                conn.send(_build_one(work, job, builder))
    except (KeyboardInterrupt, EOFError, OSError):
        pass  # stopped (Ctrl-C, the parent), or the parent is gone: nothing to say
    finally:
        # exiting: another Ctrl-C or the parent's stop must not break the exit into tracebacks (the
        # parent kills a worker that lingers)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        conn.close()


def _stopped(signum, frame) -> None:
    raise KeyboardInterrupt


def _build_one(work: Work, job, builder: ArtifactBuilder) -> tuple[str, object]:
    """("built", the model's record) or ("failed", the line it fails with: as the CLI would print it)."""
    try:
        return "built", work(job, builder)
    except TritonRepoError as error:
        return "failed", ModelFailed(job.name, str(error), error.exit_code, error.detail)
    except Exception as error:  # noqa: BLE001 - one line to the parent, the traceback to the log
        where = where_failed(error) or f"{job.name}: build"
        log = log_traceback(error, where)
        return "failed", ModelFailed(job.name, unexpected_line(where, error, log), UNEXPECTED)


def _stop(pool: list[_Worker]) -> None:
    """Idle workers exit; busy ones (and every process they started) are stopped, then killed."""
    busy = [worker for worker in pool if worker.job is not None and worker.process.is_alive()]
    for worker in pool:
        if worker.job is None and not worker.finished:
            worker.give(None)
    _signal_trees([w.process.pid for w in busy], signal.SIGTERM)
    deadline = time.monotonic() + STOP_SECONDS
    for worker in pool:
        worker.process.join(timeout=max(0.0, deadline - time.monotonic()))
    _signal_trees([w.process.pid for w in pool if w.process.is_alive()], signal.SIGKILL)
    for worker in pool:
        worker.process.join()
        worker.conn.close()


def _signal_trees(pids: list[int], signum: int) -> None:
    """Send `signum` to each process and every process below it (children first looked up, then sent)."""
    if not pids:
        return
    children: dict[int, list[int]] = {}
    try:
        processes = all_stat_fields()
    except OSError:  # no /proc: the workers alone
        processes = {}
    for pid, fields in processes.items():
        children.setdefault(int(fields[1]), []).append(pid)
    tree, todo = [], list(pids)
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo += children.get(pid, [])
    for pid in tree:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)
