"""The stub watchdog's /proc reading and decisions, on real child processes of this test.

A "stub" here is a real Python process started under the name triton_python_backend_stub with the
python backend's argument layout (<repo>/<model>/<version>/model.py first); this test process plays
the server, its parent. The repository index and the reload are plain callables: what Triton answers
is exercised by tests/integration/test_faults.py.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from triton_repo.core.errors import ServerError
from triton_repo.core.locks import repository_lock
from triton_repo.serve import watchdog

OBSERVED_COMMAND = [  # /proc/<stub>/cmdline of a tiny_fp32 stub of the real tritonserver 2.51
    "/venv/lib/python3.11/site-packages/pytriton/tritonserver/backends/python/triton_python_backend_stub",
    "/tmp/t/model_repository/tiny_fp32/1/model.py",
    "triton_python_backend_shm_region_9591cc61-8934-4414-a66b-ea53e9c79389",
    "1048576",
    "1048576",
    "14499",
    "/venv/lib/python3.11/site-packages/pytriton/tritonserver/backends/python",
    "336",
    "tiny_fp32_0_0",
    "DEFAULT",
]


def wait_for_state(pid: int, state: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stat = watchdog.proc_stat(pid)
        if stat is not None and stat.state == state:
            return
        time.sleep(0.01)
    raise AssertionError(f"pid {pid} never reached state {state}")


@pytest.fixture
def repository(tmp_path) -> Path:
    version_dir = tmp_path / "model_repository" / "tiny_fp32" / "1"
    version_dir.mkdir(parents=True)
    (version_dir / "model.py").write_text("import time\ntime.sleep(60)\n")
    return tmp_path / "model_repository"


@pytest.fixture
def spawn_stub(repository, tmp_path):
    """Start stub-shaped children of this process; kill and reap whatever is left at the end."""
    link = tmp_path / "bin" / watchdog.STUB_BINARY
    link.parent.mkdir()
    link.symlink_to(sys.executable)
    started: list[subprocess.Popen] = []

    def spawn() -> subprocess.Popen:
        model_py = repository / "tiny_fp32" / "1" / "model.py"
        argv = [
            str(link),
            str(model_py),
            "shm",
            "1048576",
            "1048576",
            str(os.getpid()),
            "x",
            "1",
            "tiny_fp32_0_0",
        ]
        process = subprocess.Popen(argv)
        started.append(process)
        deadline = time.monotonic() + 10
        while watchdog.read_stub(process.pid) is None:  # until the exec'd command line is visible
            assert time.monotonic() < deadline, "the stub-shaped child never started"
            time.sleep(0.01)
        return process

    yield spawn
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_watchdog(repository: Path, reloads: list[str], ready=None, fail: bool = False, clock=None):
    def reload(model: str) -> None:
        reloads.append(model)
        if fail:
            raise ServerError(f"could not load '{model}': no")

    return watchdog.Watchdog(
        server_pid=os.getpid(),
        repository=repository,
        log=io.StringIO(),
        reload=reload,
        clock=clock or Clock(),
        index=lambda: {"tiny_fp32": {"1"}} if ready is None else ready,
    )


def kill_to_zombie(process: subprocess.Popen) -> None:
    """SIGKILL without reaping: the process stays a zombie child, as a killed stub does under Triton."""
    os.kill(process.pid, signal.SIGKILL)
    wait_for_state(process.pid, "Z")


def test_parse_stub_command_reads_model_version_and_instance_from_the_backend_command_line():
    stub = watchdog.parse_stub_command(42, OBSERVED_COMMAND)
    assert stub == watchdog.Stub(
        42, "tiny_fp32", "1", "tiny_fp32_0_0", Path("/tmp/t/model_repository/tiny_fp32/1")
    )


@pytest.mark.parametrize(
    "argv",
    [[], ["/usr/bin/python3", "/tmp/r/m/1/model.py"], [OBSERVED_COMMAND[0]]],
    ids=["zombie-empty", "other-binary", "no-model-path"],
)
def test_parse_stub_command_rejects_other_command_lines(argv):
    assert watchdog.parse_stub_command(1, argv) is None


def test_proc_stat_and_children_see_a_real_zombie_child():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        wait_for_state(process.pid, "Z")
        assert process.pid in watchdog.children(os.getpid())
        stat = watchdog.proc_stat(process.pid)
        assert stat is not None and stat.ppid == os.getpid()
        assert watchdog.read_stub(process.pid) is None  # a zombie has no command line any more
    finally:
        process.wait()
    assert watchdog.proc_stat(process.pid) is None
    assert process.pid not in watchdog.children(os.getpid())


def test_server_alive_is_false_for_a_zombie_and_for_a_reused_pid():
    me = watchdog.proc_stat(os.getpid())
    assert watchdog.server_alive(os.getpid(), me.start_ticks)
    assert not watchdog.server_alive(os.getpid(), me.start_ticks + 1)
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    start = watchdog.proc_stat(process.pid).start_ticks
    wait_for_state(process.pid, "Z")
    assert not watchdog.server_alive(process.pid, start)
    process.wait()


def test_a_killed_stub_is_reloaded_once_after_its_zombie_is_seen_twice(repository, spawn_stub):
    stub = spawn_stub()
    version_dir = repository / "tiny_fp32" / "1"
    os.utime(version_dir, (1, 1))
    reloads: list[str] = []
    dog = make_watchdog(repository, reloads)
    assert dog.poll() == [] and stub.pid in dog.known
    kill_to_zombie(stub)
    assert dog.poll() == []  # one sighting could be a stop the backend is about to reap
    assert dog.poll() == ["tiny_fp32"]
    assert reloads == ["tiny_fp32"]
    assert version_dir.stat().st_mtime > 1  # touched, so Triton does not skip the load as unchanged
    assert f"model=tiny_fp32 version=1 stub_pid={stub.pid}" in dog.log.getvalue()
    assert "reload=ok" in dog.log.getvalue()
    dog.clock.now += 60
    assert dog.poll() == [] and reloads == ["tiny_fp32"]  # the same dead stub is handled once
    stub.wait()  # the reload's teardown reaps it
    dog.poll()
    assert stub.pid not in dog.known


def test_a_stub_stopped_and_reaped_by_its_parent_is_not_reloaded(repository, spawn_stub):
    stub = spawn_stub()
    reloads: list[str] = []
    dog = make_watchdog(repository, reloads)
    dog.poll()
    stub.terminate()
    stub.wait()  # what the backend does on unload or reload: it waits for its stub at once
    for _ in range(3):
        assert dog.poll() == []
    assert reloads == [] and dog.known == {} and dog.log.getvalue() == ""


def test_no_reload_while_a_build_holds_the_publish_lock(repository, spawn_stub):
    stub = spawn_stub()
    reloads: list[str] = []
    dog = make_watchdog(repository, reloads)
    dog.poll()
    kill_to_zombie(stub)
    with repository_lock(repository):
        assert watchdog.publish_in_progress(repository)
        for _ in range(3):
            assert dog.poll() == []
    assert not watchdog.publish_in_progress(repository)
    assert "not reloaded: a build or rollback is publishing" in dog.log.getvalue()
    assert dog.poll() == ["tiny_fp32"]  # the publish ended and the stub is still dead


def test_publish_in_progress_is_false_without_a_lock_file(tmp_path):
    assert not watchdog.publish_in_progress(tmp_path / "never_built")


def test_no_reload_when_the_stub_version_is_not_loaded(repository, spawn_stub):
    stub = spawn_stub()
    reloads: list[str] = []
    dog = make_watchdog(repository, reloads, ready={"tiny_fp32": {"2"}})
    dog.poll()
    kill_to_zombie(stub)
    for _ in range(3):
        assert dog.poll() == []
    assert reloads == []
    assert dog.log.getvalue().count("version 1 is not loaded") == 1  # logged once, not every poll


def test_a_failed_reload_is_retried_only_after_the_cooldown(repository, spawn_stub):
    stub = spawn_stub()
    reloads: list[str] = []
    clock = Clock()
    dog = make_watchdog(repository, reloads, fail=True, clock=clock)
    dog.poll()
    kill_to_zombie(stub)
    dog.poll()
    dog.poll()
    assert reloads == ["tiny_fp32"] and "reload=failed" in dog.log.getvalue()
    clock.now += watchdog.COOLDOWN_S - 1
    dog.poll()
    assert reloads == ["tiny_fp32"]
    clock.now += 2
    dog.poll()
    assert reloads == ["tiny_fp32", "tiny_fp32"]


def test_skip_reason_orders_the_checks():
    stub = watchdog.parse_stub_command(7, OBSERVED_COMMAND)
    ready = {"tiny_fp32": {"1"}}
    assert watchdog.skip_reason(stub, 2, ready, False, None, 0.0) is None
    assert watchdog.skip_reason(stub, 1, ready, False, None, 0.0) == "zombie not yet confirmed"
    assert "publishing" in watchdog.skip_reason(stub, 2, ready, True, None, 0.0)
    assert "did not answer" in watchdog.skip_reason(stub, 2, None, False, None, 0.0)
    assert "less than" in watchdog.skip_reason(stub, 2, ready, False, 10.0, 11.0)
    assert watchdog.skip_reason(stub, 2, ready, False, 10.0, 10.0 + watchdog.COOLDOWN_S) is None
