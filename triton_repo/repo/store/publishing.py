"""Versioned publishing into object storage (S3): the local repository's guarantees, on a bucket.

For each changed model: its next version is uploaded under a new number (no object is ever
overwritten: If-None-Match), read back and hashed against the manifest, and only then is config.pbtxt,
the commit pointer (store/layout.py), rewritten to name it; the manifest is written last. Then every
server is asked to load, one at a time; at the first refusal the pointers and the manifest are put back
and the servers that had switched load the old versions again. Versions no longer served (and leftovers
of an interrupted upload) are deleted after the switch. A publish killed at any point before the
pointer leaves the served state as it was: what it uploaded is never named, and is deleted by the next
publish.

All of it runs under the publish lease (store/session.py, store/lease.py), so publishers on any number
of machines take turns: each reads the manifest after taking the lease, and renews it before writing a
pointer or the manifest; the pointers and the manifest are written only over the versions read.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from dataclasses import dataclass, field

from triton_repo.core.errors import TritonRepoError
from triton_repo.core.log import info, warn
from triton_repo.core.storage import ObjectStoreUrl
from triton_repo.repo.fleet import each_address, load_everywhere, reload_everywhere
from triton_repo.repo.publish import LOAD_ORDER, MANIFEST_FORMAT, Published, _now
from triton_repo.repo.store.client import Store, WriteConflict
from triton_repo.repo.store.layout import (
    CONFIG,
    config_files,
    config_of,
    held,
    keep_versions,
    numbered,
    pointer_config,
    store_files,
    store_key,
    version_files,
    version_of,
)
from triton_repo.repo.store.manifest import check_names, remove_leftovers, verify_versions
from triton_repo.repo.store.session import PublishSession, publish_session
from triton_repo.repo.writer import StagedModel
from triton_repo.serve.model_control import ModelControl

POINTER_TRIES = 5


@dataclass(frozen=True)
class StoreTarget:
    """An object-storage repository and the servers reading it."""

    url: ObjectStoreUrl
    profile: str | None = None
    servers: tuple[str, ...] = ()  # HTTP URLs named on the command line: kept in the manifest
    headers: tuple[tuple[str, str], ...] = ()  # sent with every load (a restricted model-repository API)
    local_server: str | None = None  # `triton-repo serve` on this URL, from this work dir (not kept)

    def __str__(self) -> str:
        return str(self.url)


@dataclass
class Switch:
    """One model's move from its served state to the next: what to upload, name and later delete."""

    name: str
    entry: dict  # the new manifest entry
    old_entry: dict | None
    old_pointer: bytes | None
    pointer_etag: str | None = None  # of config.pbtxt as read, then as this publish wrote it
    uploads: dict[str, object] = field(default_factory=dict)  # model-relative key -> local Path

    @property
    def pointer(self) -> bytes:
        return pointer_config(
            self.entry["config"], self.entry["versions"], self.entry.get("config_at")
        ).encode()


def open_store(target: StoreTarget) -> Store:
    store = Store(target.url, target.profile)
    store.check_access()
    return store


def servers_of(target: StoreTarget, manifest: dict) -> list[ModelControl]:
    """The servers named now (else those the manifest remembers), and the local `triton-repo serve`.
    A name with several addresses (a headless Service: one per ready pod) is each of them, resolved
    now, once the lease is held."""
    urls = list(target.servers or manifest.get("servers", []))
    if target.local_server and target.local_server not in urls:
        urls.append(target.local_server)
    expanded = list(dict.fromkeys(address for url in urls for address in each_address(url)))
    return [ModelControl(url, headers=dict(target.headers)) for url in expanded]


def publish_to_store(
    staged: list[StagedModel],
    target: StoreTarget,
    tool_versions: dict[str, str],
    retire: tuple[str, ...] = (),
    store: Store | None = None,
) -> Published:
    """Publish each staged model whose files changed as its next version in the bucket, under the
    publish lease (waiting for another publisher's turn); see the module."""
    store = store or open_store(target)
    check_names(target.url, staged)  # before anything is uploaded
    with publish_session(store, _doing([m.name for m in staged], retire)) as session:
        return _publish(session, staged, target, tool_versions, retire)


