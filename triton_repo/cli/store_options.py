"""Options for a repository in object storage: the repository as a folder or an s3:// URL, credentials,
and the servers a publish loads new versions into."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from triton_repo.repo.repository import Repository, StoreAccess


class RepositoryParam(click.ParamType):
    """A local folder (Path) or object storage (ObjectStoreUrl, checked against Triton's S3 rules);
    with `object_store_only`, an s3:// URL only."""

    name = "DIR|s3://..."

    def __init__(self, object_store_only: bool = False) -> None:
        self.object_store_only = object_store_only

    def convert(self, value, param, ctx):
        from triton_repo.core.errors import TritonRepoError
        from triton_repo.core.storage import is_object_store, parse_repository

        try:
            parsed = parse_repository(str(value))  # a default, or a value parsed already, parses the same
        except TritonRepoError as error:
            self.fail(str(error), param, ctx)
        if self.object_store_only and not is_object_store(str(value)):
            hint = param.opts[0] if param is not None and param.opts else None
            raise click.BadParameter(f"'{parsed}': give an s3:// URL", param_hint=hint)
        return parsed


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
        "repository's manifest and used when none is given. A server in POLL mode is waited for. A name "
        "with several addresses (a Kubernetes headless Service: one per ready pod) is each of them.",
    )(function)
    return aws_profile_option(function)


def store_access(aws_profile: str | None, servers: tuple[str, ...], admin_header: str | None) -> StoreAccess:
    """The object store's credentials, the servers a publish loads into and their header, checked."""
    from triton_repo.repo.repository import StoreAccess

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
    return StoreAccess(aws_profile, servers, headers)


def open_from_options(
    repository,
    work_dir: Path,
    aws_profile: str | None = None,
    servers: tuple[str, ...] = (),
    admin_header: str | None = None,
) -> Repository:
    """The repository --repository names, opened; --server and --admin-header are checked only for
    object storage, the only kind that uses them."""
    from triton_repo.repo.repository import open_repository

    return open_repository(repository, work_dir, lambda: store_access(aws_profile, servers, admin_header))
