"""CPU time and memory of a local process tree (tritonserver and its python backend stubs), from /proc."""

from __future__ import annotations

import os
from pathlib import Path

from triton_repo.proc import all_stat_fields

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
    """User + system CPU seconds of `root` and all its descendants alive now; None if `root` is gone."""
    tree = _tree(root)
    if tree is None:
        return None
    return sum(int(fields[11]) + int(fields[12]) for fields in tree.values()) / _TICKS  # utime, stime


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
