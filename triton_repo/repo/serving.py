"""Serve a repository with the local tritonserver: check what it holds (a gpu-target repository cannot be
served here; every published file is verified against its manifest), start the server and, for a local
folder, the stub watchdog, and record the server's state so `triton-repo stop` finds it."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from triton_repo.core.errors import ServerError
from triton_repo.core.log import info, step, warn
from triton_repo.core.storage import ObjectStoreUrl
from triton_repo.repo.publish import read_manifest, verify_published
from triton_repo.repo.store.client import Store
from triton_repo.repo.store.manifest import read_store_manifest, verify_store
from triton_repo.serve import server

STATE_DIR = "server"  # <work-dir>/server: the running server's state, log and watchdog log


@dataclass(frozen=True)
class Started:
    process: subprocess.Popen
    state: server.ServerState
    state_dir: Path
    watchdog_log: Path | None  # a local folder's stub watchdog; None for object storage


def start_serving(
    repository: Path | ObjectStoreUrl,
    work_dir: Path,
    ports: server.Ports,
    control: server.ModelControlMode,
    serve_env: Path,
    aws_profile: str | None = None,
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
    extra_env: dict[str, str] = {}
    if isinstance(repository, ObjectStoreUrl):
        control, extra_env = _prepare_store(repository, aws_profile, state_dir, control)
    else:
        _check_folder(repository)
    info(f"starting tritonserver on {repository} ...")
    process, state = server.start(
        env, repository, ports, state_dir / "tritonserver.log", timeout, exit_timeout, control, extra_env
    )
    watchdog_log = None
    if isinstance(repository, Path):  # it reloads a model by touching its local version directory
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


def _check_folder(repository: Path) -> None:
    """A local folder: refused when built for the gpu target; else every published file verified."""
    if not (repository / "manifest.json").is_file():
        warn(f"{repository}: no manifest.json (not built by triton-repo), so its files are not verified")
        return
    models = read_manifest(repository)["models"]
    gpu_models = sorted(name for name, entry in models.items() if entry.get("target") == "gpu")
    if gpu_models:
        raise ServerError(
            f"{repository} was built for the gpu target ({gpu_models[0]}, ...): the local server has no "
            "TensorRT or ONNX Runtime backend; serve it with `make serve-gpu` on a GPU host, or rebuild "
            "with `--target cpu`"
        )
    checked = verify_published(repository)  # a file changed since publishing is never loaded
    info(f"verified {checked} files against {repository / 'manifest.json'}")


def _prepare_store(url: ObjectStoreUrl, aws_profile, state_dir: Path, control):
    """Check access, verify every served object, and the server's credentials and model list."""
    store = Store(url, aws_profile)
    store.check_access()
    manifest = read_store_manifest(store)
    load: tuple[str, ...] = ("*",)
    if manifest is None:
        warn(f"{url}: no manifest.json (not published by triton-repo), so its objects are not verified")
    else:
        gpu_models = sorted(n for n, e in manifest["models"].items() if e.get("target") == "gpu")
        if gpu_models:
            raise ServerError(
                f"{url} holds gpu-target models ({gpu_models[0]}, ...): the local server has no TensorRT or "
                "ONNX Runtime backend; serve it with the NGC tritonserver (deploy/helm/triton-repo)"
            )
        with step(f"verify every served object of {url} against its manifest.json"):
            checked = verify_store(store, manifest)
        info(f"verified {checked} objects against {url}/manifest.json")
        load = tuple(sorted(manifest["models"]))  # only complete publishes: never a leftover directory
    mount = state_dir / "s3-mount"  # Triton's local copy of each loaded model directory
    shutil.rmtree(mount, ignore_errors=True)
    mount.mkdir(parents=True)
    environment = {**store.credentials().environment(), "TRITON_AWS_MOUNT_DIRECTORY": str(mount.resolve())}
    return server.ModelControlMode(control.mode, load, control.poll_seconds), environment
