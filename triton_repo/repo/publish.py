"""Publish staged models into the repository: versioned, atomic, verified, loaded by a running server.

A model whose files changed becomes a new numeric version directory, prepared in the staging area. With
the config unchanged, the new version directory is renamed into the published one (and versions past
keep_versions moved out), so Triton loads it beside the versions it serves and reloads none of them (a
stateful model's live sequences stay in them); with a new config the new model directory, which holds
only the new version, is swapped into place in one step (renameat2 RENAME_EXCHANGE). Either way a server
never sees a half-written model.
When a server runs on the repository (explicit model control), each changed model is then loaded: Triton
keeps serving the previous version until the new one is READY. If a load fails, every model of this
publish is swapped back, so the previous versions keep serving and nothing is published.

A config change (config.pbtxt, warmup, labels) starts a new version history, because Triton serves every
version with the one config. The model directory it replaces (the old config and its versions) is kept
in the history area beside the repository, and the manifest entry records it under `previous`, so
`rollback` can return to it: one level per model.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from triton_repo.core.errors import TritonRepoError
from triton_repo.core.fingerprint import sha256_file
from triton_repo.repo.config import parse_config
from triton_repo.repo.writer import VERSION, StagedModel, file_hashes

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 2  # 2: numbered versions (version, versions, last_version, published)
# an ensemble loads after the models it calls
LOAD_ORDER = {"model": 0, "preprocess": 1, "postprocess": 1, "ensemble": 2}


class ModelControl(Protocol):
    """What publishing needs of a server: triton_repo.serve.model_control.ModelControl."""

    http_url: str

    def load(self, name: str) -> None: ...

    def unload(self, name: str) -> None: ...


@dataclass(frozen=True)
class Change:
    """A model directory to swap in: complete, in the staging area, with its manifest entry."""

    name: str
    path: Path
    entry: dict
    # The directory this change replaces goes to the history area (a config change), not away.
    keeps_replaced: bool = False
    # Restored from the history area (a rollback across a config change): its history is used up.
    restores_history: bool = False
    # Same config as the published directory: the new version is added to it (and versions past
    # keep_versions moved out), not swapped in as a new directory; see _add_in_place.
    in_place: bool = False


@dataclass(frozen=True)
class Published:
    versions: dict[str, int]  # model -> the version now served by default (its newest)
    kept: dict[str, list[int]]  # model -> every version in the repository after publishing
    retired: list[str]
    loaded: bool  # a running server loaded the changes


def read_manifest(repository: Path) -> dict:
    path = repository / MANIFEST
    if not path.is_file():
        raise TritonRepoError(f"{path}: no repository manifest; build the repository first (make build-repo)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise TritonRepoError(
            f"{path}: not valid JSON ({error.msg} at line {error.lineno}); rebuild the repository"
        ) from None


def write_manifest(repository: Path, manifest: dict) -> None:
    path = repository / MANIFEST
    tmp = path.with_name(MANIFEST + ".tmp")
    tmp.write_text(json.dumps({**manifest, "format": MANIFEST_FORMAT}, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


def versions_of(entry: dict) -> list[int]:
    """The version directories a manifest entry holds, oldest first (format 1 entries hold one)."""
    return list(entry.get("versions", [entry.get("version", int(VERSION))]))


def _version_part(relative: str) -> int | None:
    head = relative.split("/", 1)[0]
    return int(head) if head.isdigit() and "/" in relative else None


def _in_version(files: dict[str, str], version: int | None) -> dict[str, str]:
    """The files of one version directory (keys relative to it), or those outside every version (None)."""
    if version is None:
        return {k: v for k, v in files.items() if _version_part(k) is None}
    prefix = f"{version}/"
    return {k.removeprefix(prefix): v for k, v in files.items() if k.startswith(prefix)}


def history_root(repository: Path) -> Path:
    """Beside the repository, like the staging area: the model directories a config change replaced."""
    resolved = repository.resolve()
    return resolved.parent / f".{resolved.name}.history"


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def _keep_versions(model_dir: Path) -> int:
    """How many versions Triton serves, from the config: version_policy latest K (Triton's default: 1)."""
    policy = parse_config(model_dir / "config.pbtxt").version_policy
    return policy.latest.num_versions if policy.HasField("latest") else 1


def verify_model(folder: Path, recorded: dict[str, str]) -> int:
    """Every file below `folder` must hash to `recorded` and none may be extra; returns the count.

    Raises TritonRepoError naming the first file that was modified, removed or added.
    """
    present = (
        {
            str(p.relative_to(folder))
            for p in folder.rglob("*")
            # bytecode the python backend wrote as it loaded model.py (not a file named __pycache__)
            if p.is_file() and "__pycache__" not in p.parts[:-1]
        }
        if folder.is_dir()
        else set()
    )
    for relative, digest in sorted(recorded.items()):
        path = folder / relative
        if relative not in present:
            problem = "is missing"
        elif sha256_file(path) != digest:
            problem = "was modified after it was published (its sha256 differs from manifest.json)"
        else:
            continue
        raise TritonRepoError(f"{path} {problem}; rebuild with `make build-repo` (or restore the file)")
    extra = sorted(present - set(recorded))
    if extra:
        raise TritonRepoError(
            f"{folder / extra[0]} is not in manifest.json (added after publishing); remove it or rebuild"
        )
    return len(recorded)


def verify_published(repository: Path) -> int:
    """Every file of every published model must hash to what manifest.json recorded, and no model
    directory may hold a file the manifest does not list. Returns the number of files checked."""
    manifest = read_manifest(repository)
    return sum(
        verify_model(repository / model, entry.get("files", {}))
        for model, entry in sorted(manifest["models"].items())
    )


def _link_tree(source: Path, target: Path) -> None:
    """Hard links of every file below `source` (same filesystem): a kept version costs no copy."""
    for path in sorted(source.rglob("*")):
        if "__pycache__" in path.parts[:-1] or (path.name == "__pycache__" and path.is_dir()):
            continue  # bytecode the server wrote (a stateful model's version has a file of that name)
        destination = target / path.relative_to(source)
        if path.is_dir():
            destination.mkdir(parents=True, exist_ok=True)
        else:
            destination.parent.mkdir(parents=True, exist_ok=True)
            os.link(path, destination)


def _unchanged(model: StagedModel, previous: dict | None, folder: Path) -> bool:
    """The staged model equals the newest published version and the files beside the versions."""
    if previous is None or not folder.is_dir():
        return False
    staged = model.manifest_entry["files"]
    newest = versions_of(previous)[-1]
    return _in_version(staged, None) == _in_version(previous["files"], None) and _in_version(
        staged, int(VERSION)
    ) == _in_version(previous["files"], newest)


def next_version(model: StagedModel, previous: dict | None, folder: Path) -> Change:
    """The staged model as version N+1, and its manifest entry (the files of N+1 and the kept versions).

    Earlier versions are kept (where they are published, see _add_in_place) only while config.pbtxt and
    warmup/ are unchanged, because Triton serves every version with the one config; a config change
    starts a new version history.
    """
    staged_dir = model.path
    on_disk = (
        [int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit()] if folder.is_dir() else []
    )
    last = previous.get("last_version", versions_of(previous)[-1]) if previous else 0
    number = max([last, *on_disk]) + 1
    fresh = _in_version(model.manifest_entry["files"], int(VERSION))
    if number != int(VERSION):
        (staged_dir / VERSION).rename(staged_dir / str(number))
    kept: list[int] = []
    limit = _keep_versions(staged_dir) - 1
    same_config = previous is not None and _in_version(previous["files"], None) == _in_version(
        model.manifest_entry["files"], None
    )
    if previous is not None and same_config:
        before = previous.get("previous")  # the state before the last config change stays reachable
    elif previous is not None and folder.is_dir():
        before = {k: v for k, v in previous.items() if k != "previous"}  # this change replaces it
    else:
        before = None
    if previous is not None and folder.is_dir() and same_config and limit > 0:
        for version in versions_of(previous)[-limit:]:  # stay where they are (see _add_in_place)
            verify_model(folder / str(version), _in_version(previous["files"], version))
            kept.append(version)
    files = file_hashes(staged_dir)
    files |= {k: v for k, v in previous["files"].items() if _version_part(k) in kept} if kept else {}
    if _in_version(files, number) != fresh:
        raise TritonRepoError(
            f"{staged_dir}: staged files changed between staging and publishing; run the build again"
        )
    now = _now()
    history = previous.get("published", {}) if previous else {}
    entry = {
        **model.manifest_entry,
        "version": number,
        "versions": [*kept, number],
        "last_version": number,
        "published_at": now,
        "published": {**{str(v): history.get(str(v)) for v in kept}, str(number): now},
        "files": files,
    }
    if "golden" in entry:
        entry["golden"] = f"{number}/{entry['golden'].split('/', 1)[1]}"
    if before is not None:
        entry["previous"] = before
    in_place = previous is not None and folder.is_dir() and same_config
    return Change(
        model.name,
        staged_dir,
        entry,
        keeps_replaced=before is not None and not same_config,
        in_place=in_place,
    )


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two directories (Linux renameat2). False when the kernel or libc lacks it."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except AttributeError:
        return False
    result = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    return result == 0


def _put_in_place(staged: Path, target: Path) -> Path | None:
    """Move `staged` to `target` in one step; returns where the previous directory now is (or None)."""
    if not target.exists():
        staged.rename(target)
        return None
    if _exchange(staged, target):
        return staged  # now holds the previous directory
    previous = staged.with_name(staged.name + ".previous")  # no renameat2: two renames, a brief gap
    target.rename(previous)
    staged.rename(target)
    return previous


def _add_in_place(change: Change, target: Path) -> list[tuple[Path, Path]]:
    """The new version directory renamed into the published model directory, and the versions it no
    longer keeps moved out (into the staged directory); returns those moves, to undo them.

    Triton reloads a version whose directory, or a file beside config.pbtxt, is newer than when it was
    loaded (mtime or ctime). Swapping in a new directory of hard links renews every ctime, so every
    version would reload and lose the sequences live in it; adding the version leaves the others as
    they were, and Triton loads only the new one beside them.
    """
    number = str(change.entry["version"])
    moves = [(change.path / number, target / number)]
    keep = {str(v) for v in change.entry["versions"]}
    for child in sorted(target.iterdir()):
        if child.name.isdigit() and child.name not in keep:
            moves.append((child, change.path / f".dropped-{child.name}"))
    for source, destination in moves:
        shutil.rmtree(destination, ignore_errors=True)
        source.rename(destination)
    return moves


def _take_out(target: Path, staging: Path) -> None:
    """Out of the server's sight in one rename, then deleted."""
    gone = staging / f".{target.name}.removed"
    shutil.rmtree(gone, ignore_errors=True)
    target.rename(gone)
    shutil.rmtree(gone)


def swap_in(changes: list[Change], repository: Path, control: ModelControl | None) -> None:
    """Put every change in place, verify it, and have the running server load it; all or nothing.

    On any failure (a file that does not verify, a load the server refuses) every model is put back as
    it was and the server reloads the ones it had already switched, so the previous versions serve on.
    """
    done: list[tuple[Change, Path | None]] = []
    loaded: list[Change] = []
    try:
        for change in changes:
            if change.in_place:
                done.append((change, _add_in_place(change, repository / change.name)))
            else:
                done.append((change, _put_in_place(change.path, repository / change.name)))
            verify_model(repository / change.name, change.entry["files"])
        if control is not None:
            for change in sorted(changes, key=lambda c: LOAD_ORDER.get(c.entry.get("kind", "model"), 0)):
                control.load(change.name)  # returns when the new version is READY (or failed)
                loaded.append(change)
    except BaseException:
        for change, previous in reversed(done):
            target = repository / change.name
            if change.in_place:
                for source, destination in reversed(previous):
                    destination.rename(source)
            elif previous is None:
                _take_out(target, change.path.parent)
            elif not _exchange(previous, target):
                shutil.rmtree(target)
                previous.rename(target)
        if control is not None:
            for change, previous in reversed([d for d in done if d[0] in loaded]):
                if previous is None and not change.in_place:
                    control.unload(change.name)
                else:
                    control.load(change.name)  # back to the versions it served before
        raise
    history = history_root(repository)
    for change, previous in done:
        if change.in_place:
            shutil.rmtree(change.path)  # the staged files not added, and the versions moved out
        elif change.keeps_replaced and previous is not None and previous.exists():
            history.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(history / change.name, ignore_errors=True)
            previous.rename(history / change.name)
        elif previous is not None and previous.exists():
            shutil.rmtree(previous)
        if change.restores_history:
            shutil.rmtree(history / change.name, ignore_errors=True)


def publish(
    staged: list[StagedModel],
    repository: Path,
    tool_versions: dict[str, str],
    retire: tuple[str, ...] = (),
    control: ModelControl | None = None,
) -> Published:
    """Publish each staged model whose files changed as its next version, then rewrite the manifest.

    A model identical to its newest published version is left alone; a build with nothing changed
    publishes nothing. Models named in `retire` (variants a build refused, or no longer asked for) are
    removed and unloaded, so a server never keeps serving one that no longer passes.
    """
    repository.mkdir(parents=True, exist_ok=True)
    manifest = (
        read_manifest(repository)
        if (repository / MANIFEST).is_file()
        else {"format": MANIFEST_FORMAT, "models": {}}
    )
    models = manifest["models"]
    changes = [
        next_version(model, models.get(model.name), repository / model.name)
        for model in staged
        if not _unchanged(model, models.get(model.name), repository / model.name)
    ]
    retired = [name for name in retire if name in models or (repository / name).is_dir()]
    if not changes and not retired:
        return Published({}, {}, [], False)
    swap_in(changes, repository, control)
    staging = changes[0].path.parent if changes else repository.parent
    for name in retired:
        if (repository / name).is_dir():
            _take_out(repository / name, staging)
        shutil.rmtree(history_root(repository) / name, ignore_errors=True)
        if control is not None and name in models:
            with contextlib.suppress(TritonRepoError):  # not loaded (it failed earlier): nothing to stop
                control.unload(name)
        models.pop(name, None)
    for change in changes:
        models[change.name] = change.entry
    manifest["tools"] = tool_versions
    write_manifest(repository, manifest)
    return Published(
        {c.name: c.entry["version"] for c in changes},
        {c.name: c.entry["versions"] for c in changes},
        retired,
        control is not None,
    )


def rollback(
    names: list[str], repository: Path, staging: Path, control: ModelControl | None
) -> dict[str, tuple[int, int]]:
    """Return each model to its previous published state, so that serves again; all or nothing.

    Within one config, the newest version is removed and the one before it serves. When the newest
    version started a new config (its history has one version), the model directory the config change
    replaced (old config.pbtxt and its versions) is restored from the history area.

    Returns model -> (version removed, version now served). Version numbers are never reused: the next
    publish of the model gets a number above the removed one.
    """
    manifest = read_manifest(repository)
    models = manifest["models"]
    changes, moves = [], {}
    for name in names:
        if name not in models:
            raise TritonRepoError(
                f"{name}: not in {repository / MANIFEST}; published models: {', '.join(sorted(models))}"
            )
        entry = models[name]
        versions = versions_of(entry)
        if len(versions) < 2:
            change = _restore_replaced(name, entry, repository, staging)
            changes.append(change)
            moves[name] = (versions[-1], change.entry["version"])
            continue
        folder = repository / name
        verify_model(folder, entry["files"])
        newest, previous = versions[-2:][::-1]
        target = staging / name
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        for path in folder.iterdir():
            if path.name != str(newest):
                if path.is_dir():
                    _link_tree(path, target / path.name)
                else:
                    os.link(path, target / path.name)
        rolled = {
            **entry,
            "version": previous,
            "versions": versions[:-1],
            "published": {k: v for k, v in entry.get("published", {}).items() if k != str(newest)},
            "files": file_hashes(target),
        }
        if "golden" in rolled:
            rolled["golden"] = f"{previous}/{entry['golden'].split('/', 1)[1]}"
        changes.append(Change(name, target, rolled))
        moves[name] = (newest, previous)
    swap_in(changes, repository, control)
    for change in changes:
        models[change.name] = change.entry
    write_manifest(repository, manifest)
    return moves


def _restore_replaced(name: str, entry: dict, repository: Path, staging: Path) -> Change:
    """The model directory a config change replaced, from the history area, as the change to swap in."""
    before = entry.get("previous")
    saved = history_root(repository) / name
    if before is None or not saved.is_dir():
        why = (
            "its history area was removed"
            if before is not None
            else "triton.keep_versions is 1, or it is the model's first publish"
        )
        raise TritonRepoError(
            f"{name}: only version {versions_of(entry)[-1]} is in {repository} and no earlier state is "
            f"kept, nothing to roll back to ({why})"
        )
    verify_model(repository / name, entry["files"])
    verify_model(saved, before["files"])
    target = staging / name
    shutil.rmtree(target, ignore_errors=True)
    _link_tree(saved, target)
    restored = {**before, "last_version": max(entry.get("last_version", 0), before.get("last_version", 0))}
    return Change(name, target, restored, restores_history=True)
