"""Faults against the real tritonserver: an overloaded queue, and a python backend stub killed under load.

Measured numbers are printed (run with `-s`) and attached to the test report as user properties, for
the reliability issue's note.
"""

from __future__ import annotations

import os
import signal
import textwrap
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from tests.integration.conftest import Served, build_all, run_cli, serve, write_tiny_model
from triton_repo.clients.triton_client import RetryPolicy, TritonClient, status_code
from triton_repo.serve.model_control import ModelControl
from triton_repo.serve.server import load_state

# A one-instance model slow enough (about 5 ms per row, 20 ms per batch of 8 on one ONNX Runtime thread)
# that 32 closed-loop clients overflow a queue of 8. One shared 1024x1024 layer applied 64 times keeps
# the artifact small (4 MB) and the build quick.
HEAVY_MODEL_PY = textwrap.dedent(
    """
    import numpy as np
    import torch
    from torch import nn


    class Heavy(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.layer = nn.Linear(1024, 1024)

        def forward(self, x):
            for _ in range(64):
                x = torch.tanh(self.layer(x))
            return x


    def build():
        return Heavy().eval()


    def sample():
        return {"x": np.random.default_rng(0).standard_normal((4, 1024)).astype(np.float32)}
    """
)

HEAVY_SPEC = textwrap.dedent(
    """
    name: heavy
    source: {factory: "model:build"}
    axes:
      batch: {min: 1, opt: 4, max: 16}
    inputs:
      - {name: x, dtype: float32, dims: [batch, 1024]}
    outputs:
      - {name: y, dtype: float32, dims: [batch, 1024], tolerance: {atol: 1.0e-4, rtol: 1.0e-3}}
    data: {sample: "model:sample"}
    triton:
      dynamic_batching: {max_queue_delay_microseconds: 0, max_queue_size: 8}
      instance_count: 1
      intra_op_threads: 1
    """
)

OVERLOAD_CLIENTS = 32  # closed loop; 8 queued + one batch executing leaves most of them rejected
OVERLOAD_SECONDS = 3.0
STEADY_CLIENTS = 4
POLL_S = 0.05
RECOVERY_BOUND_S = 1.0  # the bound after an overload
STUB_RECOVERY_BOUND_S = 5.0  # the bound after a killed stub
POLL_WATCHDOG_S = 0.5  # triton_repo.serve.watchdog.POLL_S
# A request to a dead stub fails after the python backend's 1 s health-mutex timeout, and the batcher
# folds the requests queued meanwhile into that failing execution: each closed-loop client gets at most
# about one failure per second while the stub is dead. The watchdog ends that within 2 polls (a zombie
# is confirmed on its second sighting) plus one reload (0.2-0.5 s), about 1.5 s; at most one failure
# per client per second for the whole 5 s recovery bound is the most that still means "bounded".
MAX_FAILURES_AFTER_KILL = int(STUB_RECOVERY_BOUND_S) * STEADY_CLIENTS


@pytest.fixture(scope="module")
def fault_served(tmp_path_factory):
    """heavy_fp32 (one instance, queue of 8) and tiny_fp32, built by `triton-repo build`, served."""
    base = tmp_path_factory.mktemp("faults")
    models = base / "models"
    write_tiny_model(models, "heavy", model_py=HEAVY_MODEL_PY, spec=HEAVY_SPEC)
    write_tiny_model(models)
    repository, work_dir = base / "model_repository", base / "build"
    build_all(models, repository, work_dir)
    # After a killed stub Triton waits its whole exit timeout for the dead instance: 3 s here, not 30.
    served = serve(repository, work_dir, extra=("--exit-timeout", "3"))
    yield served
    state = load_state(work_dir / "server")
    watchdogs = [
        pid for pid in map(int, filter(str.isdigit, os.listdir("/proc"))) if _is_watchdog(pid, state.pid)
    ]
    started = time.monotonic()
    run_cli("stop", "--work-dir", str(work_dir))
    print(f"\nmeasured: stop_s={time.monotonic() - started:.1f}")
    assert watchdogs and not any(_is_watchdog(pid, state.pid) for pid in watchdogs), (
        "the watchdog outlived stop"
    )


