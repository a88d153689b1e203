"""`triton-repo serve` and `triton-repo stop`: the local tritonserver on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

import click

from triton_repo.cli.option_groups import GivenPorts, ServerWaits, option_group, port_options
from triton_repo.cli.options import default_serve_env, serve_env_option, work_dir_option
from triton_repo.cli.store_options import aws_profile_option, store_repository_option
from triton_repo.serve.server import ModelControlMode


@click.command()
@store_repository_option
@work_dir_option
@port_options
@click.option(
    "--detach", is_flag=True, help="Return once the server is ready; stop it with `triton-repo stop`."
)
@option_group(
    "waits",
    ServerWaits,
    click.option(
        "--timeout",
        type=click.FloatRange(1),
        default=180.0,
        show_default=True,
        help="Seconds to wait for readiness.",
    ),
    click.option(
        "--exit-timeout",
        type=click.IntRange(0, 3600),
        default=30,
        show_default=True,
        envvar="TRITON_REPO_EXIT_TIMEOUT",
        show_envvar=True,
        help="Seconds tritonserver waits for in-flight requests (and backend instances) when stopped "
        "(its --exit-timeout-secs; Triton's default 30).",
    ),
)
@option_group(
    "control",
    ModelControlMode,
    click.option(
        "--model-control",
        "mode",
        type=click.Choice(["explicit", "poll"]),
        default="explicit",
        show_default=True,
        envvar="TRITON_REPO_MODEL_CONTROL",
        show_envvar=True,
        help="explicit: models load at start and when a publish asks; poll: the server reloads by itself "
        "when the repository changes (every --poll-seconds).",
    ),
    click.option(
        "--poll-seconds",
        type=click.IntRange(1, 3600),
        default=2,
        show_default=True,
        envvar="TRITON_REPO_POLL_SECONDS",
        show_envvar=True,
        help="With --model-control poll: tritonserver's --repository-poll-secs.",
    ),
)
@aws_profile_option
@serve_env_option("Virtual environment with nvidia-pytriton and the backend's packages.")
def serve(
    repository,
    work_dir: Path,
    ports: GivenPorts,
    detach: bool,
    waits: ServerWaits,
    control: ModelControlMode,
    aws_profile: str | None,
    serve_env,
) -> None:
    """Serve the repository with the tritonserver binary and wait until every model is ready.

    The repository is a directory, or object storage (s3://...): then its access is checked first
    (wrong credentials and a missing bucket each get their own line), every served object is hashed
    against its manifest.json, and tritonserver reads the bucket with the same credentials, loading the
    models the manifest lists.
    """
    from triton_repo.cli.store_options import open_from_options
    from triton_repo.core.errors import ServerError
    from triton_repo.core.log import info
    from triton_repo.repo.local_server import start_serving
    from triton_repo.serve import server

    chosen = ports.filled_from(server.Ports())
    started = start_serving(
        open_from_options(repository, work_dir, aws_profile),
        work_dir,
        chosen,
        control,
        serve_env or default_serve_env(),
        waits.timeout,
        waits.exit_timeout,
    )
    state = started.state
    watchdog = f"; stub watchdog log {_shown(started.watchdog_log)}" if started.watchdog_log else ""
    info(
        f"[green]ready[/green]  HTTP {state.http_url}  gRPC {state.grpc_url}  "
        f"metrics http://127.0.0.1:{chosen.metrics}/metrics  log {_shown(state.log_path)}{watchdog}"
    )
    if detach:
        info(f"pid {state.pid}; stop it with `triton-repo stop`")
        return
    try:
        code = started.process.wait()
        raise ServerError(
            f"tritonserver exited with code {code}; log: {state.log_path}",
            detail=server.log_tail(Path(state.log_path)),
        )
    except KeyboardInterrupt:
        info("stopping tritonserver ...")
        server.terminate(state.pid)
    finally:
        server.clear_state(started.state_dir)


@click.command()
@work_dir_option
def stop(work_dir: Path) -> None:
    """Stop the server that `triton-repo serve --detach` started."""
    from triton_repo.core.log import info
    from triton_repo.repo.local_server import stop_serving

    pid = stop_serving(work_dir)
    info(f"stopped tritonserver (pid {pid})" if pid else "no server started by triton-repo is running")


def _shown(path: Path) -> str:
    """A path as the ready line prints it: relative to the working directory when under it."""
    resolved = Path(path).resolve()
    try:
        return str(resolved.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(resolved)
