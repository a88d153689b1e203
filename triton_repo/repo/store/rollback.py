"""Rollback in object storage: rewrite each model's config.pbtxt to name its previous state again.

Within one config the newest version is dropped from the pointer; when the newest version came with a
config change, the pointer is the previous config naming its versions (kept in the bucket for this).
The versions to serve again are hashed against the manifest first; servers load one at a time, and the
dropped version's objects are deleted after the switch. Version numbers are never reused. Like a
publish, it runs under the publish lease and reads the manifest only once it holds it.
"""

from __future__ import annotations

import hashlib

from triton_repo.core.errors import TritonRepoError
from triton_repo.repo.store.client import Store
from triton_repo.repo.store.layout import CONFIG, config_of, version_of
from triton_repo.repo.store.manifest import verify_versions
from triton_repo.repo.store.publishing import (
    StoreTarget,
    Switch,
    delete_unreferenced,
    open_store,
    servers_of,
    switch_pointers,
)
from triton_repo.repo.store.session import PublishSession, publish_session


def rollback_store(
    names: list[str], target: StoreTarget, store: Store | None = None
) -> tuple[dict[str, tuple[int, int]], int]:
    """Return each model to its previous published state, all together or not at all (`store`: the
    bucket, its access already checked).

    Returns model -> (version no longer served, version now served), and how many servers loaded it.
    """
    store = store or open_store(target)
    with publish_session(store, f"roll back {', '.join(names)}") as session:
        return _rollback(session, names, target)


def _rollback(
    session: PublishSession, names: list[str], target: StoreTarget
) -> tuple[dict[str, tuple[int, int]], int]:
    store, manifest = session.store, session.manifest
    if manifest is None:
        raise TritonRepoError(f"{target.url}: no manifest.json; publish into it first (triton-repo publish)")
    models = manifest["models"]
    switches, moves = [], {}
    for name in names:
        if name not in models:
            raise TritonRepoError(
                f"{name}: not in {target.url.url_of('manifest.json')}; published models: {', '.join(sorted(models))}"
            )
        entry = models[name]
        restored = _previous_state(target, name, entry)
        verify_versions(store, name, restored, restored["versions"])
        pointer, pointer_etag = store.read_with_etag(store.url.key(name, CONFIG))
        switch = Switch(name, restored, entry, pointer, pointer_etag)
        restored["files"] = {
            **{k: v for k, v in restored["files"].items() if k != CONFIG},
            CONFIG: hashlib.sha256(switch.pointer).hexdigest(),
        }
        switches.append(switch)
        moves[name] = (entry["versions"][-1], restored["versions"][-1])
    servers = servers_of(target, manifest)
    switch_pointers(session, switches, servers, manifest.get("tools", {}))
    session.check("the deletion of the versions rolled back")
    for switch in switches:
        delete_unreferenced(store, switch.name, switch.entry)
    return moves, len(servers)


def _previous_state(target: StoreTarget, name: str, entry: dict) -> dict:
    """The manifest entry to serve again: the versions before the newest, or the config it replaced."""
    versions = entry["versions"]
    if len(versions) >= 2:
        newest, served = versions[-1], versions[:-1]
        state = {
            **entry,
            "version": served[-1],
            "versions": served,
            "published": {k: v for k, v in entry.get("published", {}).items() if k != str(newest)},
            "files": {k: v for k, v in entry["files"].items() if not _only_of(entry, newest, k)},
        }
    elif entry.get("previous"):
        state = {
            **entry["previous"],
            "last_version": max(entry["last_version"], entry["previous"]["last_version"]),
        }
    else:
        raise TritonRepoError(
            f"{name}: only version {versions[-1]} is in {target.url} and no earlier state is kept, nothing to "
            "roll back to (triton.keep_versions is 1, or it is the model's first publish)"
        )
    if "golden" in state:
        state["golden"] = f"{state['version']}/{state['golden'].split('/', 1)[1]}"
    return state


def _only_of(entry: dict, version: int, relative: str) -> bool:
    """An object that serves only `version`: its own, and (older layout) its warmup data."""
    return version_of(relative) == version or ("config_at" not in entry and config_of(relative) == version)
