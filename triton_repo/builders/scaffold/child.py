"""Probe runs in a spawned child process: ONNX Runtime (CPU, one thread) loads the model once and runs it
at the shapes the parent asks for, filling the inputs itself, so only shapes and summaries cross the pipe.
A crash (SIGSEGV, abort) or a run over the time budget ends the child, not the caller: the run is
recorded as failed and the next run starts a fresh child."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from triton_repo.builders.scaffold.feeds import Feed
from triton_repo.builders.scaffold.record import ValueStats
from triton_repo.core.errors import TritonRepoError

Shapes = dict[str, tuple[int, ...]]


@dataclass(frozen=True)
class RunResult:
    outputs: Shapes | None  # output shapes, None when the run failed
    error: str | None
    seconds: float
    stats: dict[str, ValueStats | None] | None = None  # of every output, when asked for


class ChildRunner:
    """One model in one child process at a time. `before_run(shapes)` is called in the child before each
    run: a test's hook (a module-level function) that crashes the child on purpose."""

    def __init__(
        self,
        path: Path,
        feeds: list[Feed],
        threads: int = 1,
        before_run: Callable[[Shapes], None] | None = None,
    ) -> None:
        self.path, self.feeds, self.threads, self.before_run = path, feeds, threads, before_run
        self.output_names: list[str] = []
        self.load_seconds = 0.0
        self._process = None
        self._connection = None
        self._stderr: Path | None = None

    def start(self, timeout: float) -> None:
        """A fresh child with the model loaded; TritonRepoError when ONNX Runtime cannot load it."""
        context = multiprocessing.get_context("spawn")
        self._connection, child_end = context.Pipe()
        handle, name = tempfile.mkstemp(prefix="triton-repo-probe-", suffix=".stderr")
        os.close(handle)
        self._stderr = Path(name)
        self._process = context.Process(
            target=_child_main,
            args=(child_end, str(self.path), self.threads, self.feeds, self.before_run, name),
            daemon=True,
        )
        started = time.monotonic()
        try:
            self._process.start()
        except BaseException:
            self._process = None
            self.close()
            raise
        finally:
            child_end.close()
        reply = self._receive(timeout)
        self.load_seconds = time.monotonic() - started
        if isinstance(reply, str):
            self.close()
            raise TritonRepoError(
                f"{self.path}: ONNX Runtime {reply.removeprefix('the runtime ')} loading it"
            )
        if reply[0] == "error":
            self.close()
            raise TritonRepoError(f"{self.path}: ONNX Runtime cannot load it: {runtime_reason(reply[1])}")
        self.output_names = reply[1]

    def run(self, shapes: Shapes, timeout: float, stats: bool = False) -> RunResult:
        if self._process is None:
            self.start(max(timeout, 30.0))
        started = time.monotonic()
        self._connection.send((shapes, stats))
        reply = self._receive(timeout)
        if isinstance(reply, str):
            return RunResult(None, reply, time.monotonic() - started)
        if reply[0] == "error":
            return RunResult(None, runtime_reason(reply[1]), reply[2])
        _, outputs, seconds, found = reply
        return RunResult(outputs, None, seconds, found)

    def close(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            with contextlib.suppress(OSError, ValueError):
                self._connection.send(None)
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
                process.join()
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        if self._stderr is not None:
            self._stderr.unlink(missing_ok=True)
            self._stderr = None

    def _receive(self, timeout: float):
        """The child's reply; or, when it died or took longer than `timeout`, why (a str) after ending it."""
        try:
            answered = self._connection.poll(timeout)
            if answered:
                return self._connection.recv()
        except (EOFError, OSError):
            answered = True  # the child ended without a reply
        if not answered:
            self._process.kill()
            self._process.join()
            self.close()
            return f"stopped after {timeout:.0f} s (over the probe's time budget)"
        self._process.join(timeout=10)
        from triton_repo.runtimes.isolated import signal_name

        code = self._process.exitcode
        how = signal_name(code) if code is not None else "no exit code"
        last = _last_line(self._stderr)
        self.close()
        return f"the runtime crashed ({how})" + (f": {last}" if last else "")


def runtime_reason(message: str) -> str:
    """ONNX Runtime's refusal in one short line: the node and the message, without the source location."""
    text = " ".join(message.split())
    text = re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ", "", text)
    text = re.sub(
        r"Non-zero status code returned while running (\w+) node\. Name:'([^']*)' Status Message: ",
        lambda m: f"{m[1]} node{f' {m[2]!r}' if m[2] else ''}: ",
        text,
    )
    text = re.sub(r"/onnxruntime_src/\S+:\d+ ", "", text)
    if " was false. " in text:  # ORT_ENFORCE: the C++ function and condition, then the message
        head, message = text.split(" was false. ", 1)
        node = re.match(r"\w+ node(?: '[^']*')?: ", head)
        text = (node[0] if node else "") + message
    text = text.replace(" Please fix either the inputs/outputs or the model.", "")
    return text if len(text) <= 200 else text[:197] + "..."


def _last_line(path: Path | None) -> str:
    try:
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except (OSError, AttributeError):
        return ""
    return lines[-1][:160] if lines else ""


# --- in the child ------------------------------------------------------------------------------------------


def _child_main(connection, path: str, threads: int, feeds: list[Feed], before_run, stderr: str) -> None:
    descriptor = os.open(stderr, os.O_WRONLY | os.O_APPEND)
    os.dup2(descriptor, 2)  # a runtime's abort message goes to the file the parent reads, not the terminal
    try:
        from triton_repo.runtimes.onnxruntime_cpu import cpu_session

        session = cpu_session(path, threads)
    except Exception as error:  # noqa: BLE001 - handed to the parent, which refuses the file
        connection.send(("error", f"{type(error).__name__}: {error}"))
        return
    names = [o.name for o in session.get_outputs()]
    connection.send(("ready", names))
    while True:
        try:
            request = connection.recv()
        except (EOFError, OSError):
            return
        if request is None:
            return
        shapes, want_stats = request
        feed = {f.name: _filled(f, shapes[f.name]) for f in feeds}
        if before_run is not None:
            before_run(shapes)
        started = time.perf_counter()
        try:
            arrays = session.run(names, feed)
        except Exception as error:  # noqa: BLE001 - a refusal is what the probe learns from
            connection.send(("error", str(error), time.perf_counter() - started))
            continue
        seconds = time.perf_counter() - started
        outputs = {name: tuple(int(d) for d in a.shape) for name, a in zip(names, arrays, strict=True)}
        found = {n: value_stats(a) for n, a in zip(names, arrays, strict=True)} if want_stats else None
        connection.send(("ok", outputs, seconds, found))


def _filled(feed: Feed, shape: tuple[int, ...]) -> np.ndarray:
    rng = np.random.default_rng(0)
    if feed.fill == "text":
        return np.full(shape, "probe", dtype=object)
    dtype = np.dtype(feed.dtype)
    fills = {
        "uniform": lambda: rng.random(shape),
        "normal": lambda: rng.standard_normal(shape),
        "pixels": lambda: rng.integers(0, 256, shape),
        "tokens": lambda: rng.integers(1, int(feed.value or 99) + 1, shape),
        "small": lambda: rng.integers(0, 10, shape),
        "ones": lambda: np.ones(shape),
        "zeros": lambda: np.zeros(shape),
        "value": lambda: np.full(shape, feed.value),
        "positions": lambda: np.broadcast_to(np.arange(shape[-1] if shape else 1), shape),
    }
    return np.ascontiguousarray(fills[feed.fill]()).astype(dtype)


def value_stats(array: np.ndarray) -> ValueStats | None:
    """What an output's values look like: range, mean, whole numbers, rows that sum to 1 or have norm 1."""
    if array.size == 0 or array.dtype.kind not in "biuf":
        return None
    values = array.astype(np.float64)
    with np.errstate(all="ignore"):
        integer = bool(np.all(values == np.round(values)))
        rows = array.dtype.kind == "f" and array.ndim >= 1 and array.shape[-1] > 1
        sums, norms = values.sum(axis=-1), np.sqrt((values * values).sum(axis=-1))
        return ValueStats(
            minimum=float(values.min()),
            maximum=float(values.max()),
            mean=float(values.mean()),
            integer=integer,
            rows_sum_to_one=bool(rows and values.min() >= 0 and np.allclose(sums, 1.0, atol=1e-3)),
            rows_unit_norm=bool(rows and np.allclose(norms, 1.0, atol=1e-3)),
        )
