"""The local tritonserver: the binary shipped in the nvidia-pytriton wheel, run from .venv-serve.

The python backend's stub runs the first `python3` on PATH, so the serving environment's bin/ goes
first on the server's PATH; that environment holds numpy<2 and onnxruntime for the models.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path

from triton_repo.core.errors import ServerError
from triton_repo.core.storage import ObjectStoreUrl, repository_id

STATE_FILE = "server.json"


@dataclass(frozen=True)
class Ports:
    http: int = 8000
    grpc: int = 8001
    metrics: int = 8002


@dataclass(frozen=True)
class ServeEnv:
    """A virtual environment with nvidia-pytriton (for the binary) and the backend's packages."""

    root: Path

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python3"

    @property
    def tritonserver_dir(self) -> Path:
        found = sorted(self.root.glob("lib/python3*/site-packages/pytriton/tritonserver"))
        if not found:
            raise ServerError(
                f"{self.root}: no tritonserver found (nvidia-pytriton is not installed there); run `make install`"
            )
        return found[0]

    @property
    def binary(self) -> Path:
        return self.tritonserver_dir / "bin" / "tritonserver"

    @property
    def backends(self) -> Path:
        return self.tritonserver_dir / "backends"


def find_serve_env(path: Path) -> ServeEnv:
    env = ServeEnv(path)
    if not env.python.exists():
        raise ServerError(
            f"{path}: serving environment not found; run `make install` (or set TRITON_REPO_SERVE_ENV)"
        )
    if not env.binary.is_file():
        raise ServerError(f"{env.binary}: tritonserver binary missing; run `make install`")
    return env