def _doing(names: list[str], retire: tuple[str, ...]) -> str:
    """What the lease says this publish is doing (the first few names)."""
    said = [*names, *(f"retire {name}" for name in retire)]
    more = f" and {len(said) - 4} more" if len(said) > 4 else ""
    return f"publish {', '.join(said[:4]) or 'nothing'}{more}"


def _publish(
    session: PublishSession,
    staged: list[StagedModel],
    target: StoreTarget,
    tool_versions: dict[str, str],
    retire: tuple[str, ...],
) -> Published:
    store = session.store
    if session.manifest is None:
        session.manifest = {"format": MANIFEST_FORMAT, "storage": "s3", "models": {}}
    manifest = session.manifest
    models = manifest["models"]
    remove_leftovers(store, models)
    servers = servers_of(target, manifest)
    restore_pointers(session, servers)
    switches = [s for s in (_plan(store, model, models.get(model.name)) for model in staged) if s is not None]
    retired = [name for name in retire if name in models]
    if target.servers:
        manifest["servers"] = list(target.servers)
    if not switches and not retired:
        return Published({}, {}, [], False)
    for switch in switches:
        _upload(store, switch)
    switch_pointers(session, switches, servers, tool_versions)
    if retired:
        session.check(f"the retirement of {', '.join(retired)}")
        for name in retired:
            _retire(store, name, servers)
            manifest["models"].pop(name, None)  # the dict a merge laid over the manifest, if any
        session.write_manifest(retired)
    session.check("the deletion of versions no longer served")
    for switch in switches:
        delete_unreferenced(store, switch.name, switch.entry)
    return Published(
        {s.name: s.entry["version"] for s in switches},
        {s.name: s.entry["versions"] for s in switches},
        retired,
        bool(servers),
    )


def restore_pointers(session: PublishSession, servers: list[ModelControl]) -> list[str]:
    """Put back each pointer that names what manifest.json does not: a publisher killed between its
    pointers and its manifest left its version named but unrecorded (a fresh `serve` would refuse the
    bucket). Its version stays in the bucket, unnamed, until the model's next publish deletes it."""
    store, models = session.store, session.manifest["models"]
    restored = []
    for name, entry in sorted(models.items()):
        pointer, etag = store.read_with_etag(store.url.key(name, CONFIG))
        recorded = entry.get("files", {}).get(CONFIG)
        if pointer is None or hashlib.sha256(pointer).hexdigest() == recorded:
            continue
        switch = Switch(name, entry, entry, pointer, etag)
        if hashlib.sha256(switch.pointer).hexdigest() != recorded:
            warn(f"{store.url.url_of(name, CONFIG)} differs from manifest.json and cannot be rebuilt from it")
            continue
        session.check(f"restoring {name}'s config.pbtxt")
        write_pointer(store, switch, switch.pointer)
        info(
            f"  restored {store.url.url_of(name, CONFIG)}: an interrupted publish had named versions it never recorded"
        )
        restored.append(name)
    for problem in reload_everywhere(servers, restored) if restored else []:
        warn(problem)
    return restored


