"""The publish lock: one build or rollback publishes into a repository at a time.

It lives in the core because three places share it: the builders take it, and the stub watchdog reads
/proc/locks to see whether a publish is in progress (it must not reload models in the middle of one).
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from triton_repo.core.errors import TritonRepoError


def repository_lock_path(repository: Path) -> Path:
    """Beside the repository, hidden, like the staging area."""
    resolved = repository.resolve()
    return resolved.parent / f".{resolved.name}.lock"


@contextmanager
def repository_lock(repository: Path) -> Iterator[None]:
    """Held by a build or a rollback while it publishes; a second one fails at once."""
    path = repository_lock_path(repository)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise TritonRepoError(
                f"{repository}: another triton-repo build or rollback is publishing into it; "
                "wait for it to finish"
            ) from None
        yield
