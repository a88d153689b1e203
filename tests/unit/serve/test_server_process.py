"""How `triton-repo stop` decides the server is gone, on real child processes of this test."""

from __future__ import annotations

import subprocess
import sys
import time

from triton_repo.serve import server


def _wait_for_zombie(pid: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server._zombie(pid):
            return
        time.sleep(0.02)
    raise AssertionError(f"pid {pid} never became a zombie")


def test_an_exited_process_not_yet_reaped_counts_as_gone():
    """A detached server is adopted by another process, which may reap it seconds after it exits;
    stop must not wait for that (it did, about 2 s per stop)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        _wait_for_zombie(child.pid)
        assert server._zombie(child.pid)
    finally:
        child.wait()
    assert not server._zombie(child.pid)  # reaped: no /proc entry


def test_a_running_process_is_alive_and_terminate_ends_it():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        assert server._alive(child.pid) and not server._zombie(child.pid)
        started = time.monotonic()
        server.terminate(child.pid, timeout=10)
        assert time.monotonic() - started < 5
        assert not server._alive(child.pid)
        assert not server._zombie(child.pid)  # our own child: reaped, not left behind
    finally:
        child.kill()
        child.wait()
