"""One publish's (or rollback's) hold on a bucket prefix: conditional writes checked, the publish lease
taken (store/lease.py), manifest.json read only after that, and written back only over what was read.

The conditional manifest write is the second guard, for a writer that does not take the lease (an older
triton-repo): on a conflict the fresh manifest is read again and this publish's own entries are laid over
it, so no other model's entry is ever dropped.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from triton_repo.core.log import warn
from triton_repo.repo.publish import MANIFEST
from triton_repo.repo.store.client import ObjectStoreError, Store, WriteConflict
from triton_repo.repo.store.lease import Lease, check_conditional_writes, remove_stale_probes
from triton_repo.repo.store.manifest import merge_manifest, read_manifest_with_etag, write_store_manifest

MANIFEST_TRIES = 5


@dataclass
class PublishSession:
    """The lease held, and manifest.json as this publish last read or wrote it (None: there is none)."""

    store: Store
    lease: Lease
    manifest: dict | None
    etag: str | None

    def check(self, what: str) -> None:
        """Before writing `what`: the lease renewed, or a one-line error when it was lost."""
        self.lease.check(what)

    def write_manifest(self, changed: Iterable[str]) -> None:
        """Write `manifest` over the version read. When someone wrote it meanwhile without the lease,
        re-read it, keep its entries but those of `changed` (the models this publish switched or
        retired), and try again."""
        changed = set(changed)
        for _ in range(MANIFEST_TRIES):
            self.check(MANIFEST)
            try:
                self.etag = write_store_manifest(self.store, self.manifest, self.etag)
                return
            except WriteConflict:
                fresh, self.etag = read_manifest_with_etag(self.store)
                merged = merge_manifest(fresh, self.manifest, changed)
                self.manifest.clear()
                self.manifest.update(merged)
                warn(
                    f"{self.store.url.url_of(MANIFEST)} was written meanwhile by a publisher without the lease "
                    "(an older triton-repo?); its entries are kept, this publish's laid over them"
                )
        raise ObjectStoreError(
            f"{self.store.url.url_of(MANIFEST)}: written by someone else {MANIFEST_TRIES} times while this "
            "publish tried to write it; stop the other publisher (an older triton-repo?) and publish again"
        )


@contextmanager
def publish_session(store: Store, doing: str) -> Iterator[PublishSession]:
    """Probe (once per store), take the lease (waiting for it), read the manifest; release at the end."""
    check_conditional_writes(store)
    with Lease(store, doing) as lease:
        remove_stale_probes(store, lease)
        manifest, etag = read_manifest_with_etag(store)
        yield PublishSession(store, lease, manifest, etag)
