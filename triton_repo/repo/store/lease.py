"""The publish lease: one publisher at a time in a bucket prefix, on whatever machines they run.

`<prefix>/publish.lease` (a file at the repository's root, which Triton ignores) names its holder. It is
taken with a conditional write: created with If-None-Match: *, or, when stale, replaced with If-Match on
the ETag that was read; of publishers racing, exactly one write succeeds. The holder renews it every
ttl/3 by rewriting it with If-Match on its own last ETag (a new counter, so a new ETag), and renews it
once more before each write that changes what is served (`check`): a publisher that stalled past the
ttl finds its lease taken and writes nothing. A waiter breaks a lease whose ETag it has seen unchanged
for longer than the ttl, on its own monotonic clock (clocks across machines are never compared), or at
once when the holder ran on this machine and its process is gone. Releasing renews it once more (so it
is ours for another ttl) and deletes it; conditional DELETE is not relied on (few stores honour it).

Before the first lease on a store, `check_conditional_writes` makes sure the store honours
If-None-Match and If-Match at all: one that ignores them would let two publishers both "win".
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import secrets
import socket
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from triton_repo.core.errors import TritonRepoError
from triton_repo.core.log import info, warn
from triton_repo.repo.store.client import ObjectStoreError, Store, WriteConflict

LEASE = "publish.lease"
PROBE = "publish.probe"
TTL_ENV = "TRITON_REPO_LEASE_SECONDS"
WAIT_ENV = "TRITON_REPO_LEASE_WAIT_SECONDS"
WRONG_ETAG = '"00000000000000000000000000000000"'
PROBE_LEFT_S = 600.0  # a probe key older than this was left by a process killed while probing


@dataclass(frozen=True)
class LeaseTiming:
    """How long a lease lives unrenewed (ttl), how long to wait for one, how often to look and to say so."""

    ttl: float = 60.0
    wait: float = 600.0
    poll: float = 1.0
    progress: float = 10.0

    @classmethod
    def from_environment(cls) -> LeaseTiming:
        ttl = _seconds(TTL_ENV, cls.ttl)
        return cls(ttl=ttl, wait=_seconds(WAIT_ENV, cls.wait), poll=min(cls.poll, ttl / 3))


def _seconds(name: str, default: float) -> float:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise TritonRepoError(f"{name}={text!r}: must be a number of seconds above 0 (default {default:g})")
    return value


@dataclass(frozen=True)
class Holder:
    """The lease's content as read: who holds it, doing what, since when (by its own clock)."""

    body: dict

    @classmethod
    def parse(cls, data: bytes) -> Holder:
        try:
            body = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        return cls(body if isinstance(body, dict) else {"doing": "unreadable lease content"})

    def gone_here(self, machine: dict[str, str]) -> bool:
        """True when the holder ran on this machine (same boot, same pid namespace) and its process is
        gone: a killed publisher rerun on the same host need not wait for the ttl."""
        owner = self.body.get("owner") or {}
        pid = owner.get("pid")
        if not machine or not isinstance(pid, int) or any(owner.get(k) != v for k, v in machine.items()):
            return False
        return not _alive(pid)

    @property
    def ttl(self) -> float:
        value = self.body.get("ttl_seconds")
        return float(value) if isinstance(value, int | float) else 0.0

    @property
    def owner_id(self) -> str:
        return str((self.body.get("owner") or {}).get("id", ""))

    def __str__(self) -> str:
        owner = self.body.get("owner")
        if not owner:
            return str(self.body.get("doing", "an unknown publisher"))
        who = f"{owner.get('host', '?')} pid {owner.get('pid', '?')}"
        return f"{who} ({self.body.get('doing', '?')}, taken {self.body.get('taken_at', '?')} by its clock)"


