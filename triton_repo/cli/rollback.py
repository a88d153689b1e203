"""`triton-repo rollback`: serve the previous version of a model again."""

from __future__ import annotations

from pathlib import Path

import click

from triton_repo.cli.options import work_dir_option
from triton_repo.cli.store_options import store_options, store_repository_option


@click.command()
@click.argument("models", nargs=-1, required=True)
@store_repository_option
@work_dir_option
@store_options
def rollback(
    models: tuple[str, ...],
    repository,
    work_dir: Path,
    aws_profile: str | None,
    servers: tuple[str, ...],
    admin_header: str | None,
) -> None:
    """Return each Triton MODEL to its previous published state: the version before the newest serves again.

    The repository keeps the latest `triton.keep_versions` versions of each model (default 2). The
    removed version is verified, swapped out in one step, and, when `triton-repo serve` runs on the
    repository, the server reloads the model (the newest version serves until the previous one is
    READY again). When the newest version came with a config change (config.pbtxt, warmup, labels), the
    model directory that change replaced, its config and versions, is restored from the history area
    beside the repository (one config change back per model). Several MODELS roll back together or not at all: name an ensemble with the variant
    it calls. A later build whose model differs from the served version publishes a new version.

    In object storage (--repository s3://...), each model's config.pbtxt is rewritten to name its
    previous versions (or its previous config), after they were hashed against the manifest; every
    server then loads it in turn, and the dropped version's objects are deleted; like a publish, under
    the bucket's publish lease (TRITON_REPO_LEASE_SECONDS, TRITON_REPO_LEASE_WAIT_SECONDS).
    """
    from triton_repo.cli.store_options import open_from_options
    from triton_repo.core.log import info

    if len(set(models)) != len(models):
        raise click.UsageError(f"a model is named twice: {list(models)}")
    opened = open_from_options(repository, work_dir, aws_profile, servers, admin_header)
    rolled = opened.rollback(list(models))
    for name, (removed, served) in rolled.moves.items():
        info(f"{name}: version {removed} removed; version {served} {rolled.served}")
