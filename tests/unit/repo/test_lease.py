"""The publish lease's logic, on a bucket held in memory that honours If-None-Match and If-Match as S3
does, and a clock the test moves: who waits, who breaks a lease and when, who finds it lost; the
manifest merge; the conditional-write probe. (tests/integration/test_store_concurrency.py runs the
same behaviours on SeaweedFS, with real processes.)"""

from __future__ import annotations

import hashlib
import json
import subprocess
import time

import pytest

from triton_repo.core.errors import TritonRepoError
from triton_repo.core.storage import ObjectStoreUrl
from triton_repo.repo.store import lease as lease_module
from triton_repo.repo.store.client import ObjectExists, ObjectStoreError, WriteConflict
from triton_repo.repo.store.lease import (
    LEASE,
    Lease,
    LeaseTiming,
    check_conditional_writes,
    this_machine,
)
from triton_repo.repo.store.manifest import merge_manifest

URL = ObjectStoreUrl("models", "prod", "http://127.0.0.1:9000")
KEY = URL.key(LEASE)


class MemoryBucket:
    """Objects in a dict; a conditional write that does not hold fails as S3's 412 does."""

    def __init__(self, honours_conditions: bool = True) -> None:
        self.url = URL
        self.objects: dict[str, bytes] = {}
        self.honours = honours_conditions

    def etag(self, key: str) -> str | None:
        data = self.objects.get(key)
        return None if data is None else f'"{hashlib.md5(data).hexdigest()}"'

    def read_with_etag(self, key: str) -> tuple[bytes | None, str | None]:
        return self.objects.get(key), self.etag(key)

    def read(self, key: str) -> bytes | None:
        return self.objects.get(key)

    def write(self, key: str, data: bytes, overwrite: bool = True, if_match: str | None = None) -> str:
        if self.honours and if_match and self.etag(key) != if_match:
            raise WriteConflict(f"{key} changed")
        if self.honours and not if_match and not overwrite and key in self.objects:
            raise ObjectExists(f"{key} exists")
        self.objects[key] = data
        return self.etag(key)

    def delete(self, keys: list[str]) -> None:
        for key in keys:
            self.objects.pop(key, None)


class Clock:
    """Monotonic time that moves only when someone sleeps; `each_second` runs at every whole second."""

    def __init__(self, each_second=None) -> None:
        self.now = 1000.0
        self.each_second = each_second or (lambda now: None)

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.each_second(self.now)


@pytest.fixture
def said(monkeypatch):
    lines: list[str] = []
    monkeypatch.setattr(lease_module, "info", lines.append)
    monkeypatch.setattr(lease_module, "warn", lines.append)
    return lines


def lease(bucket, clock, ttl=3.0, wait=600.0, doing="publish tiny_fp32") -> Lease:
    return Lease(bucket, doing, LeaseTiming(ttl=ttl, wait=wait), clock=clock, sleep=clock.sleep)


def a_lease_left_by(host: str, pid: int, ttl: float = 3.0, **owner) -> bytes:
    body = {"owner": {"host": host, "pid": pid, "id": "f00d", **owner}, "doing": "publish other_fp32"}
    return json.dumps({**body, "counter": 7, "ttl_seconds": ttl, "taken_at": "2025-01-01T00:00:00Z"}).encode()


def test_a_free_lease_is_taken_at_once_renewed_with_a_new_etag_and_deleted_on_release(said):
    bucket, clock = MemoryBucket(), Clock()
    held = lease(bucket, clock)
    held.take()
    first = bucket.etag(KEY)
    assert json.loads(bucket.objects[KEY])["owner"]["pid"] == held.owner["pid"]
    held.check("the pointers")
    assert bucket.etag(KEY) != first and clock.now == 1000.0  # renewed, nobody waited
    held.release()
    assert KEY not in bucket.objects and said == []


def test_a_lease_its_holder_keeps_renewing_is_never_broken_and_the_wait_ends_in_one_line(said):
    bucket = MemoryBucket()
    holder_clock = Clock()
    holder = lease(bucket, holder_clock, doing="publish other_fp32")
    holder.take()
    clock = Clock(each_second=lambda now: holder.check("x"))  # the holder renews every second
    waiter = lease(bucket, clock, ttl=3.0, wait=25.0)
    with pytest.raises(ObjectStoreError) as raised:
        waiter.take()
    message = str(raised.value)
    assert "\n" not in message and "publish other_fp32" in message and "still renewed after 25 s" in message
    assert f"aws s3 rm s3://models/{KEY}" in message and lease_module.WAIT_ENV in message
    progress = [line for line in said if "waiting for the publish lease" in line]
    assert len(progress) == 2  # one line every ~10 s, naming the holder and how long it has held it
    assert "publish other_fp32" in progress[0] and "for at least 10 s" in progress[0]


def test_a_lease_unrenewed_for_longer_than_the_ttl_on_the_waiters_clock_is_broken_naming_its_holder(said):
    bucket, clock = MemoryBucket(), Clock()
    bucket.objects[KEY] = a_lease_left_by("killed-host", 4242)
    waiter = lease(bucket, clock, ttl=3.0)
    waiter.take()
    assert 3.0 < clock.now - 1000.0 <= 5.0  # its own clock, never the holder's taken_at
    assert json.loads(bucket.objects[KEY])["owner"]["id"] == waiter.owner["id"]
    assert len(said) == 1 and "broke the publish lease of killed-host pid 4242 (publish other_fp32" in said[0]


