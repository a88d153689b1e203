"""Options shared by several commands, each declared once; each one a deployment sets has an environment
variable. Blocks of related options handed to a command as one record: option_groups.py."""

from __future__ import annotations

from pathlib import Path

import click

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


def models_dir_option(help_text: str):
    """--models-dir: the folder of model folders (models/), as build reads it and init writes into it."""
    return click.option(
        "--models-dir",
        type=click.Path(path_type=Path),
        default=Path("models"),
        show_default=True,
        help=help_text,
    )


host_option = click.option(
    "--host", default="127.0.0.1", show_default=True, envvar="TRITON_REPO_HOST", show_envvar=True
)


def protocol_option(default: str | None = "grpc", help_text: str | None = None):
    """--protocol: gRPC or HTTP."""
    return click.option(
        "--protocol",
        type=click.Choice(["grpc", "http"]),
        default=default,
        show_default=default is not None,
        help=help_text,
    )


request_timeout_option = click.option(
    "--timeout", type=click.FloatRange(0.1), default=60.0, show_default=True, help="Seconds per request."
)


def results_option(default: str, envvar: str):
    """--output: where a command's results folders go."""
    return _path_option("--output", default, envvar, "Results go to OUTPUT/<date>-<model>/.")


# MODEL of the precision commands: a name under models/, or a folder holding model.yaml
model_argument = click.argument("model", type=click.Path(path_type=Path))


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
