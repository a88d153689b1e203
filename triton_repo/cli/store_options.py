"""Options for a repository in object storage: the repository as a folder or an s3:// URL, credentials,
and the servers a publish loads new versions into."""

from __future__ import annotations

from pathlib import Path

import click


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
    from triton_repo.repo.store.publishing import StoreTarget
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
