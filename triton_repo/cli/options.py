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


class RepositoryParam(click.ParamType):
    """A local folder (Path) or object storage (ObjectStoreUrl, checked against Triton's S3 rules)."""

    name = "DIR|s3://..."

    def convert(self, value, param, ctx):
        from triton_repo.core.errors import TritonRepoError
        from triton_repo.core.storage import ObjectStoreUrl, parse_repository

        if isinstance(value, Path | ObjectStoreUrl):
            return value
        try:
            return parse_repository(value)
        except TritonRepoError as error:
            self.fail(str(error), param, ctx)


store_repository_option = click.option(
    "--repository",
    type=RepositoryParam(),
    default="model_repository",
    envvar="TRITON_REPO_REPOSITORY",
    show_default=True,
    show_envvar=True,
    help="The Triton model repository: a directory, or object storage as "
    "s3://bucket/prefix or s3://http(s)://HOST:PORT/bucket/prefix.",
)

aws_profile_option = click.option(
    "--aws-profile",
    default=None,
    envvar="AWS_PROFILE",
    show_envvar=True,
    help="Object storage: the AWS profile to take credentials from [default: AWS_ACCESS_KEY_ID and "
    "AWS_SECRET_ACCESS_KEY, else the default profile]. Credentials are never printed.",
)


def store_options(function):
    """--aws-profile, --server (repeatable) and --admin-header: publishing into object storage."""
    function = click.option(
        "--admin-header",
        default=None,
        metavar="NAME=VALUE",
        envvar="TRITON_REPO_ADMIN_HEADER",
        show_envvar=True,
        help="Header sent with every load request, for servers that restrict their model-repository API "
        "(tritonserver --http-restricted-api=model-repository:NAME=VALUE).",
    )(function)
    function = click.option(
        "--server",
        "servers",
        multiple=True,
        metavar="URL",
        envvar="TRITON_REPO_SERVERS",
        show_envvar=True,
        help="Object storage: the HTTP URL of a tritonserver reading the repository (repeatable; "
        "space-separated in the variable). Each loads the new versions in turn; the list is kept in the "
        "repository's manifest and used when none is given. A server in POLL mode is waited for.",
    )(function)
    return aws_profile_option(function)


def store_target(
    url, work_dir: Path, aws_profile: str | None, servers: tuple[str, ...], admin_header: str | None
):
    """The StoreTarget for publishing into `url`: named servers, the local `triton-repo serve` on it."""
    from triton_repo.repo.object_store import StoreTarget
    from triton_repo.serve.model_control import model_control

    for server in servers:
        if not server.startswith(("http://", "https://")):
            raise click.BadParameter(
                f"'{server}': give the server's HTTP URL, e.g. http://10.0.0.5:8000", param_hint="--server"
            )
    headers: tuple[tuple[str, str], ...] = ()
    if admin_header:
        name, equals, value = admin_header.partition("=")
        if not equals or not name.strip():
            raise click.BadParameter(
                "use NAME=VALUE, e.g. triton-admin-key=$KEY", param_hint="--admin-header"
            )
        headers = ((name.strip(), value),)
    local = model_control(work_dir / "server", url)
    return StoreTarget(
        url, aws_profile, tuple(s.rstrip("/") for s in servers), headers, local.http_url if local else None
    )
