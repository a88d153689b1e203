"""`triton-repo rollback`: serve the previous version of a model again."""

from __future__ import annotations

import shutil
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
    server then loads it in turn, and the dropped version's objects are deleted.
    """
    from triton_repo.core.storage import ObjectStoreUrl

    if len(set(models)) != len(models):
        raise click.UsageError(f"a model is named twice: {list(models)}")
    if isinstance(repository, ObjectStoreUrl):
        _rollback_store(list(models), repository, work_dir, aws_profile, servers, admin_header)
    else:
        _rollback_local(list(models), repository, work_dir)


def _rollback_local(models: list[str], repository: Path, work_dir: Path) -> None:
    from triton_repo.core.locks import repository_lock
    from triton_repo.core.log import info, step
    from triton_repo.repo.publish import rollback as roll_back
    from triton_repo.repo.writer import staging_root
    from triton_repo.serve.model_control import model_control

    control = model_control(work_dir / "server", repository)
    staging = staging_root(repository)
    with repository_lock(repository):
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        where = f" (the server at {control.http_url} loads it)" if control else ""
        try:
            with step(f"roll back {', '.join(models)}{where}"):
                moves = roll_back(models, repository, staging, control)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    for name, (removed, served) in moves.items():
        now = "now served" if control else "served from the next `triton-repo serve`"
        info(f"{name}: version {removed} removed; version {served} {now}")


def _rollback_store(models: list[str], url, work_dir: Path, aws_profile, servers, admin_header) -> None:
    from triton_repo.cli.store_options import store_target
    from triton_repo.core.locks import repository_lock
    from triton_repo.core.log import info, step
    from triton_repo.repo.store.publishing import local_stand_in
    from triton_repo.repo.store.rollback import rollback_store

    target = store_target(url, work_dir, aws_profile, servers, admin_header)
    with repository_lock(local_stand_in(target, work_dir)), step(f"roll back {', '.join(models)} in {url}"):
        moves, loaded = rollback_store(models, target)
    for name, (removed, served) in moves.items():
        now = f"now served by {loaded} server(s)" if loaded else "served from each server's next load"
        info(f"{name}: version {removed} removed; version {served} {now}")
