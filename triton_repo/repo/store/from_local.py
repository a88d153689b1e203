"""A built local repository published into object storage: what `triton-repo publish --to` does.

Each model's newest version (and its config, warmup data and labels) is hard-linked into the staging
area in the shape a build stages (`<model>/1/...`), after every file was hashed against manifest.json,
so the object-storage publish sees exactly what the local repository serves.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from triton_repo.core.errors import TritonRepoError
from triton_repo.core.locks import repository_lock
from triton_repo.core.log import step
from triton_repo.repo.publish import Published, read_manifest, verify_model, versions_of
from triton_repo.repo.writer import VERSION, StagedModel, file_hashes, staging_root

if TYPE_CHECKING:
    from triton_repo.repo.repository import StoreRepository

# Fields of a local manifest entry that describe its local publishing, not the model.
LOCAL_ONLY = ("version", "versions", "last_version", "published_at", "published", "previous", "files")


def publish_repository(source: Path, destination: StoreRepository, names: list[str]) -> Published:
    """Publish `names` of the local repository `source` (all when empty) into `destination` as new
    versions; with no names, the models of `source`'s specs that `destination` serves and `source` no
    longer has (a variant refused or no longer asked for) are retired. Models of other specs are another
    builder's: never retired here.

    Nothing is uploaded unless the destination answers and every local file matches its manifest.
    """
    staging = staging_root(destination.stand_in)
    with repository_lock(destination.stand_in):
        destination.check_access()  # wrong credentials, a missing bucket: one line, nothing uploaded
        destination.warn_prefix_overlap()
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        try:
            with step(f"verify {source} against its manifest and stage {', '.join(names) or 'every model'}"):
                staged = stage_from_repository(source, staging, names)
            local = read_manifest(source)
            retire = () if names else owned_leftovers(local, destination.manifest())
            with step(destination.publish_step()):
                return destination.publish(staged, local.get("tools", {}), retire)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def owned_leftovers(local: dict, bucket: dict | None) -> tuple[str, ...]:
    """The bucket's models of the specs the local repository builds (their `source_model`) that it
    no longer has; a model of a spec it does not build belongs to another builder and stays."""
    owned = {entry.get("source_model", name) for name, entry in local["models"].items()}
    served = (bucket or {}).get("models", {})
    return tuple(
        sorted(
            name
            for name, entry in served.items()
            if name not in local["models"] and entry.get("source_model", name) in owned
        )
    )


def stage_from_repository(repository: Path, staging: Path, names: list[str]) -> list[StagedModel]:
    """Stage the newest version of each model in `names` (all when empty), verified first."""
    manifest = read_manifest(repository)
    models = manifest["models"]
    unknown = [name for name in names if name not in models]
    if unknown:
        raise TritonRepoError(
            f"{unknown[0]}: not in {repository / 'manifest.json'}; its models: {', '.join(sorted(models))}"
        )
    staged = []
    for name in names or sorted(models):
        entry = models[name]
        if entry.get("engine_pending"):
            raise TritonRepoError(
                f"{name}: published without its TensorRT plan (engine_pending); build the plans on a GPU host "
                "(make engines) before publishing to object storage"
            )
        verify_model(repository / name, entry["files"])
        staged.append(_stage(repository / name, entry, staging / name, name))
    return staged


def _stage(folder: Path, entry: dict, target: Path, name: str) -> StagedModel:
    newest = str(versions_of(entry)[-1])
    shutil.rmtree(target, ignore_errors=True)
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if "__pycache__" in relative.parts[:-1] or not path.is_file():
            continue
        head = relative.parts[0]
        if head.isdigit() and head != newest:
            continue  # older versions stay local
        if head == newest:
            relative = Path(VERSION, *relative.parts[1:])
        destination = target / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        os.link(path, destination)
    described = {k: v for k, v in entry.items() if k not in LOCAL_ONLY}
    if "golden" in described:
        described["golden"] = f"{VERSION}/{described['golden'].split('/', 1)[1]}"
    described["files"] = file_hashes(target)
    return StagedModel(name, entry.get("source_model", name), entry.get("precision", ""), target, described)