def url(served: Served, protocol: str) -> str:
    return f"127.0.0.1:{served.grpc_port if protocol == 'grpc' else served.http_port}"


@dataclass
class Outcome:
    """What one request got: when it was sent and answered, and its status ("ok" when it succeeded)."""

    sent: float
    answered: float
    protocol: str
    status: str
    message: str = ""


@dataclass
class Load:
    """Closed-loop clients (alternately gRPC and HTTP, no retries) sending one request until stopped."""

    served: Served
    model: str
    inputs: dict[str, np.ndarray]
    outputs: list[str]
    clients: int
    pause_after_error_s: float = 0.0
    outcomes: list[Outcome] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(i,)) for i in range(self.clients)]

    def _run(self, index: int) -> None:
        protocol = "grpc" if index % 2 == 0 else "http"
        client = TritonClient(
            protocol, url(self.served, protocol), timeout_s=30, retry=RetryPolicy(attempts=1)
        )
        try:
            while not self._stop.is_set():
                sent = time.monotonic()
                try:
                    client.infer(self.model, self.inputs, self.outputs)
                    outcome = Outcome(sent, time.monotonic(), protocol, "ok")
                except Exception as error:  # noqa: BLE001 - both clients raise their own exception types
                    outcome = Outcome(sent, time.monotonic(), protocol, status_code(error), str(error))
                with self._lock:
                    self.outcomes.append(outcome)
                if outcome.status != "ok" and self.pause_after_error_s:
                    time.sleep(self.pause_after_error_s)
        finally:
            client.close()

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> float:
        """Stop sending and wait for every request in flight; returns when the last one was answered."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)
        assert not any(thread.is_alive() for thread in self._threads), "a load client hung"
        return time.monotonic()

    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status != "ok"]


def health(served: Served, what: str) -> int | str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{served.http_port}/v2/health/{what}", timeout=2) as r:
            return r.status
    except Exception as error:  # noqa: BLE001 - any failure to answer is recorded, not raised
        return repr(error)


def first_success(client: TritonClient, model: str, inputs, outputs, since: float, limit_s: float) -> float:
    """Seconds from `since` until one request succeeds, polling every POLL_S; inf if none within limit_s."""
    while time.monotonic() - since <= limit_s:
        try:
            client.infer(model, inputs, outputs)
            return time.monotonic() - since
        except Exception:  # noqa: BLE001 - expected while the server recovers
            time.sleep(POLL_S)
    return float("inf")


def report(record_property, **numbers) -> None:
    for name, value in numbers.items():
        record_property(name, value)
    print("\nmeasured: " + ", ".join(f"{k}={v}" for k, v in numbers.items()))


def test_overloaded_queue_rejects_with_unavailable_and_recovers_within_1_s(fault_served, record_property):
    rows = np.random.default_rng(0).standard_normal((1, 1024)).astype(np.float32)
    load = Load(fault_served, "heavy_fp32", {"x": rows}, ["y"], OVERLOAD_CLIENTS)
    probes: list[tuple[str, int | str]] = []
    answered: list[float] = []  # when each round of probes came back
    watching = threading.Event()

    def watch_health() -> None:
        while not watching.is_set():
            probes.extend((what, health(fault_served, what)) for what in ("live", "ready"))
            answered.append(time.monotonic())
            time.sleep(0.1)

    watcher = threading.Thread(target=watch_health)
    load.start()
    overload_started = time.monotonic()
    watcher.start()
    time.sleep(OVERLOAD_SECONDS)
    stop_signal = time.monotonic()
    drained = load.stop()  # the requests still queued at the stop are answered (or rejected) by now
    watching.set()
    watcher.join()

    probe = TritonClient("grpc", url(fault_served, "grpc"), retry=RetryPolicy(attempts=1))
    recovery_s = first_success(probe, "heavy_fp32", {"x": rows}, ["y"], since=drained, limit_s=5.0)
    probe.close()

    failures = load.failures()
    statuses = Counter(f"{f.protocol} {f.status}" for f in failures)
    report(
        record_property,
        overload_requests=len(load.outcomes),
        overload_succeeded=len(load.outcomes) - len(failures),
        overload_rejected=len(failures),
        overload_statuses=dict(statuses),
        overload_drain_s=round(drained - stop_signal, 3),
        overload_recovery_s=round(recovery_s, 3),
        health_probes=len(probes),
    )
    assert failures, "nothing was rejected: the load did not overflow the queue, so this proves nothing"
    assert len(load.outcomes) > len(failures), "no request succeeded during the overload"
    # Every rejection is the queue's: UNAVAILABLE over gRPC, 503 over HTTP, with Triton's reason.
    assert set(statuses) <= {"grpc UNAVAILABLE", "http 503"}, statuses
    assert all("Exceeds maximum queue size" in f.message for f in failures), {f.message for f in failures}
    # The server stayed live and ready throughout: health answered in every second of the overload (a
    # Kubernetes probe's default timeout is 1 s), and always 200.
    seconds = {int(t - overload_started) for t in answered if t < stop_signal}
    assert seconds >= set(range(int(OVERLOAD_SECONDS))), (seconds, len(probes))
    assert all(status == 200 for _, status in probes), [p for p in probes if p[1] != 200]
    assert recovery_s <= RECOVERY_BOUND_S, f"first success {recovery_s:.3f} s after the load stopped"


def stub_pids(server_pid: int, model: str) -> list[int]:
    """The python backend stubs (children of tritonserver) serving `model`, from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        parent = int(stat[stat.rindex(")") + 2 :].split()[1])
        if parent == server_pid and "triton_python_backend_stub" in command and f"/{model}/" in command:
            found.append(int(entry.name))
    return found