class Lease:
    """The publish lease of one store prefix, held between `take()` and `release()` (or as a context)."""

    def __init__(
        self,
        store: Store,
        doing: str,
        timing: LeaseTiming | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.store, self.doing = store, doing
        self.timing = timing or LeaseTiming.from_environment()
        self.clock, self.sleep = clock, sleep
        self.key = store.url.key(LEASE)
        self.where = store.url.url_of(LEASE)
        self.machine = this_machine()
        self.owner = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "id": secrets.token_hex(8),
            **self.machine,
        }
        self.etag: str | None = None  # of our own last write: the only one we overwrite
        self.lost: Holder | None = None  # who took it from us
        self.counter = 0
        self.taken_at = ""
        self._lock = threading.Lock()  # the renewal thread and the caller write in turn
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Lease:
        self.take()
        self._thread = threading.Thread(target=self._renewing, name="publish-lease", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, kind: object, *exc: object) -> None:
        self.release(quiet=kind is not None)

    # -- taking -------------------------------------------------------------------------------------

    def take(self) -> None:
        """Wait until the lease is free or stale, and take it; a progress line every ~10 s."""
        started = told = self.clock()
        seen_etag, seen_since = None, started  # unchanged since then: not renewed
        seen_owner, owner_since = "", started  # held by the same publisher since then
        while True:
            data, etag = self.store.read_with_etag(self.key)
            holder = Holder.parse(data) if data is not None else None
            if holder is None or holder.gone_here(self.machine):
                if self._write_over(etag):
                    if holder is not None:
                        info(f"  broke the publish lease of {holder}: its process on this machine is gone")
                    return
                self.sleep(self.timing.poll)  # another publisher took it first: it holds it now
                continue
            now = self.clock()
            if etag != seen_etag:
                seen_etag, seen_since = etag, now
            if holder.owner_id != seen_owner:
                seen_owner, owner_since = holder.owner_id, now
            ttl = max(self.timing.ttl, holder.ttl)
            if now - seen_since > ttl:
                if self._write_over(etag):
                    info(
                        f"  broke the publish lease of {holder}: not renewed for {now - seen_since:.0f} s "
                        f"(ttl {ttl:g} s); this publish cleans what it left"
                    )
                    return
                self.sleep(self.timing.poll)  # another waiter broke it first
                continue
            if now - started >= self.timing.wait:
                raise self._timed_out(holder, now - started)
            if now - told >= self.timing.progress:
                info(
                    f"  waiting for the publish lease of {self.store.url}: held by {holder}, for at least "
                    f"{now - owner_since:.0f} s; waited {now - started:.0f} s of {self.timing.wait:g}"
                )
                told = now
            self.sleep(self.timing.poll)

    def _write_over(self, etag: str | None) -> bool:
        """Take the lease over the state read (absent: If-None-Match; stale: If-Match)."""
        self.counter = 0
        self.taken_at = _utc_now()
        data = self._content()
        try:
            if etag is None:
                self.etag = self.store.write(self.key, data, overwrite=False)
            else:
                self.etag = self.store.write(self.key, data, if_match=etag)
        except WriteConflict:
            return False
        return True

    def _timed_out(self, holder: Holder, waited: float) -> ObjectStoreError:
        return ObjectStoreError(
            f"{self.where}: held by {holder} and still renewed after {waited:.0f} s of waiting; let that publish "
            f"finish (or stop it), raise {WAIT_ENV}, or if its process is gone delete the lease "
            f"(aws s3 rm s3://{self.store.url.bucket}/{self.key})"
        )

    # -- holding ------------------------------------------------------------------------------------

    def check(self, what: str) -> None:
        """Renew now, before writing `what`: this publish then holds the lease for another ttl. Raises
        when it was taken meanwhile (this process stalled past the ttl), so `what` is never written."""
        try:
            self._renew()
        except WriteConflict:
            raise ObjectStoreError(
                f"{self.where}: this publish lost its lease to {self.lost} (not renewed for the ttl of "
                f"{self.timing.ttl:g} s: the process stalled?); it stopped before writing {what}; publish again"
            ) from None

    def _renew(self) -> None:
        with self._lock:
            self._rewrite()

    def _rewrite(self) -> None:
        """Our lease written again over our own last ETag; WriteConflict when it was taken from us."""
        if self.lost is not None:
            raise WriteConflict(f"{self.where}: taken by {self.lost}")
        if self.etag is None:
            raise TritonRepoError(f"{self.where}: not held (check() outside the lease)")
        try:
            self.etag = self.store.write(self.key, self._content(), if_match=self.etag)
        except WriteConflict:
            data = self.store.read(self.key)
            gone = {"doing": "another publisher, which has finished since (the lease is gone)"}
            self.lost = Holder.parse(data) if data is not None else Holder(gone)
            raise

    def _renewing(self) -> None:
        """The renewal thread: every ttl/3 until released; a store that does not answer is tried again
        (check() tells the publish if the lease went meanwhile)."""
        while not self._stop.wait(self.timing.ttl / 3):
            try:
                self._renew()
            except WriteConflict:
                return
            except Exception:  # noqa: BLE001 - the network, the store: the next renewal tries again
                continue

    def release(self, quiet: bool = False) -> None:
        """Stop renewing; renew once more (ours for another ttl, so no waiter breaks it meanwhile) and
        delete the lease: free for the next publisher. `quiet`: an error is on its way, say nothing more."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
        with self._lock:
            if self.etag is None:
                return
            if self.lost is not None:
                if not quiet:
                    warn(f"{self.where}: taken by {self.lost} before this publish released it")
                return
            try:
                self._rewrite()
                self.store.delete([self.key])
            except WriteConflict:
                if not quiet:
                    warn(f"{self.where}: taken by {self.lost} before this publish released it")
            except Exception as error:  # noqa: BLE001 - never hide what the publish itself raised
                warn(
                    f"{self.where}: could not release it ({error}); the next publish breaks it after "
                    f"{self.timing.ttl:g} s"
                )
            self.etag = None

    def _content(self) -> bytes:
        self.counter += 1  # every write differs, so every write has a new ETag
        body = {
            "owner": self.owner,
            "doing": self.doing,
            "counter": self.counter,
            "ttl_seconds": self.timing.ttl,
            "taken_at": self.taken_at,
            "written_at": _utc_now(),
        }
        return (json.dumps(body, indent=2, sort_keys=True) + "\n").encode()


def this_machine() -> dict[str, str]:
    """What makes a pid name one process: this boot of this machine, and this pid namespace (empty
    where /proc does not say)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        return {}
    return {"boot_id": boot, "pid_namespace": namespace}


