"""What must hold of an object-storage repository after any number of publishes, killed or not, checked
from outside through the bucket, the publishers' logs and the servers (the chaos test's assertions).
Each check returns its findings as lines, so one run reports all of them."""

from __future__ import annotations

from collections import Counter

from tests.chaos_kills import Interrupted


def logged_publishes_kept(done: list[dict], manifest: dict) -> list[str]:
    """Every publish logged as done is kept: its model is in the manifest, and its version is one the
    manifest serves or older than all of them (keep_versions drops old versions legitimately). A logged
    version newer than the oldest kept one but not kept was lost: a later publish did not build on it.
    No two publishes may claim the same version of a model."""
    problems = []
    for (model, version), count in sorted(Counter((d["model"], d["version"]) for d in done).items()):
        if count > 1:
            problems.append(f"{model} version {version}: logged as published by {count} publishes")
    for model in sorted({d["model"] for d in done}):
        entry = manifest["models"].get(model)
        logged = sorted((d for d in done if d["model"] == model), key=lambda d: d["version"])
        if entry is None:
            problems.append(
                f"{model}: {len(logged)} publishes logged as done, but it is not in manifest.json"
            )
            continue
        kept = entry["versions"]
        for record in logged:
            version = record["version"]
            if version in kept or version < min(kept):
                continue
            newer = " (newer than the manifest's newest)" if version > entry["version"] else ""
            problems.append(
                f"{model} version {version}{newer}, published by {record['publisher']} in round "
                f"{record['round']}, is lost: manifest.json serves {kept}"
            )
    return problems


def versions_only_grow(done: list[dict]) -> list[str]:
    """A publish that started after another publish of the same model returned has a higher version:
    numbers never go back, and a number once published is never published again."""
    problems = []
    for model in sorted({d["model"] for d in done}):
        logged = sorted((d for d in done if d["model"] == model), key=lambda d: d["returned"])
        for before in logged:
            later = [
                d for d in logged if d["started"] > before["returned"] and d["version"] <= before["version"]
            ]
            problems += [
                f"{model} version {d['version']} ({d['publisher']} round {d['round']}) was published after "
                f"version {before['version']} ({before['publisher']} round {before['round']}) had been"
                for d in later
            ]
    return problems


def pointer_versions(store, model: str) -> list[int] | None:
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    from triton_repo.repo.store.layout import CONFIG

    pointer = store.read(store.url.key(model, CONFIG))
    if pointer is None:
        return None
    return list(text_format.Parse(pointer.decode(), mc.ModelConfig()).version_policy.specific.versions)


def models_match_manifest(
    store, manifest: dict, interrupted: dict[str, Interrupted]
) -> tuple[list[str], list[str]]:
    """Per model: its served objects hash to the manifest, and its config.pbtxt names exactly the
    manifest's versions, unless a killed publish wrote that pointer before the manifest (a note, not a
    problem). Returns (problems, notes)."""
    import hashlib

    from triton_repo.core.errors import TritonRepoError
    from triton_repo.repo.store.layout import CONFIG
    from triton_repo.repo.store.manifest import verify_versions

    problems, notes = [], []
    for model, entry in sorted(manifest["models"].items()):
        try:
            verify_versions(store, model, entry, entry["versions"])
        except TritonRepoError as error:
            problems.append(f"{model}: {error}")
        named = pointer_versions(store, model)
        if named is None:
            problems.append(f"{model}: no config.pbtxt in the bucket")
            continue
        data = store.read(store.url.key(model, CONFIG))
        if named == entry["versions"] and hashlib.sha256(data).hexdigest() == entry["files"].get(CONFIG):
            continue
        killed = [name for name, found in interrupted.items() if found.pointer_ahead(model, named)]
        mismatch = f"{model}: config.pbtxt names versions {named}, manifest.json holds {entry['versions']}"
        if killed:
            notes.append(f"{mismatch}: {killed[0]} was killed after writing it, before the manifest")
        else:
            problems.append(mismatch)
    return problems, notes


def ready_as_manifest(http_port: int, manifest: dict, which: str) -> list[str]:
    """Every model of the manifest READY in exactly its versions."""
    from triton_repo.serve.model_control import ModelControl

    ready = ModelControl(f"http://127.0.0.1:{http_port}", timeout=30).ready_versions()
    if ready is None:
        return [f"{which} did not answer its repository index"]
    problems = []
    for model, entry in sorted(manifest["models"].items()):
        expected = {str(v) for v in entry["versions"]}
        if ready.get(model, set()) != expected:
            problems.append(
                f"{which}: {model} READY in {sorted(ready.get(model, set()))}, manifest: {sorted(expected)}"
            )
    return problems


def leftovers(store, manifest: dict) -> tuple[list[str], list[str]]:
    """Objects under the prefix the manifest does not reference. A version directory or a lease object
    (the lease is deleted when released) is a problem; anything else a note. Returns (problems, notes)."""
    from triton_repo.repo.publish import MANIFEST
    from triton_repo.repo.store.layout import numbered

    root = store.url.key()
    referenced = {store.url.key(MANIFEST)} | {
        store.url.key(model, relative)
        for model, entry in manifest["models"].items()
        for relative in entry["files"]
    }
    versions: Counter = Counter()
    problems, notes = [], []
    for stored in store.list(root + "/"):
        if stored.key in referenced:
            continue
        model, _, relative = stored.key.removeprefix(root + "/").partition("/")
        version = numbered(relative) if relative else None  # a version's or a config's objects
        if version is not None:
            versions[(model, version)] += 1
        elif "lease" in stored.key.rsplit("/", 1)[-1]:
            body = (store.read(stored.key) or b"")[:300].decode(errors="replace")
            problems.append(f"{stored.key}: a lease left after the last publish returned: {body}")
        else:
            notes.append(f"{stored.key}: left in the bucket, not referenced by manifest.json")
    problems += [
        f"{model}: {count} objects of version or config {version} manifest.json does not reference"
        for (model, version), count in sorted(versions.items())
    ]
    return problems, notes