def kill_stub(served: Served, model: str) -> float:
    """SIGKILL the model's one stub; returns the time of the kill."""
    state = load_state(served.work_dir / "server")
    assert state is not None, "server.json is missing"
    (pid,) = stub_pids(state.pid, model)
    os.kill(pid, signal.SIGKILL)
    return time.monotonic()


TINY_INPUTS = {
    "ids": np.arange(12, dtype=np.int64).reshape(2, 6) % 50,
    "features": np.ones((2, 4), dtype=np.float32),
}
TINY_OUTPUTS = ["pooled", "scores"]
STUB_DEAD = "Stub process 'tiny_fp32_0_0' is not healthy"  # Triton's message, ends in "." on the wire
WATCHDOG_LOG = "watchdog.log"


def watchdog_log(served: Served) -> str:
    path = served.work_dir / "server" / WATCHDOG_LOG
    return path.read_text() if path.is_file() else ""


def steady_load(served: Served) -> Load:
    load = Load(served, "tiny_fp32", TINY_INPUTS, TINY_OUTPUTS, STEADY_CLIENTS, pause_after_error_s=POLL_S)
    load.start()
    time.sleep(1.0)
    return load


def test_serve_runs_the_stub_watchdog_in_the_server_process_group(fault_served):
    state = load_state(fault_served.work_dir / "server")
    watchdogs = [
        pid for pid in map(int, filter(str.isdigit, os.listdir("/proc"))) if _is_watchdog(pid, state.pid)
    ]
    assert len(watchdogs) == 1, watchdogs
    assert os.getpgid(watchdogs[0]) == state.pid  # so `triton-repo stop` (killpg) ends it with the server
    assert f"tritonserver pid {state.pid}" in watchdog_log(fault_served)


