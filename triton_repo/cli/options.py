"""Options shared by several commands; each one a deployment sets has an environment variable."""

from __future__ import annotations

from pathlib import Path

import click

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def repository_option(function):
    return click.option(
        "--repository",
        type=click.Path(path_type=Path),
        default=Path("model_repository"),
        envvar="TRITON_REPO_REPOSITORY",
        show_default=True,
        show_envvar=True,
        help="The Triton model repository directory.",
    )(function)


def work_dir_option(function):
    return click.option(
        "--work-dir",
        type=click.Path(path_type=Path),
        default=Path("build"),
        envvar="TRITON_REPO_WORK_DIR",
        show_default=True,
        show_envvar=True,
        help="Build artifacts (ONNX, golden data), results JSON and the local server's state and log.",
    )(function)


def port_options(function):
    for label, default in (("metrics", 8002), ("grpc", 8001), ("http", 8000)):
        function = click.option(
            f"--{label}-port",
            type=click.IntRange(1, 65535),
            default=None,
            envvar=f"TRITON_REPO_{label.upper()}_PORT",
            show_envvar=True,
            help=f"{label.upper()} port on 127.0.0.1 [default: the running server's, else {default}]",
        )(function)
    return function


def default_serve_env() -> Path:
    return PROJECT_ROOT / ".venv-serve"
