"""The local tritonserver on a repository: checked first (a repository built for a target it cannot
serve is refused; every published file is verified against its manifest), then started with, for a
local folder, the stub watchdog, and its state recorded so `triton-repo stop` finds it."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from triton_repo.core.errors import ServerError
from triton_repo.core.log import info
from triton_repo.repo.repository import Repository
from triton_repo.serve import server

STATE_DIR = "server"  # <work-dir>/server: the running server's state, log and watchdog log


@dataclass(frozen=True)
class Started:
    process: subprocess.Popen
    state: server.ServerState
    state_dir: Path
    watchdog_log: Path | None  # a local folder's stub watchdog; None for object storage


def start_serving(
    repository: Repository,
    work_dir: Path,
    ports: server.Ports,
    control: server.ModelControlMode,
    serve_env: Path,
    timeout: float = 180.0,
    exit_timeout: int = 30,
) -> Started:
    """Start tritonserver on `repository` and wait until every model is ready (ServerError otherwise)."""
    state_dir = work_dir / STATE_DIR
    previous = server.running_state(state_dir)
    if previous is not None:
        raise ServerError(
            f"a server started by triton-repo is already running (pid {previous.pid}, http {previous.ports.http}); "
            "run `triton-repo stop` first"
        )
    server.clear_state(state_dir)
    env = server.find_serve_env(serve_env)
    setup = repository.server_setup(state_dir, control)
    info(f"starting tritonserver on {repository} ...")
    process, state = server.start(
        env,
        repository.location,
        ports,
        state_dir / "tritonserver.log",
        timeout,
        exit_timeout,
        setup.control,
        setup.environment,
    )
    watchdog_log = None
    if setup.watchdog:  # it reloads a model by touching its local version directory
        watchdog_log = state_dir / "watchdog.log"
        try:
            server.start_watchdog(state, watchdog_log)
        except OSError as error:
            server.terminate(state.pid)
            raise ServerError(f"could not start the stub watchdog: {error}") from None
    server.save_state(state, state_dir)
    return Started(process, state, state_dir, watchdog_log)


def stop_serving(work_dir: Path) -> int | None:
    """Stop the server `start_serving` left running; its pid, or None when none was running."""
    state_dir = work_dir / STATE_DIR
    state = server.running_state(state_dir)
    if state is not None:
        server.terminate(state.pid)
    server.clear_state(state_dir)
    return state.pid if state is not None else None