def _plan(store: Store, model: StagedModel, previous: dict | None) -> Switch | None:
    """The model's next state, or None when it equals the newest published version.

    With the config unchanged the new version joins the served ones and reuses the config's objects
    (warmup data, labels), so the pointer changes only in its version_policy; a new config starts a new
    history whose objects are uploaded under the new version's number (store/layout.py).
    """
    staged_files = model.manifest_entry["files"]
    base = (model.path / CONFIG).read_text()
    same_config = previous is not None and previous.get("config_files") == config_files(staged_files)
    if same_config and _unchanged(previous, staged_files):
        return None
    existing = {
        numbered(o.key.removeprefix(store.url.key(model.name) + "/")) for o in _objects(store, model.name)
    }
    last = max([previous.get("last_version", 0) if previous else 0, *(v for v in existing if v)])
    number = last + 1
    keep = keep_versions(base)
    kept = previous["versions"][-(keep - 1) :] if same_config and keep > 1 else []
    if kept:
        verify_versions(store, model.name, previous, kept)  # a tampered object stops the publish here
    # the older layout kept config objects per version: its next version starts this layout's objects
    config_at = previous["config_at"] if same_config and "config_at" in previous else number
    now = _now()
    history = previous.get("published", {}) if previous else {}
    files = {k: v for k, v in previous["files"].items() if version_of(k) in kept} if kept else {}
    if config_at != number:
        files |= {k: v for k, v in previous["files"].items() if config_of(k) == config_at}
    files |= store_files(staged_files, number, config_at)
    entry = {k: v for k, v in model.manifest_entry.items() if k != "files"}
    entry |= {
        "version": number,
        "versions": [*kept, number],
        "last_version": number,
        "published_at": now,
        "published": {**{str(v): history.get(str(v)) for v in kept}, str(number): now},
        "config": base,
        "config_files": config_files(staged_files),
        "config_at": config_at,
    }
    if "golden" in entry:
        entry["golden"] = f"{number}/{entry['golden'].split('/', 1)[1]}"
    if previous is not None:
        before = (
            previous.get("previous")
            if same_config
            else {k: v for k, v in previous.items() if k != "previous"}
        )
        if before is not None:
            entry["previous"] = before
    pointer, pointer_etag = store.read_with_etag(store.url.key(model.name, CONFIG))
    switch = Switch(model.name, entry, previous, pointer, pointer_etag)
    placed = {rel: store_key(rel, number, config_at) for rel in staged_files}
    switch.uploads = {
        key: model.path / rel
        for rel, key in placed.items()
        if key and (version_of(key) == number or config_of(key) == number)
    }
    entry["files"] = {CONFIG: hashlib.sha256(switch.pointer).hexdigest(), **dict(sorted(files.items()))}
    return switch


def _unchanged(previous: dict, staged_files: dict[str, str]) -> bool:
    """The staged version's own files equal the newest published version's (the config is the same).
    An entry of the older layout also held its labels inside the version: those are config files."""
    newest = previous["versions"][-1]
    prefix = f"{newest}/"
    published = {
        k: v
        for k, v in previous["files"].items()
        if version_of(k) == newest and k.removeprefix(prefix) not in staged_files
    }
    return version_files(staged_files, newest) == published


def _objects(store: Store, name: str):
    return store.list(store.url.key(name) + "/")


def _upload(store: Store, switch: Switch) -> None:
    """Upload the new version (never over an existing key), then read every object back and hash it."""
    url, name, number = store.url, switch.name, switch.entry["version"]
    total = sum(path.stat().st_size for path in switch.uploads.values())
    for relative, path in sorted(switch.uploads.items()):
        key = url.key(name, relative)

        def progress(done: int, size: int, where: str = f"{name}/{relative}") -> None:
            info(f"  {where}: {done / 2**20:.1f} of {size / 2**20:.1f} MB")

        store.upload_new(path, key, progress)
    fresh = {"config_at": number}  # only the objects this publish uploaded: its version, a new config's
    expected = {k: v for k, v in switch.entry["files"].items() if held(fresh, [number], k)}
    verify_versions(store, name, {**fresh, "files": expected}, [number], uploaded=True)
    info(
        f"  uploaded {name} version {number}: {len(switch.uploads)} files, {total / 2**20:.1f} MB, read back"
    )