def _is_watchdog(pid: int, server_pid: int) -> bool:
    command = _cmdline(pid)
    return b"triton_repo.serve.watchdog" in command and f"--server-pid={server_pid}".encode() in command


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def test_killed_stub_fails_requests_clearly_and_the_watchdog_recovers_within_5_s(
    fault_served, record_property
):
    """Triton 2.51 never restarts a killed stub; the watchdog `triton-repo serve` runs reloads the model."""
    state = load_state(fault_served.work_dir / "server")
    log_before = watchdog_log(fault_served)
    load = steady_load(fault_served)
    (stub,) = stub_pids(state.pid, "tiny_fp32")
    killed = kill_stub(fault_served, "tiny_fp32")
    live_during = health(fault_served, "live")
    while not any(o.sent > killed and o.status == "ok" for o in load.outcomes):
        if time.monotonic() - killed > 2 * STUB_RECOVERY_BOUND_S:
            break
        time.sleep(POLL_S)
    load.stop()

    after_kill = [o for o in load.outcomes if o.answered > killed]
    failures = [o for o in after_kill if o.status != "ok"]
    recovered = [o.answered - killed for o in after_kill if o.status == "ok" and o.sent > killed]
    recovered_s = min(recovered, default=float("inf"))
    new_log = watchdog_log(fault_served)[len(log_before) :]
    report(
        record_property,
        kill_failures=len(failures),
        kill_statuses=dict(Counter(f"{f.protocol} {f.status}" for f in failures)),
        kill_recovery_s=round(recovered_s, 3),
        watchdog_log=new_log.strip(),
    )
    assert failures, "no request failed after the kill: the stub was not the one serving"
    assert len(failures) <= MAX_FAILURES_AFTER_KILL, len(failures)
    # Every failure says what happened: INTERNAL over gRPC, 500 over HTTP, naming the dead stub.
    assert {f"{f.protocol} {f.status}" for f in failures} <= {"grpc INTERNAL", "http 500"}
    assert all(STUB_DEAD in f.message for f in failures), {f.message for f in failures}
    assert live_during == 200
    assert recovered_s <= STUB_RECOVERY_BOUND_S, f"first success {recovered_s:.3f} s after the kill"
    assert f"model=tiny_fp32 version=1 stub_pid={stub} " in new_log and "reload=ok" in new_log, new_log
    assert new_log.count("reload=") == 1, new_log  # one reload, no storm
    (new_stub,) = stub_pids(state.pid, "tiny_fp32")
    assert new_stub != stub


def test_watchdog_leaves_a_legitimate_reload_alone(fault_served, record_property):
    """A reload through model control (what a build or rollback does) stops the old stub normally: the
    backend reaps it, requests keep succeeding, and the watchdog does not reload on top of it."""
    state = load_state(fault_served.work_dir / "server")
    log_before = watchdog_log(fault_served)
    load = steady_load(fault_served)
    (stub,) = stub_pids(state.pid, "tiny_fp32")
    os.utime(fault_served.repository / "tiny_fp32" / "1")  # else Triton skips the load as unchanged
    ModelControl(f"http://127.0.0.1:{fault_served.http_port}").load("tiny_fp32")
    reloaded = time.monotonic()
    time.sleep(4 * POLL_WATCHDOG_S)  # long enough for the watchdog to confirm a zombie, were there one
    load.stop()
    (new_stub,) = stub_pids(state.pid, "tiny_fp32")
    new_log = watchdog_log(fault_served)[len(log_before) :]
    after = [o for o in load.outcomes if o.sent > reloaded]
    report(
        record_property, legit_reload_requests=len(load.outcomes), legit_reload_failures=len(load.failures())
    )
    assert new_stub != stub, "the load did not start a new stub, so this proves nothing"
    assert not load.failures(), {f.message for f in load.failures()}
    assert after, "no request was sent after the reload"
    assert new_log == "", new_log
