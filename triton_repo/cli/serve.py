"""`triton-repo serve` and `triton-repo stop`: the local tritonserver on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

import click

from triton_repo.cli.options import (
    aws_profile_option,
    default_serve_env,
    port_options,
    ports_or,
    serve_env_option,
    store_repository_option,
    work_dir_option,
)


@click.command()
@store_repository_option
@work_dir_option
@port_options
@click.option(
    "--detach", is_flag=True, help="Return once the server is ready; stop it with `triton-repo stop`."
)
@click.option(
    "--timeout",
    type=click.FloatRange(1),
    default=180.0,
    show_default=True,
    help="Seconds to wait for readiness.",
)
@click.option(
    "--exit-timeout",
    type=click.IntRange(0, 3600),
    default=30,
    show_default=True,
    envvar="TRITON_REPO_EXIT_TIMEOUT",
    show_envvar=True,
    help="Seconds tritonserver waits for in-flight requests (and backend instances) when stopped "
    "(its --exit-timeout-secs; Triton's default 30).",
)
@click.option(
    "--model-control",
    type=click.Choice(["explicit", "poll"]),
    default="explicit",
    show_default=True,
    envvar="TRITON_REPO_MODEL_CONTROL",
    show_envvar=True,
    help="explicit: models load at start and when a publish asks; poll: the server reloads by itself "
    "when the repository changes (every --poll-seconds).",
)
@click.option(
    "--poll-seconds",
    type=click.IntRange(1, 3600),
    default=2,
    show_default=True,
    envvar="TRITON_REPO_POLL_SECONDS",
    show_envvar=True,
    help="With --model-control poll: tritonserver's --repository-poll-secs.",
)
@aws_profile_option
@serve_env_option("Virtual environment with nvidia-pytriton and the backend's packages.")
def serve(
    repository,
    work_dir: Path,
    http_port,
    grpc_port,
    metrics_port,
    detach: bool,
    timeout: float,
    exit_timeout: int,
    model_control: str,
    poll_seconds: int,
    aws_profile: str | None,
    serve_env,
) -> None:
    """Serve the repository with the tritonserver binary and wait until every model is ready.

    The repository is a directory, or object storage (s3://...): then its access is checked first
    (wrong credentials and a missing bucket each get their own line), every served object is hashed
    against its manifest.json, and tritonserver reads the bucket with the same credentials, loading the
    models the manifest lists.
    """
    from triton_repo.core.errors import ServerError
    from triton_repo.core.log import info, warn
    from triton_repo.core.storage import ObjectStoreUrl
    from triton_repo.serve import server

    state_dir = work_dir / "server"
    previous = server.running_state(state_dir)
    if previous is not None:
        raise ServerError(
            f"a server started by triton-repo is already running (pid {previous.pid}, http {previous.ports.http}); "
            "run `triton-repo stop` first"
        )
    server.clear_state(state_dir)
    env = server.find_serve_env(serve_env or default_serve_env())
    control = server.ModelControlMode(model_control, poll_seconds=poll_seconds)
    extra_env: dict[str, str] = {}
    if isinstance(repository, ObjectStoreUrl):
        control, extra_env = _prepare_store(repository, aws_profile, state_dir, control)
    elif (repository / "manifest.json").is_file():
        from triton_repo.repo.publish import read_manifest, verify_published

        gpu_models = sorted(
            name
            for name, entry in read_manifest(repository)["models"].items()
            if entry.get("target") == "gpu"
        )
        if gpu_models:
            raise ServerError(
                f"{repository} was built for the gpu target ({gpu_models[0]}, ...): the local server has no "
                "TensorRT or ONNX Runtime backend; serve it with `make serve-gpu` on a GPU host, or rebuild "
                "with `--target cpu`"
            )
        checked = verify_published(repository)  # a file changed since publishing is never loaded
        info(f"verified {checked} files against {repository / 'manifest.json'}")
    else:
        warn(f"{repository}: no manifest.json (not built by triton-repo), so its files are not verified")
    ports = ports_or(server.Ports(), http_port, grpc_port, metrics_port)
    info(f"starting tritonserver on {repository} ...")
    process, state = server.start(
        env, repository, ports, state_dir / "tritonserver.log", timeout, exit_timeout, control, extra_env
    )
    watchdog = ""
    if isinstance(repository, Path):  # it reloads a model by touching its local version directory
        try:
            server.start_watchdog(state, state_dir / "watchdog.log")
        except OSError as error:
            server.terminate(state.pid)
            raise ServerError(f"could not start the stub watchdog: {error}") from None
        watchdog = f"; stub watchdog log {_shown(state_dir / 'watchdog.log')}"
    info(
        f"[green]ready[/green]  HTTP {state.http_url}  gRPC {state.grpc_url}  "
        f"metrics http://127.0.0.1:{ports.metrics}/metrics  log {_shown(state.log_path)}{watchdog}"
    )
    server.save_state(state, state_dir)
    if detach:
        info(f"pid {state.pid}; stop it with `triton-repo stop`")
        return
    try:
        code = process.wait()
        raise ServerError(
            f"tritonserver exited with code {code}; log: {state.log_path}",
            detail=server.log_tail(Path(state.log_path)),
        )
    except KeyboardInterrupt:
        info("stopping tritonserver ...")
        server.terminate(state.pid)
    finally:
        server.clear_state(state_dir)


def _prepare_store(url, aws_profile, state_dir: Path, control):
    """Check access, verify every served object, and the server's credentials and model list."""
    import shutil

    from triton_repo.core.errors import ServerError
    from triton_repo.core.log import info, step, warn
    from triton_repo.repo.s3_client import Store
    from triton_repo.repo.store_manifest import read_store_manifest, verify_store
    from triton_repo.serve import server

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


@click.command()
@work_dir_option
def stop(work_dir: Path) -> None:
    """Stop the server that `triton-repo serve --detach` started."""
    from triton_repo.core.log import info
    from triton_repo.serve import server

    state_dir = work_dir / "server"
    state = server.running_state(state_dir)
    if state is None:
        server.clear_state(state_dir)
        info("no server started by triton-repo is running")
        return
    server.terminate(state.pid)
    server.clear_state(state_dir)
    info(f"stopped tritonserver (pid {state.pid})")


def _shown(path: Path) -> str:
    """A path as the ready line prints it: relative to the working directory when under it."""
    resolved = Path(path).resolve()
    try:
        return str(resolved.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(resolved)