def switch_pointers(
    session: PublishSession, switches: list[Switch], servers: list[ModelControl], tools: dict[str, str]
) -> None:
    """Pointers, then the manifest, then the servers; all put back at the first refusal."""
    store, manifest = session.store, session.manifest
    old_manifest = {**manifest, "models": dict(manifest["models"])}
    order = sorted(switches, key=lambda s: LOAD_ORDER.get(s.entry.get("kind", "model"), 0))
    session.check("the pointers (config.pbtxt)")
    for switch in order:
        write_pointer(store, switch, switch.pointer)
    for switch in switches:
        manifest["models"][switch.name] = switch.entry
    manifest["tools"] = tools
    session.write_manifest(s.name for s in switches)
    expected = {s.name: s.entry["versions"] for s in switches}
    try:
        load_everywhere(servers, [s.name for s in order], expected)
    except TritonRepoError as error:
        switched = getattr(error, "switched", [])
        _put_back(session, old_manifest, order, switched)
        raise type(error)(
            f"{error}; the pointers and the manifest were put back, the previous versions serve on every "
            "server, nothing was published"
        ) from None


def _put_back(
    session: PublishSession, old_manifest: dict, order: list[Switch], switched: list[ModelControl]
) -> None:
    store = session.store
    session.check("the previous pointers back")
    for switch in reversed(order):
        if switch.old_pointer is not None:
            write_pointer(store, switch, switch.old_pointer)
        else:  # a new model: take it out whole, so no server ever finds it without its config
            store.delete([o.key for o in _objects(store, switch.name)])
    session.manifest.clear()
    session.manifest.update(old_manifest)
    session.write_manifest(s.name for s in order)
    names = [s.name for s in order if s.old_pointer is not None]
    for problem in reload_everywhere(switched, names):
        warn(problem)
    for server in switched:
        for switch in order:
            if switch.old_pointer is None:
                try:
                    server.unload(switch.name)
                except TritonRepoError as error:
                    warn(str(error))


def write_pointer(store: Store, switch: Switch, data: bytes) -> None:
    """Write config.pbtxt so that its LastModified is later than every other object of the model, and
    only over the pointer this publish read (If-Match; If-None-Match for a new model).

    Triton reloads a model only when the newest LastModified below it grew, and S3 times have one-second
    resolution: a pointer written in the same second as the version it names would go unnoticed.
    """
    name = switch.name
    key = store.url.key(name, CONFIG)
    newest = max((o.modified for o in _objects(store, name)), default=None)
    for _ in range(POINTER_TRIES):
        try:
            if switch.pointer_etag:
                switch.pointer_etag = store.write(key, data, if_match=switch.pointer_etag)
            else:
                switch.pointer_etag = store.write(key, data, overwrite=False)
        except WriteConflict:
            raise TritonRepoError(
                f"{store.url.url_of(name, CONFIG)} was written by another publisher since this one read it "
                "(one without the publish lease: an older triton-repo?); stop it and publish again"
            ) from None
        if newest is None or store.modified(key) > newest:
            break
        time.sleep(1.0)
    else:
        raise TritonRepoError(
            f"{store.url.url_of(name, CONFIG)}: its LastModified did not move past the model's other objects "
            f"after {POINTER_TRIES} writes; check the object store's clock"
        )
    if store.read(key) != data:
        raise TritonRepoError(f"{store.url.url_of(name, CONFIG)}: read back differs from what was written")


def _retire(store: Store, name: str, servers: list[ModelControl]) -> None:
    """A model no longer built: unloaded from the servers, then removed from the bucket."""
    for server in servers:
        # not loaded there, or a polling server: it drops the model when its directory goes
        with contextlib.suppress(TritonRepoError):
            server.unload(name)
    store.delete([o.key for o in _objects(store, name)])


def delete_unreferenced(store: Store, name: str, entry: dict) -> None:
    """After the switch: every version neither served nor kept for rollback (older versions, leftovers
    of an interrupted upload) goes."""
    states = [state for state in (entry, entry.get("previous")) if state]
    prefix = store.url.key(name) + "/"
    stale = [
        o.key
        for o in store.list(prefix)
        if numbered(relative := o.key.removeprefix(prefix)) is not None
        and not any(held(state, state["versions"], relative) for state in states)
    ]
    if stale:
        store.delete(stale)
