"""Reload a model whose python backend stub died: Triton 2.51 never restarts a killed stub by itself.

A killed stub stays a zombie child of tritonserver and every request to its model fails with INTERNAL
"Stub process '<instance>' is not healthy." while the model still reports READY. A stub the backend
stops itself (an unload, or a reload by a build or a rollback) is waited for at once and never shows as
a zombie, so a zombie is the sign of a death nobody asked for. `triton-repo serve` runs this module as
its own process in the server's process group (`triton-repo stop` ends both); it exits with the server.

The reload touches the stub's version directory first: Triton skips the load of a model whose files it
sees unchanged, and the mtime of the version directory is what it compares.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from triton_repo.core.errors import ServerError
from triton_repo.core.locks import repository_lock_path
from triton_repo.core.proc import all_stat_fields, stat_fields

STUB_BINARY = "triton_python_backend_stub"
POLL_S = 0.5
COOLDOWN_S = 5.0  # at most one reload per model in this many seconds
ZOMBIE_POLLS = 2  # a zombie seen on this many polls in a row is a dead stub, not a stop being reaped


@dataclass(frozen=True)
class ProcStat:
    """The fields of /proc/<pid>/stat the watchdog needs."""

    state: str  # R, S, D, Z, ...
    ppid: int
    start_ticks: int  # start time since boot: with the pid, it names one process (pids are reused)


def proc_stat(pid: int) -> ProcStat | None:
    """/proc/<pid>/stat, or None when no such process exists (any more)."""
    fields = stat_fields(pid)
    return None if fields is None else _proc_stat(fields)


def _proc_stat(fields: list[str]) -> ProcStat:
    return ProcStat(state=fields[0], ppid=int(fields[1]), start_ticks=int(fields[19]))


def children(parent: int) -> dict[int, ProcStat]:
    """Every process whose parent is `parent`, with its stat."""
    return {pid: _proc_stat(fields) for pid, fields in all_stat_fields().items() if int(fields[1]) == parent}


@dataclass(frozen=True)
class Stub:
    """A python backend stub: the model instance it runs, from its command line."""

    pid: int
    model: str
    version: str
    instance: str
    version_dir: Path


def parse_stub_command(pid: int, argv: list[str]) -> Stub | None:
    """The stub behind a command line `triton_python_backend_stub <repo>/<model>/<version>/model.py ...
    <instance name> ...`, or None for any other command (a zombie's command line is empty)."""
    if len(argv) < 2 or Path(argv[0]).name != STUB_BINARY:
        return None
    model_py = Path(argv[1])
    version_dir = model_py.parent
    instance = argv[8] if len(argv) > 8 else ""
    return Stub(pid, version_dir.parent.name, version_dir.name, instance, version_dir)


def read_stub(pid: int) -> Stub | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return parse_stub_command(pid, [part.decode(errors="replace") for part in raw.split(b"\0") if part])


def publish_in_progress(repository: Path) -> bool:
    """Whether a process holds the repository's publish lock, read from /proc/locks (never taking it,
    so a build starting now does not fail because of the watchdog)."""
    try:
        info = os.stat(repository_lock_path(repository))
        locks = Path("/proc/locks").read_text()
    except OSError:
        return False
    device = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"
    return any(line.split()[5:6] == [device] for line in locks.splitlines() if " FLOCK " in line)


def skip_reason(
    stub: Stub,
    zombie_polls: int,
    ready: dict[str, set[str]] | None,
    publishing: bool,
    last_reload: float | None,
    now: float,
) -> str | None:
    """Why a dead stub's model must not be reloaded now, or None to reload it."""
    if zombie_polls < ZOMBIE_POLLS:
        return "zombie not yet confirmed"
    if publishing:
        return "a build or rollback is publishing into the repository"
    if ready is None:
        return "the server did not answer the repository index"
    if stub.version not in ready.get(stub.model, set()):
        return f"version {stub.version} is not loaded (unloaded or being replaced)"
    if last_reload is not None and now - last_reload < COOLDOWN_S:
        return f"reloaded less than {COOLDOWN_S:.0f} s ago"
    return None


def _timestamp() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")


@dataclass
class Watchdog:
    """Remembers the server's stubs while they live; reloads the model of one that turned zombie."""

    server_pid: int
    repository: Path
    log: TextIO
    reload: Callable[[str], None]  # ModelControl.load
    index: Callable[[], dict[str, set[str]] | None]  # ModelControl.ready_versions
    clock: Callable[[], float] = time.monotonic
    known: dict[int, Stub] = field(default_factory=dict)
    zombie_polls: dict[int, int] = field(default_factory=dict)
    handled: set[int] = field(default_factory=set)  # dead stubs whose model was reloaded
    last_reload: dict[str, float] = field(default_factory=dict)
    logged_skips: set[tuple[int, str]] = field(default_factory=set)

    def poll(self) -> list[str]:
        """One look at /proc; returns the models reloaded."""
        live = children(self.server_pid)
        for pid, stat in live.items():
            if pid not in self.known and stat.state != "Z" and (stub := read_stub(pid)) is not None:
                self.known[pid] = stub
        for pid in list(self.known):
            if pid not in live:  # reaped by the backend: a stop it asked for, or a dead stub after a reload
                self._forget(pid)
            elif live[pid].state == "Z" and pid not in self.handled:
                self.zombie_polls[pid] = self.zombie_polls.get(pid, 0) + 1
        dead = [self.known[pid] for pid in self.zombie_polls if pid not in self.handled]
        if not dead:
            return []
        publishing = publish_in_progress(self.repository)
        ready = None if publishing else self.index()
        reloaded = []
        for stub in dead:
            if stub.model in reloaded:
                self.handled.add(stub.pid)  # one reload replaces every instance of the model
                continue
            now = self.clock()
            reason = skip_reason(
                stub, self.zombie_polls[stub.pid], ready, publishing, self.last_reload.get(stub.model), now
            )
            if reason is not None:
                self._log_skip(stub, reason)
                continue
            self.last_reload[stub.model] = now
            if self._reload(stub):
                self.handled.add(stub.pid)
                reloaded.append(stub.model)
        return reloaded

    def _reload(self, stub: Stub) -> bool:
        started = self.clock()
        try:
            os.utime(stub.version_dir)  # else Triton sees the model unchanged and skips the load
            self.reload(stub.model)
            result, ok = "ok", True
        except (ServerError, OSError) as error:
            result, ok = f"failed ({error})", False
        self._write(
            f"model={stub.model} version={stub.version} stub_pid={stub.pid} instance={stub.instance} "
            f"stub died; reload={result} duration_s={self.clock() - started:.3f}"
        )
        return ok

    def _log_skip(self, stub: Stub, reason: str) -> None:
        if reason == "zombie not yet confirmed" or (stub.pid, reason) in self.logged_skips:
            return
        self.logged_skips.add((stub.pid, reason))
        self._write(
            f"model={stub.model} version={stub.version} stub_pid={stub.pid} stub died; not reloaded: {reason}"
        )

    def _forget(self, pid: int) -> None:
        self.known.pop(pid, None)
        self.zombie_polls.pop(pid, None)
        self.handled.discard(pid)
        self.logged_skips = {skip for skip in self.logged_skips if skip[0] != pid}

    def _write(self, line: str) -> None:
        self.log.write(f"{_timestamp()} {line}\n")
        self.log.flush()


def server_alive(pid: int, start_ticks: int) -> bool:
    stat = proc_stat(pid)
    return stat is not None and stat.state != "Z" and stat.start_ticks == start_ticks


def run(watchdog: Watchdog, interval: float = POLL_S) -> None:
    """Poll until the server is gone."""
    server = proc_stat(watchdog.server_pid)
    if server is None:
        return
    watchdog._write(f"watching the python backend stubs of tritonserver pid {watchdog.server_pid}")
    while server_alive(watchdog.server_pid, server.start_ticks):
        watchdog.poll()
        time.sleep(interval)
    watchdog._write(f"tritonserver pid {watchdog.server_pid} is gone; watchdog exits")


def main(argv: list[str] | None = None) -> None:
    from triton_repo.serve.model_control import ModelControl

    parser = argparse.ArgumentParser(
        prog="python -m triton_repo.serve.watchdog", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--server-pid", type=int, required=True)
    parser.add_argument("--http-url", required=True)
    parser.add_argument("--repository", type=Path, required=True)
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--interval", type=float, default=POLL_S)
    args = parser.parse_args(argv)
    control = ModelControl(args.http_url, timeout=60.0)
    with args.log.open("a") as log:
        run(
            Watchdog(args.server_pid, args.repository, log, control.load, control.ready_versions),
            args.interval,
        )


if __name__ == "__main__":
    sys.exit(main())
