"""Options shared by several commands; each one a deployment sets has an environment variable."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from triton_repo.serve.server import Ports

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _path_option(flag: str, default: str, envvar: str, help_text: str):
    return click.option(
        flag,
        type=click.Path(path_type=Path),
        default=Path(default),
        envvar=envvar,
        show_default=True,
        show_envvar=True,
        help=help_text,
    )


repository_option = _path_option(
    "--repository", "model_repository", "TRITON_REPO_REPOSITORY", "The Triton model repository directory."
)
work_dir_option = _path_option(
    "--work-dir",
    "build",
    "TRITON_REPO_WORK_DIR",
    "Build artifacts (ONNX, golden data), results JSON and the local server's state and log.",
)


def port_options(function):
    """--http-port, --grpc-port, --metrics-port; None when not given (the caller picks the default)."""
    for label, default in reversed(dataclasses.asdict(Ports()).items()):
        function = click.option(
            f"--{label}-port",
            type=click.IntRange(1, 65535),
            default=None,
            envvar=f"TRITON_REPO_{label.upper()}_PORT",
            show_envvar=True,
            help=f"{label.upper()} port on 127.0.0.1 [default: the running server's, else {default}]",
        )(function)
    return function


def ports_or(fallback: Ports, http: int | None, grpc: int | None, metrics: int | None) -> Ports:
    """The ports given on the command line, the rest from `fallback`."""
    return Ports(http=http or fallback.http, grpc=grpc or fallback.grpc, metrics=metrics or fallback.metrics)


def default_serve_env() -> Path:
    return PROJECT_ROOT / ".venv-serve"


def serve_env_option(help_text: str):
    """--serve-env: the serving environment (tritonserver binary, the backend's Python); None = default."""
    return click.option(
        "--serve-env",
        type=click.Path(path_type=Path),
        default=None,
        envvar="TRITON_REPO_SERVE_ENV",
        show_envvar=True,
        help=f"{help_text} [default: .venv-serve of this checkout]",
    )


def artifact_runtime(serve_env: Path | None):
    """What runs built artifacts in a build: the serving environment's Python (its ONNX Runtime is the
    one that will serve them); without one (e.g. in the TensorRT image), this Python's."""
    import sys

    from triton_repo.core.errors import ServerError
    from triton_repo.core.log import info
    from triton_repo.runtimes.isolated import Runtime
    from triton_repo.serve.server import ServeEnv

    env = ServeEnv(serve_env or default_serve_env())
    if env.python.exists():
        return Runtime(env.python)
    if serve_env is not None:
        raise ServerError(f"{serve_env}: not a serving environment (no bin/python3); run `make install`")
    runtime = Runtime(Path(sys.executable))
    info(f"no serving environment at {env.root}: artifacts run in this Python's {runtime.label}")
    return runtime