def test_a_waiter_waits_for_the_longer_of_its_own_ttl_and_the_one_the_holder_wrote(said):
    bucket, clock = MemoryBucket(), Clock()
    bucket.objects[KEY] = a_lease_left_by("slow-host", 4242, ttl=20.0)
    lease(bucket, clock, ttl=3.0).take()
    assert 20.0 < clock.now - 1000.0 <= 22.0


def test_a_lease_whose_process_on_this_machine_is_gone_is_broken_at_once(said):
    finished = subprocess.Popen(["true"])
    finished.wait()  # its pid names no process now
    bucket, clock = MemoryBucket(), Clock()
    bucket.objects[KEY] = a_lease_left_by("this-host", finished.pid, **this_machine())
    lease(bucket, clock).take()
    assert clock.now == 1000.0 and "its process on this machine is gone" in said[0]


def test_a_lease_of_a_live_process_or_another_machine_waits_for_the_ttl(said):
    import os

    for owner in ({"pid": os.getpid(), **this_machine()}, {"pid": 4242, "boot_id": "another-machine"}):
        bucket, clock = MemoryBucket(), Clock()
        bucket.objects[KEY] = a_lease_left_by("h", **owner)
        lease(bucket, clock).take()
        assert clock.now - 1000.0 > 3.0


def test_a_publisher_whose_lease_was_broken_writes_nothing_more_and_leaves_the_new_lease_alone(said):
    bucket, stalled_clock, clock = MemoryBucket(), Clock(), Clock()
    stalled = lease(bucket, stalled_clock)
    stalled.take()
    taker = lease(bucket, clock, doing="publish other_fp32")
    taker.take()  # the stalled one never renewed: broken after the ttl
    with pytest.raises(ObjectStoreError) as raised:
        stalled.check("the pointers (config.pbtxt)")
    message = str(raised.value)
    assert "\n" not in message and "lost its lease to" in message and "publish other_fp32" in message
    assert "stopped before writing the pointers (config.pbtxt); publish again" in message
    stalled.release()
    assert json.loads(bucket.objects[KEY])["owner"]["id"] == taker.owner["id"]  # not deleted
    taker.check("the manifest")


def test_the_renewal_thread_renews_every_third_of_the_ttl():
    bucket = MemoryBucket()
    with Lease(bucket, "publish x", LeaseTiming(ttl=0.3, wait=5.0)) as held:
        first = bucket.etag(KEY)
        time.sleep(0.45)
        assert json.loads(bucket.objects[KEY])["counter"] >= 2 and bucket.etag(KEY) != first
        assert held.lost is None
    assert KEY not in bucket.objects


@pytest.mark.parametrize("value", ["soon", "0", "-5"])
def test_lease_seconds_that_are_not_a_positive_number_are_refused_naming_the_variable(monkeypatch, value):
    monkeypatch.setenv(lease_module.TTL_ENV, value)
    with pytest.raises(
        TritonRepoError, match=rf"{lease_module.TTL_ENV}='{value}': must be a number of seconds"
    ):
        LeaseTiming.from_environment()


def test_lease_seconds_come_from_the_environment(monkeypatch):
    monkeypatch.setenv(lease_module.TTL_ENV, "3")
    monkeypatch.setenv(lease_module.WAIT_ENV, "30")
    assert LeaseTiming.from_environment() == LeaseTiming(ttl=3.0, wait=30.0, poll=1.0)
    monkeypatch.delenv(lease_module.TTL_ENV)
    monkeypatch.delenv(lease_module.WAIT_ENV)
    assert LeaseTiming.from_environment() == LeaseTiming(ttl=60.0, wait=600.0)


def test_a_merge_keeps_every_other_models_entry_and_lays_this_publishs_over_them():
    fresh = {"models": {"theirs": {"version": 4}, "ours": {"version": 1}, "retired": {"version": 2}}}
    ours = {"models": {"ours": {"version": 2}, "kept": {"version": 9}}, "tools": {"triton-repo": "new"}}
    merged = merge_manifest(fresh, ours, {"ours", "retired"})
    assert merged["models"] == {"theirs": {"version": 4}, "ours": {"version": 2}}
    assert merged["tools"] == {"triton-repo": "new"}


def test_the_probe_passes_a_store_that_honours_conditions_and_leaves_no_key():
    bucket = MemoryBucket()
    check_conditional_writes(bucket)
    assert bucket.objects == {}


def test_the_probe_refuses_a_store_that_ignores_conditions_in_one_line():
    bucket = MemoryBucket(honours_conditions=False)
    with pytest.raises(ObjectStoreError) as raised:
        check_conditional_writes(bucket)
    message = str(raised.value)
    assert "\n" not in message and raised.value.exit_code == 2
    assert "does not honour conditional writes (If-None-Match/If-Match" in message
    assert (
        "it ignored If-None-Match, If-Match, If-Match on a missing key)" in message
        and "(AWS S3, SeaweedFS, MinIO ...)" in message
    )
    assert bucket.objects == {}


@pytest.mark.parametrize(
    ("code", "status"),
    [("PreconditionFailed", 412), ("ConditionalRequestConflict", 409), ("NoSuchKey", 404)],
)
def test_a_refused_if_match_write_is_a_write_conflict_whatever_the_store_answers(code, status):
    """SeaweedFS answers If-Match on a deleted key with 412, AWS with 404 NoSuchKey; two racing on AWS, 409."""
    from botocore.exceptions import ClientError

    from triton_repo.repo.store.client import _Translate

    answer = {"Error": {"Code": code, "Message": "no"}, "ResponseMetadata": {"HTTPStatusCode": status}}
    with pytest.raises(WriteConflict), _Translate(MemoryBucket(), "replace", KEY):
        raise ClientError(answer, "PutObject")
