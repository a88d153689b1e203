"""The object-storage repository's manifest and the checks around it: names against Triton's S3 rules,
every served object hashed against the manifest, leftovers of an interrupted publish."""

from __future__ import annotations

import json

from triton_repo.core.errors import TritonRepoError
from triton_repo.core.log import info, warn
from triton_repo.core.storage import ObjectStoreUrl, check_relative_path
from triton_repo.repo.publish import MANIFEST, MANIFEST_FORMAT
from triton_repo.repo.store.client import Store
from triton_repo.repo.store.layout import CONFIG, held, numbered, store_key
from triton_repo.repo.writer import StagedModel


def read_store_manifest(store: Store) -> dict | None:
    """manifest.json at the repository's root, or None for an empty repository."""
    return _parsed(store, store.read(store.url.key(MANIFEST)))


def read_manifest_with_etag(store: Store) -> tuple[dict | None, str | None]:
    """manifest.json and its ETag (what a write over it names in If-Match); (None, None) when absent."""
    data, etag = store.read_with_etag(store.url.key(MANIFEST))
    return _parsed(store, data), etag


def _parsed(store: Store, data: bytes | None) -> dict | None:
    if data is None:
        return None
    try:
        return json.loads(data)
    except json.JSONDecodeError as error:
        raise TritonRepoError(
            f"{store.url.url_of(MANIFEST)}: not valid JSON ({error.msg} at line {error.lineno}); publish the "
            "repository again into a new prefix"
        ) from None


def write_store_manifest(store: Store, manifest: dict, etag: str | None) -> str:
    """Write manifest.json only over the version `etag` names (If-Match; None: only where there is none,
    If-None-Match); WriteConflict when someone wrote it since. Returns the new ETag."""
    body = json.dumps({**manifest, "format": MANIFEST_FORMAT, "storage": "s3"}, indent=2, sort_keys=True)
    data = (body + "\n").encode()
    key = store.url.key(MANIFEST)
    return store.write(key, data, if_match=etag) if etag else store.write(key, data, overwrite=False)


def merge_manifest(fresh: dict | None, ours: dict, changed: set[str]) -> dict:
    """`ours` laid over a manifest someone else wrote meanwhile: their entries stay, except those of the
    models this publish changed (`changed`: ours, or removed when ours has none, a retired model)."""
    merged = {**(fresh or {}), **{k: v for k, v in ours.items() if k != "models"}}
    models = dict((fresh or {}).get("models", {}))
    for name in changed:
        if name in ours["models"]:
            models[name] = ours["models"][name]
        else:
            models.pop(name, None)
    merged["models"] = models
    return merged


def check_names(url: ObjectStoreUrl, staged: list[StagedModel]) -> None:
    """Every model name and every object path it will have, against Triton's S3 path rule."""
    for model in staged:
        for relative in model.manifest_entry["files"]:
            check_relative_path(url, model.name, store_key(relative, 1) or relative)


def verify_versions(store: Store, name: str, entry: dict, versions: list[int], uploaded: bool = False) -> int:
    """The objects of `versions` (and of their config) must be exactly entry["files"]' and hash to it;
    returns the count.

    Raises naming the first object that is missing, differs or was added.
    """
    prefix = store.url.key(name) + "/"
    present = {
        relative for o in store.list(prefix) if held(entry, versions, relative := o.key.removeprefix(prefix))
    }
    recorded = {k: v for k, v in entry["files"].items() if held(entry, versions, k)}
    when = "just uploaded, read back" if uploaded else "published"
    for relative, digest in sorted(recorded.items()):
        url = store.url.url_of(name, relative)
        if relative not in present:
            raise TritonRepoError(f"{url} is missing ({when}); publish again")
        actual = store.sha256(store.url.key(name, relative))
        if actual != digest:
            raise TritonRepoError(
                f"{url}: its sha256 differs from manifest.json ({when}; modified in the bucket?); it is not "
                "served: publish again (a new version), or restore the object"
            )
    extra = sorted(present - set(recorded))
    if extra:
        raise TritonRepoError(
            f"{store.url.url_of(name, extra[0])} is not in manifest.json (added after publishing); remove it"
        )
    return len(recorded)


def verify_store(store: Store, manifest: dict) -> int:
    """Every served object of every model, and each config.pbtxt, hashed against the manifest."""
    import hashlib

    checked = 0
    for name, entry in sorted(manifest["models"].items()):
        checked += verify_versions(store, name, entry, entry["versions"])
        pointer = store.read(store.url.key(name, CONFIG))
        if pointer is None or hashlib.sha256(pointer).hexdigest() != entry["files"].get(CONFIG):
            raise TritonRepoError(
                f"{store.url.url_of(name, CONFIG)} differs from manifest.json (a publish interrupted between "
                "its pointer and its manifest, or an edit in the bucket); publish again"
            )
        checked += 1
    return checked


def model_dirs(store: Store) -> dict[str, list[str]]:
    """Top-level directory name -> its keys, below the repository prefix."""
    root = store.url.key() + "/" if store.url.key() else ""
    found: dict[str, list[str]] = {}
    for stored in store.list(root):
        relative = stored.key.removeprefix(root)
        head, slash, _ = relative.partition("/")
        if slash:
            found.setdefault(head, []).append(stored.key)
    return found


def remove_leftovers(store: Store, models: dict) -> None:
    """Delete model directories without config.pbtxt that the manifest does not list: what a publish
    killed during a new model's first upload left. Triton fails to start (--load-model=*, POLL, NONE)
    on a directory without config.pbtxt, so none may stay."""
    root = store.url.key() + "/" if store.url.key() else ""
    for name, keys in sorted(model_dirs(store).items()):
        if name in models or f"{root}{name}/{CONFIG}" in keys:
            continue
        ours = all(numbered(k.removeprefix(f"{root}{name}/")) is not None for k in keys)
        if ours:
            store.delete(keys)
            info(f"  removed {store.url.url_of(name)}/: {len(keys)} objects an interrupted publish left")
        else:
            warn(
                f"{store.url.url_of(name)}/ has no config.pbtxt and is not in manifest.json: tritonserver "
                "refuses to start on such a directory; remove it from the bucket"
            )


def warn_prefix_overlap(store: Store) -> None:
    """KServe's storage initializer matches storageUri as a raw prefix: `repo` also pulls `repo-old/`."""
    prefix = store.url.key()
    if not prefix:
        return
    others = sorted(o.key for o in store.list(prefix) if not o.key.startswith(prefix + "/"))
    if others:
        warn(
            f"{store.url}: keys beside the prefix start with it too ({others[0]}...); KServe's storageUri "
            f"{store.url} would download them as well; use a prefix no other key starts with"
        )
