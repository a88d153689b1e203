"""Built artifacts run in a child process of the runtime that will serve them.

A runtime can crash on a graph it accepted (ONNX Runtime CPU segfaults running a ModelOpt FP16 GRU). Run in
the build's own process, that crash killed the build; run in the python backend, it would kill the stub
that serves the model. So every execution of a built artifact goes through an IsolatedSession: a worker
process (worker.py) started with the serving environment's Python, one per artifact, reused for all of that
artifact's runs. A crash or a runtime error becomes an ArtifactRunFailed the caller turns into a refusal.
"""

from __future__ import annotations

import functools
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from triton_repo.core.errors import TritonRepoError
from triton_repo.runtimes import protocol
from triton_repo.runtimes.registry import RUNTIMES

WORKER = Path(__file__).with_name("worker.py")


class ArtifactRunFailed(TritonRepoError):
    """The runtime crashed or raised running an artifact. `reason` is the short part for a refusal line."""

    exit_code = 1

    def __init__(self, message: str, reason: str, crashed: bool) -> None:
        super().__init__(message)
        self.reason = reason  # "crashed (SIGSEGV)" or "failed: <the runtime's message>"
        self.crashed = crashed


@dataclass(frozen=True)
class Runner:
    """How an artifact is run: ONNX Runtime's CPU execution provider, or OpenVINO's CPU plugin at an
    inference precision (bf16 uses AMX / AVX512-BF16 where the CPU has them; OpenVINO falls back to f32
    where it does not)."""

    name: str  # ort | ov-f32 | ov-bf16
    runtime: str  # onnxruntime | openvino
    precision: str = ""  # OpenVINO's INFERENCE_PRECISION_HINT

    @property
    def runtime_name(self) -> str:
        """ONNX Runtime or OpenVINO: how people call the runtime."""
        return RUNTIMES[self.runtime].label

    @property
    def parameters(self) -> dict[str, str]:
        """What the python backend template reads from config.pbtxt to run the model this way."""
        return {
            "runtime": self.runtime,
            **({"inference_precision": self.precision} if self.precision else {}),
        }


# Every runtime's runners, as registry.RUNTIMES lists them; the ones the precision kinds name are below.
RUNNERS = {
    name: Runner(name, entry.name, precision)
    for entry in RUNTIMES.values()
    for name, precision in entry.runners
}
ORT, OV_F32, OV_BF16 = RUNNERS["ort"], RUNNERS["ov-f32"], RUNNERS["ov-bf16"]


@dataclass(frozen=True)
class Runtime:
    """The interpreter whose inference runtimes run artifacts: the serving environment's Python."""

    python: Path

    @property
    def label(self) -> str:
        """'ONNX Runtime 1.32.0' (asks a worker once per interpreter)."""
        return self.label_of(ORT)

    def label_of(self, runner: Runner) -> str:
        """'ONNX Runtime 1.32.0' or 'OpenVINO 2026.4.1 (bf16)'."""
        version = self.versions().get(runner.runtime) or "(not installed)"
        precision = f" ({runner.precision})" if runner.precision else ""
        return f"{runner.runtime_name} {version}{precision}"

    def versions(self) -> dict[str, str | None]:
        return dict(_hello(str(self.python))["versions"])

    def has(self, runner: Runner) -> bool:
        return self.versions().get(runner.runtime) is not None

    def fp16_kernel_ops(self) -> frozenset[str]:
        """Op types the runtime's CPU execution provider can run in float16."""
        return frozenset(_fp16_ops(str(self.python)))


def this_runtime() -> Runtime:
    """The build's own interpreter (used where no serving environment exists, e.g. the runners image)."""
    return Runtime(Path(sys.executable))


def signal_name(returncode: int) -> str:
    if returncode < 0:
        try:
            return signal.Signals(-returncode).name
        except ValueError:
            return f"signal {-returncode}"
    return f"exit code {returncode}"