def _alive(pid: int) -> bool:
    """The process exists and is not a zombie (killed, not yet reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def _utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# -- the probe --------------------------------------------------------------------------------------

_PROBED: weakref.WeakSet[Store] = weakref.WeakSet()


def check_conditional_writes(store: Store) -> None:
    """Once per store object: a probe key written twice with If-None-Match (the second must be refused),
    with If-Match on a wrong ETag (refused), on a missing key (refused) and on its own ETag (accepted);
    deleted after."""
    if store in _PROBED:
        return
    key = store.url.key(f"{PROBE}-{secrets.token_hex(6)}")
    absent = f"{key}-absent"
    try:
        store.write(key, b"probe 1\n", overwrite=False)
        ignored = [
            header
            for header, write in (
                ("If-None-Match", lambda: store.write(key, b"probe 2\n", overwrite=False)),
                ("If-Match", lambda: store.write(key, b"probe 3\n", if_match=WRONG_ETAG)),
                ("If-Match on a missing key", lambda: store.write(absent, b"probe\n", if_match=WRONG_ETAG)),
            )
            if not _refused(write)
        ]
        if ignored:
            raise ObjectStoreError(
                f"{store.url}: the object store does not honour conditional writes (If-None-Match/If-Match; "
                f"it ignored {', '.join(ignored)}): concurrent publishers could lose each other's entries; "
                "use an S3 service that does (AWS S3, SeaweedFS, MinIO ...)"
            )
        try:
            _, etag = store.read_with_etag(key)  # as a waiter breaking a stale lease reads it
            store.write(key, b"probe 4\n", if_match=etag)
        except WriteConflict:
            raise ObjectStoreError(
                f"{store.url}: the object store refused If-Match with an object's own ETag: the publish lease "
                "cannot be renewed there; use an S3 service that honours If-Match (AWS S3, SeaweedFS, MinIO ...)"
            ) from None
    finally:
        with contextlib.suppress(ObjectStoreError):
            store.delete([key, absent])
    _PROBED.add(store)


def remove_stale_probes(store: Store, lease: Lease) -> None:
    """Delete probe keys a process killed while probing left (older than PROBE_LEFT_S by the store's
    own clock: the lease's LastModified, never this machine's); a probe in flight is never touched."""
    probes = store.list(store.url.key(PROBE))
    if not probes:
        return
    now = store.modified(lease.key)
    stale = [o.key for o in probes if (now - o.modified).total_seconds() > PROBE_LEFT_S]
    if stale:
        store.delete(stale)


def _refused(write: Callable[[], object]) -> bool:
    try:
        write()
    except WriteConflict:
        return True
    return False
