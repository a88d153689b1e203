"""`triton-repo publish --to s3://...`: the local repository's models, published into object storage."""

from __future__ import annotations

import json
from pathlib import Path

import click

from triton_repo.cli.options import repository_option, work_dir_option
from triton_repo.cli.store_options import RepositoryParam, store_options


@click.command()
@click.argument("models", nargs=-1)
@click.option(
    "--to",
    "destination",
    required=True,
    type=RepositoryParam(object_store_only=True),
    metavar="s3://...",
    envvar="TRITON_REPO_PUBLISH_TO",
    show_envvar=True,
    help="The object-storage repository: s3://bucket/prefix or s3://http(s)://HOST:PORT/bucket/prefix.",
)
@repository_option
@work_dir_option
@store_options
def publish(
    models: tuple[str, ...],
    destination,
    repository: Path,
    work_dir: Path,
    aws_profile: str | None,
    servers: tuple[str, ...],
    admin_header: str | None,
) -> None:
    """Publish MODELS of the local repository (default: all) into object storage, as new versions.

    Every local file is first hashed against its manifest.json. For each model whose newest version
    differs from the one served in the bucket: the version is uploaded under a new number (never over an
    existing object; large files in parts, with progress), read back and hashed, and only then is the
    model's config.pbtxt rewritten to name it (version_policy specific: Triton ignores a version it does
    not name, so a half-uploaded one is never loaded); manifest.json is written last. Each --server then
    loads it, one at a time; at the first refusal the previous versions are restored everywhere and
    nothing is published. Versions beyond triton.keep_versions are deleted after the switch. With no
    MODELS, models the bucket has and the local repository no longer has are retired.

    Publishers on any machines take turns through a lease in the bucket (<prefix>/publish.lease): a
    publish waits for the one in progress (TRITON_REPO_LEASE_WAIT_SECONDS, default 600), and breaks a
    lease not renewed for TRITON_REPO_LEASE_SECONDS (default 60: a killed publisher's).
    """
    from triton_repo.cli.store_options import store_access
    from triton_repo.repo.repository import open_object_store
    from triton_repo.repo.store.from_local import publish_repository

    store = open_object_store(destination, work_dir, store_access(aws_profile, servers, admin_header))
    published = publish_repository(repository, store, list(models))
    _report(published, destination, work_dir)


def _report(published, destination, work_dir: Path) -> None:
    """One line per change, and publish.json for machines."""
    from triton_repo.core.log import info

    if not published.versions and not published.retired:
        info("nothing changed: nothing published")
    for name, version in sorted(published.versions.items()):
        kept = [v for v in published.kept[name] if v != version]
        also = f"; kept for rollback: {', '.join(map(str, kept))}" if kept else ""
        served = "loaded by the servers" if published.loaded else "served from each server's next load"
        info(f"published {name} version {version} ({served}{also})")
    for name in published.retired:
        info(f"retired {name} (removed{' and unloaded' if published.loaded else ''})")
    work_dir.mkdir(parents=True, exist_ok=True)
    result = {
        "repository": str(destination),
        "versions": published.versions,
        "served": published.kept,
        "retired": published.retired,
        "loaded": published.loaded,
    }
    (work_dir / "publish.json").write_text(json.dumps(result, indent=2) + "\n")
    info(f"repository: {destination}   results: {work_dir / 'publish.json'}")