class IsolatedSession:
    """One artifact loaded in its own worker process; use as a context manager (the worker exits after)."""

    def __init__(self, runtime: Runtime, onnx_path: Path, threads: int = 0, runner: Runner = ORT) -> None:
        self.runtime = runtime
        self.runner = runner
        self.path = Path(onnx_path)
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
        self._process = subprocess.Popen(
            [str(runtime.python), "-u", str(WORKER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
        )
        try:
            header, _ = self._call(
                {
                    "op": "open",
                    "path": str(self.path.resolve()),
                    "threads": threads,
                    "runtime": runner.runtime,
                    "precision": runner.precision,
                }
            )
        except BaseException:
            self.close()
            raise
        self.input_names: list[str] = header["inputs"]
        self.output_names: list[str] = header["outputs"]

    def __enter__(self) -> IsolatedSession:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def run(
        self, inputs: dict[str, np.ndarray], outputs: list[str] | None = None, batch: int = 0
    ) -> dict[str, np.ndarray]:
        """Outputs by name for every row of `inputs`, run `batch` rows at a time (0: all in one run)."""
        names = list(outputs or self.output_names)
        _, arrays = self._call({"op": "run", "outputs": names, "batch": batch}, inputs)
        return arrays

    def store(self, name: str, inputs: dict[str, np.ndarray]) -> None:
        """Keep a feed in the worker, so timed runs send nothing over the pipe."""
        self._call({"op": "store", "name": name}, inputs)

    def time(self, feed: str, runs: int) -> list[float]:
        """One untimed run of a stored feed, then `runs` timed runs: their seconds, timed in the worker."""
        header, _ = self._call({"op": "time", "feed": feed, "runs": runs})
        return header["seconds"]

    def close(self) -> None:
        process = self._process
        if process.poll() is None:
            try:
                protocol.send(process.stdin, {"op": "exit"})
                process.stdin.close()
                process.wait(timeout=30)
            except (OSError, ValueError, subprocess.TimeoutExpired):
                process.kill()
                process.wait()
        self._stderr.close()

    def _call(self, header: dict, arrays: dict[str, np.ndarray] | None = None) -> tuple[dict, dict]:
        process = self._process
        try:
            protocol.send(process.stdin, header, arrays)
            reply, out = protocol.receive(process.stdout)
        except (protocol.ChannelClosed, BrokenPipeError, OSError):
            returncode = process.wait()
            reason = f"crashed ({signal_name(returncode)})"
            raise ArtifactRunFailed(
                f"{self.runtime.label_of(self.runner)} {reason} running {self.path.name}{self._stderr_tail()}",
                reason,
                crashed=True,
            ) from None
        if "error" in reply:
            reason = f"failed: {reply['error']}"
            raise ArtifactRunFailed(
                f"{self.runtime.label_of(self.runner)} {reason} ({self.path.name})", reason, crashed=False
            )
        return reply, out

    def _stderr_tail(self) -> str:
        """The worker's last stderr line, when it printed one (a runtime's abort message)."""
        try:
            self._stderr.seek(0)
            lines = [
                line for line in self._stderr.read().decode(errors="replace").splitlines() if line.strip()
            ]
        except (OSError, ValueError):
            return ""
        return f": {lines[-1].strip()[:200]}" if lines else ""


def _one_shot(python: str, op: str) -> dict:
    """Start a worker, ask it one question without loading a model, stop it."""
    advice = "run `make install` (or set TRITON_REPO_SERVE_ENV to the serving environment)"
    try:
        process = subprocess.Popen(
            [python, "-u", str(WORKER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
    except OSError as error:
        raise TritonRepoError(
            f"{python}: the inference runtime does not start ({error.strerror}); {advice}"
        ) from None
    try:
        protocol.send(process.stdin, {"op": op})
        reply, _ = protocol.receive(process.stdout)
        protocol.send(process.stdin, {"op": "exit"})
    except (protocol.ChannelClosed, OSError):
        process.kill()
        _, stderr = process.communicate()
        last = (stderr.decode(errors="replace").strip().splitlines() or ["no output"])[-1]
        raise TritonRepoError(f"{python}: the inference runtime does not start ({last}); {advice}") from None
    process.communicate(timeout=30)
    if "error" in reply:
        raise TritonRepoError(f"{python}: the artifact worker refused '{op}': {reply['error']}")
    return reply


@functools.cache
def _hello(python: str) -> dict:
    return _one_shot(python, "hello")


@functools.cache
def _fp16_ops(python: str) -> tuple[str, ...]:
    return tuple(_one_shot(python, "fp16_kernels")["op_types"])


def call_in_child(what: str, function, *args):
    """`function(*args)` in a spawned child process of this interpreter; its result or its exception.

    For work that needs the build's own packages (Polygraphy's layer-wise comparison): a runtime crash
    in the child raises ArtifactRunFailed saying `what` crashed and with which signal.
    """
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_child_main, args=(sender, function, args), daemon=True)
    child.start()
    sender.close()
    try:
        status, value = receiver.recv()
    except EOFError:
        child.join()
        reason = f"crashed ({signal_name(child.exitcode)})"
        raise ArtifactRunFailed(f"{this_runtime().label} {reason} {what}", reason, crashed=True) from None
    finally:
        receiver.close()
    child.join()
    if status == "error":
        raise value
    return value


def _child_main(sender, function, args) -> None:
    try:
        result = ("ok", function(*args))
    except Exception as error:  # noqa: BLE001 - handed to the parent, which raises it
        result = ("error", error)
    sender.send(result)
    sender.close()
