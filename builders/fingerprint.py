"""Content hashes that key each stage, so a rebuild with nothing changed does nothing."""

from __future__ import annotations

import hashlib
from pathlib import Path

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
