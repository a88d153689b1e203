"""`triton-repo serve` and `triton-repo stop`: the local tritonserver on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

import click

from triton_repo.cli.options import (
    default_serve_env,
    port_options,
    ports_or,
    repository_option,
    serve_env_option,
    work_dir_option,
)


@click.command()
@repository_option
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
@serve_env_option("Virtual environment with nvidia-pytriton and the backend's packages.")
def serve(
    repository: Path,
    work_dir: Path,
    http_port,
    grpc_port,
    metrics_port,
    detach: bool,
    timeout: float,
    exit_timeout: int,
    serve_env,
) -> None:
    """Serve the repository with the tritonserver binary and wait until every model is ready."""
    from triton_repo import server
    from triton_repo.errors import ServerError
    from triton_repo.log import info, warn

    state_dir = work_dir / "server"
    previous = server.running_state(state_dir)
    if previous is not None:
        raise ServerError(
            f"a server started by triton-repo is already running (pid {previous.pid}, http {previous.ports.http}); "
            "run `triton-repo stop` first"
        )
    server.clear_state(state_dir)
    env = server.find_serve_env(serve_env or default_serve_env())
    if (repository / "manifest.json").is_file():
        from builders.repository.publish import read_manifest, verify_published

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
        env, repository, ports, state_dir / "tritonserver.log", timeout, exit_timeout
    )
    try:
        server.start_watchdog(state, state_dir / "watchdog.log")
    except OSError as error:
        server.terminate(state.pid)
        raise ServerError(f"could not start the stub watchdog: {error}") from None
    info(
        f"[green]ready[/green]  HTTP {state.http_url}  gRPC {state.grpc_url}  "
        f"metrics http://127.0.0.1:{ports.metrics}/metrics  log {state.log_path}; "
        f"stub watchdog log {state_dir / 'watchdog.log'}"
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


@click.command()
@work_dir_option
def stop(work_dir: Path) -> None:
    """Stop the server that `triton-repo serve --detach` started."""
    from triton_repo import server
    from triton_repo.log import info

    state_dir = work_dir / "server"
    state = server.running_state(state_dir)
    if state is None:
        server.clear_state(state_dir)
        info("no server started by triton-repo is running")
        return
    server.terminate(state.pid)
    server.clear_state(state_dir)
    info(f"stopped tritonserver (pid {state.pid})")
