"""CPU time and memory of a local process tree (tritonserver and its python backend stubs), from /proc."""

from __future__ import annotations

import os
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may contain spaces; fields after it are plain.
    return text[text.rindex(")") + 2 :].split()


def tree_cpu_seconds(root: int) -> float | None:
    """User + system CPU seconds of `root` and all its descendants alive now; None if `root` is gone."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat(int(entry.name))
        if fields is None:
            continue
        pid = int(entry.name)
        parents[pid] = int(fields[1])  # ppid
        times[pid] = (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime
    if root not in times:
        return None
    total, stack = 0.0, [root]
    children: dict[int, list[int]] = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    while stack:
        pid = stack.pop()
        total += times.get(pid, 0.0)
        stack.extend(children.get(pid, []))
    return total


def tree_rss_mb(root: int) -> float | None:
    """Resident memory (MB) of `root` and all its descendants alive now; None if `root` is gone."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields is not None:
                parents[int(entry.name)] = int(fields[1])
    if root not in parents:
        return None
    members, stack = [], [root]
    while stack:
        pid = stack.pop()
        members.append(pid)
        stack.extend(child for child, parent in parents.items() if parent == pid)
    total_kb = 0
    for pid in members:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        total_kb += next(
            (int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0
        )
    return total_kb / 1024
