"""Linux /proc, read for the local tritonserver's process tree (the bench's CPU accounting, the watchdog)."""

from __future__ import annotations

from pathlib import Path


def stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (so field 3, the state, is [0]); None when
    no such process exists (any more)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may contain spaces; the fields after it are plain.
    return text[text.rindex(")") + 2 :].split()


def all_stat_fields() -> dict[int, list[str]]:
    """stat_fields of every process alive now."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := stat_fields(int(entry.name))) is not None:
            found[int(entry.name)] = fields
    return found
