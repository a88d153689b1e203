"""CPU time and memory of a local process tree (tritonserver and its python backend stubs), from /proc."""

from __future__ import annotations

import os
from pathlib import Path

from triton_repo.core.proc import all_stat_fields

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _tree(root: int) -> dict[int, list[str]] | None:
    """The /proc stat fields of `root` and all its descendants alive now; None if `root` is gone."""
    processes = all_stat_fields()
    if root not in processes:
        return None
    children: dict[int, list[int]] = {}
    for pid, fields in processes.items():
        children.setdefault(int(fields[1]), []).append(pid)  # field 4: ppid
    tree, stack = {}, [root]
    while stack:
        pid = stack.pop()
        tree[pid] = processes[pid]
        stack.extend(children.get(pid, []))
    return tree


def tree_cpu_seconds(root: int) -> float | None:
    """User + system CPU seconds `root` and its descendants have used, those that exited included; None if
    `root` is gone.

    Each process alive counts its own time and that of the children it has reaped (cutime, cstime), so
    the total never shrinks when a process exits: a python backend stub unloaded between two samples
    moves its time into tritonserver's children time instead of taking it out of the sum (which made a
    window's CPU per request negative)."""
    tree = _tree(root)
    if tree is None:
        return None
    # utime, stime, cutime, cstime: fields 14-17 of /proc/<pid>/stat
    return sum(sum(int(value) for value in fields[11:15]) for fields in tree.values()) / _TICKS


def tree_rss_mb(root: int) -> float | None:
    """Resident memory (MB) of `root` and all its descendants alive now; None if `root` is gone."""
    tree = _tree(root)
    if tree is None:
        return None
    total_kb = 0
    for pid in tree:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        total_kb += next(
            (int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0
        )
    return total_kb / 1024
