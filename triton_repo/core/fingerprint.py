"""Content hashes that key each stage, so a rebuild with nothing changed does nothing."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import numpy as np

_SKIP_DIRS = {"__pycache__", ".pytest_cache"}


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def folder_fingerprint(folder: Path, *extra: str, skip_files: frozenset[str] = frozenset()) -> str:
    """sha256 over every file's relative path and content below `folder` (but `skip_files`), plus `extra`."""
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if path.is_file() and not _SKIP_DIRS.intersection(relative.parts) and str(relative) not in skip_files:
            digest.update(str(path.relative_to(folder)).encode())
            digest.update(sha256_file(path).encode())
    for item in extra:
        digest.update(item.encode())
    return digest.hexdigest()


def arrays_digest(arrays: dict[str, np.ndarray] | None) -> str:
    """sha256 over named arrays (names, dtypes, shapes and bytes): what a data set's caches are keyed by."""
    digest = hashlib.sha256()
    for name in sorted(arrays or {}):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}|{array.dtype}|{array.shape}|".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


@functools.cache
def installed_packages() -> str:
    """sha256 of every installed distribution's name and version in this interpreter (about 0.2 s); a set,
    since `python -m` also finds a source checkout's own egg-info in the working directory."""
    from importlib import metadata

    names = sorted({f"{d.metadata['Name']}=={d.version}" for d in metadata.distributions()})
    return hashlib.sha256("\n".join(names).encode()).hexdigest()


def package_version(*names: str) -> str:
    """The installed version of the first of `names` that is installed (without importing it)."""
    from importlib import metadata

    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    raise metadata.PackageNotFoundError(names[0])
