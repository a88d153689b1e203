"""CPU time of a local process tree, read from /proc (the load generator's and the server's cost)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from triton_repo.clients.bench.cpu import tree_cpu_seconds

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="needs Linux /proc")

# A child that renames itself (a command name with spaces and parentheses, as /proc/<pid>/stat shows it),
# burns 0.3 s of CPU, says so, and waits to be killed.
CHILD = """
import sys, time
open("/proc/self/comm", "w").write("bench (x) y")
start = time.process_time()
while time.process_time() - start < 0.3:
    pass
print("ready", flush=True)
time.sleep(60)
"""


@pytest.fixture
def busy_child():
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        yield child
    finally:
        child.kill()
        child.wait()


def own_cpu_seconds() -> float:
    """This process alone, from /proc (not from time.process_time, so both sides use the same clock ticks)."""
    fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_tree_cpu_seconds_grows_after_this_process_keeps_the_cpu_busy():
    before = tree_cpu_seconds(os.getpid())
    start = time.process_time()
    while time.process_time() - start < 0.2:
        pass
    after = tree_cpu_seconds(os.getpid())
    assert before is not None and after is not None
    assert after > before


def test_tree_cpu_seconds_of_a_pid_that_does_not_exist_is_none():
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    assert tree_cpu_seconds(pid_max + 1) is None


def test_tree_cpu_seconds_reads_a_process_whose_name_has_spaces_and_parentheses(busy_child):
    assert Path(f"/proc/{busy_child.pid}/comm").read_text().strip() == "bench (x) y"
    seconds = tree_cpu_seconds(busy_child.pid)
    assert seconds is not None
    assert 0.2 <= seconds < 30


def test_tree_cpu_seconds_includes_the_children_of_the_root(busy_child):
    child = tree_cpu_seconds(busy_child.pid)
    own = own_cpu_seconds()
    tree = tree_cpu_seconds(os.getpid())
    assert child is not None and tree is not None
    assert tree >= own + child - 0.011  # /proc counts in clock ticks of 0.01 s; sums of them round


def test_tree_cpu_seconds_keeps_the_time_of_a_child_that_exited():
    """A process that exits between two samples (a stub unloaded mid-measurement) must not take its CPU
    time out of the tree's total: the total keeps growing by what the child used."""
    before = tree_cpu_seconds(os.getpid())
    burn = "import time\nstart = time.process_time()\nwhile time.process_time() - start < 0.3:\n    pass"
    subprocess.run([sys.executable, "-c", burn], check=True)  # runs, exits and is reaped
    after = tree_cpu_seconds(os.getpid())
    assert before is not None and after is not None
    assert after - before >= 0.25