def prepare_python_backend(env: ServeEnv) -> None:
    """Put the python backend stub for the environment's Python version next to the backend library."""
    version = subprocess.run(
        [str(env.python), "-c", "import sys; print(f'{sys.version_info[0]}.{sys.version_info[1]}')"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    stub = env.tritonserver_dir / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise ServerError(
            f"{env.root}: Python {version} has no python backend stub in nvidia-pytriton; use Python 3.8-3.13"
        )
    target = env.backends / "python" / "triton_python_backend_stub"
    if not target.is_file() or target.stat().st_size != stub.stat().st_size:
        tmp = target.with_name(target.name + ".tmp")
        shutil.copy2(stub, tmp)
        tmp.replace(target)


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def free_ports(count: int) -> list[int]:
    """`count` distinct ports that are free on 127.0.0.1 right now (all held open while choosing)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def log_tail(log_path: Path, lines: int = 25) -> str:
    if not log_path.is_file():
        return "(no log written)"
    with log_path.open(errors="replace") as handle:
        return "".join(deque(handle, maxlen=lines)).rstrip()


_LOAD_FAILURE = re.compile(r"failed to load '([^']+)' version (\d+): (.*)")


def load_failures(log_path: Path) -> list[str]:
    """'model (version N): reason' for every model the server log says failed to load."""
    if not log_path.is_file():
        return []
    failures = []
    for line in log_path.read_text(errors="replace").splitlines():
        match = _LOAD_FAILURE.search(line)
        if match:
            reason = match.group(3).split("\\n")[0].rstrip('"')
            failures.append(f"{match.group(1)} (version {match.group(2)}): {reason}")
    return failures


@dataclass(frozen=True)
class ServerState:
    pid: int
    ports: Ports
    repository: str
    log_path: str

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.http}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.ports.grpc}"


@dataclass(frozen=True)
class ModelControlMode:
    """explicit (loads on request; `load` names the models loaded at start, '*' for all) or poll."""

    mode: str = "explicit"
    load: tuple[str, ...] = ("*",)
    poll_seconds: int = 2

    def flags(self) -> list[str]:
        if self.mode == "poll":
            return ["--model-control-mode=poll", f"--repository-poll-secs={self.poll_seconds}"]
        return ["--model-control-mode=explicit", *(f"--load-model={name}" for name in self.load)]


def server_command(
    env: ServeEnv,
    repository: Path | ObjectStoreUrl,
    ports: Ports,
    exit_timeout: int = 30,
    control: ModelControlMode = ModelControlMode(),
) -> list[str]:
    return [
        str(env.binary),
        f"--model-repository={repository_id(repository)}",
        f"--backend-directory={env.backends}",
        "--http-address=127.0.0.1",
        "--grpc-address=127.0.0.1",
        "--metrics-address=127.0.0.1",
        f"--http-port={ports.http}",
        f"--grpc-port={ports.grpc}",
        f"--metrics-port={ports.metrics}",
        "--disable-auto-complete-config",
        "--strict-readiness=true",
        "--exit-on-error=true",
        *control.flags(),
        "--pinned-memory-pool-byte-size=0",
        "--log-verbose=0",
        f"--exit-timeout-secs={exit_timeout}",
    ]


def start(
    env: ServeEnv,
    repository: Path | ObjectStoreUrl,
    ports: Ports,
    log_path: Path,
    timeout: float = 180.0,
    exit_timeout: int = 30,
    control: ModelControlMode = ModelControlMode(),
    extra_env: dict[str, str] | None = None,
) -> tuple[subprocess.Popen, ServerState]:
    """Start tritonserver on 127.0.0.1 and wait until every model is loaded and the server is ready.

    `extra_env` is added to the server's environment (an object store's credentials and mount directory).
    """
    if isinstance(repository, Path) and not _has_models(repository):
        raise ServerError(f"{repository}: no models to serve; build the repository first (make build-repo)")
    for label, port in (("http", ports.http), ("grpc", ports.grpc), ("metrics", ports.metrics)):
        if port_in_use(port):
            raise ServerError(
                f"port {port} ({label}) on 127.0.0.1 is in use; stop what holds it (`triton-repo stop` "
                f"if it is our server) or pick another with --{label}-port"
            )
    prepare_python_backend(env)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    environment = dict(os.environ)
    environment["PATH"] = f"{env.root / 'bin'}{os.pathsep}{environment.get('PATH', '')}"
    environment["PYTHONNOUSERSITE"] = "1"
    # OpenVINO-served models keep their compiled blobs here, so a reload does not compile again.
    environment["TRITON_REPO_OV_CACHE"] = str((log_path.parent / "openvino-cache").resolve())
    environment.pop("PYTHONPATH", None)
    environment.pop("VIRTUAL_ENV", None)
    environment.update(extra_env or {})
    with log_path.open("w") as log:
        process = subprocess.Popen(
            server_command(env, repository, ports, exit_timeout, control),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=environment,
            # Its own process group, not its own session: the stub watchdog must be able to join the
            # group (setpgid works within one session only), so that `terminate` stops both.
            process_group=0,
        )
    state = ServerState(process.pid, ports, repository_id(repository), str(log_path.resolve()))
    try:
        wait_ready(state, process, timeout)
    except BaseException:
        terminate(process.pid)
        raise
    return process, state


def _has_models(folder: Path) -> bool:
    return folder.is_dir() and any(p.is_dir() and not p.name.startswith(".") for p in folder.iterdir())


def is_ready(http_port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/v2/health/ready", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def wait_ready(state: ServerState, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            failures = load_failures(Path(state.log_path))
            cause = f"model {failures[0]}" if failures else "see the log tail below"
            more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
            raise ServerError(
                f"tritonserver exited with code {process.returncode} before it was ready: {cause}{more}; "
                f"log: {state.log_path}",
                detail=log_tail(Path(state.log_path)),
            )
        if is_ready(state.ports.http):
            return
        time.sleep(0.25)
    raise ServerError(
        f"tritonserver was not ready after {timeout:.0f} s; log: {state.log_path}",
        detail=log_tail(Path(state.log_path)),
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if _zombie(pid):  # exited, waiting for whichever process adopted it to reap it (seconds, sometimes)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # ours: reap it now
        return False
    try:  # a zombie child of ours counts as gone
        waited, _ = os.waitpid(pid, os.WNOHANG)
        return waited == 0
    except ChildProcessError:
        return True


def _zombie(pid: int) -> bool:
    """True for a process that has exited and not been reaped yet (Linux /proc; False elsewhere)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] == ["Z"]  # the state follows the parenthesised name


def terminate(pid: int, timeout: float = 30.0) -> None:
    """SIGTERM the server's process group (the server and its backend stubs), SIGKILL after `timeout`."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not _alive(pid):
                return
            time.sleep(0.1)


def start_watchdog(state: ServerState, log_path: Path) -> subprocess.Popen:
    """Run triton_repo.serve.watchdog (reloads a model whose python backend stub died) in the server's
    process group, so `terminate(state.pid)` stops it too; it exits by itself when the server is gone."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("a") as log:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "triton_repo.serve.watchdog",
                f"--server-pid={state.pid}",
                f"--http-url={state.http_url}",
                f"--repository={state.repository}",
                f"--log={log_path.resolve()}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            process_group=state.pid,
        )


def save_state(state: ServerState, state_dir: Path) -> Path:
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / STATE_FILE
    data = asdict(state)
    path.write_text(json.dumps(data, indent=2))
    return path


def load_state(state_dir: Path) -> ServerState | None:
    path = state_dir / STATE_FILE
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    return ServerState(data["pid"], Ports(**data["ports"]), data["repository"], data["log_path"])


def clear_state(state_dir: Path) -> None:
    (state_dir / STATE_FILE).unlink(missing_ok=True)


def running(state: ServerState) -> bool:
    return _alive(state.pid)


def running_state(state_dir: Path) -> ServerState | None:
    """The server `triton-repo serve` started from this work dir, if it is still running."""
    state = load_state(state_dir)
    return state if state is not None and running(state) else None
