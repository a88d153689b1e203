"""The Triton model repository triton-repo publishes into, as one protocol with two implementations: a
local folder (LocalRepository) and a prefix in object storage (StoreRepository, whose specifics live in
repo/store/). The CLI and the pipeline open one with `open_repository` from what the user named and
never ask which kind they hold: each kind knows how it publishes, rolls back, is verified, keeps the
build report and is served.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from triton_repo.core.errors import ServerError, TritonRepoError
from triton_repo.core.locks import repository_lock
from triton_repo.core.log import info, step, warn
from triton_repo.core.storage import ObjectStoreUrl
from triton_repo.core.targets import CPU, local_server_serves
from triton_repo.repo import publish as folder
from triton_repo.repo.store.client import Store
from triton_repo.repo.store.manifest import read_store_manifest, verify_store, warn_prefix_overlap
from triton_repo.repo.store.publishing import StoreTarget, open_store, publish_to_store
from triton_repo.repo.store.rollback import rollback_store
from triton_repo.repo.store.server_setup import server_setup
from triton_repo.repo.store.session import publish_session
from triton_repo.repo.writer import StagedModel, staging_root
from triton_repo.serve.model_control import ModelControl, model_control
from triton_repo.serve.server import ModelControlMode

STANDS_IN = "object-store"  # <work-dir>/object-store/<url label>: an object store's lock and staging area


@dataclass(frozen=True)
class StoreAccess:
    """How to reach object storage and the servers reading it; a local folder needs none of it."""

    profile: str | None = None  # the AWS profile (None: the standard variables, else the default profile)
    servers: tuple[str, ...] = ()  # HTTP URLs of servers that load each publish (kept in the manifest)
    headers: tuple[tuple[str, str], ...] = ()  # sent with every load (a restricted model-repository API)


@dataclass(frozen=True)
class RolledBack:
    moves: dict[str, tuple[int, int]]  # model -> (version removed, version now served)
    served: str  # how the restored versions serve, for the one line per model


@dataclass(frozen=True)
class ServerSetup:
    """What the local tritonserver needs to serve the repository."""

    control: ModelControlMode  # the models to load at start (object storage: those the manifest lists)
    environment: dict[str, str]  # added to the server's (object storage: credentials, mount directory)
    watchdog: bool  # the stub watchdog, which reloads a model by touching its local files


REPORT_MD = "BUILD_REPORT.md"  # beside manifest.json, written by the build (builders/report.py)


class Repository(Protocol):
    """A Triton model repository that triton-repo publishes into; `str()` is its path or URL."""

    location: Path | ObjectStoreUrl  # as the user named it: Triton's --model-repository
    stand_in: Path  # the local folder whose lock and staging area (core.locks, writer) stand for it

    def check_access(self) -> None:
        """Fail with one line before any work when the repository cannot be reached (object storage:
        credentials, bucket, endpoint)."""

    def publish(
        self, staged: list[StagedModel], tools: dict[str, str], retire: tuple[str, ...] = ()
    ) -> folder.Published:
        """Each staged model that changed as its next version, `retire`d models removed, the servers
        reading the repository loaded; all or nothing. Call with the lock on `stand_in` held."""

    def publish_step(self) -> str:
        """The step line of a publish: where, and which running server loads it."""

    def loaded_by(self) -> str:
        """Who loads a publish: "the running server" (a local folder) or "the servers" (a bucket)."""

    def report_location(self) -> str:
        """Where BUILD_REPORT.md is, as the user would open it."""

    def rollback(self, names: list[str]) -> RolledBack:
        """Each model back to its previous published state, all or nothing, under the publish lock."""

    def manifest(self) -> dict | None:
        """manifest.json as published (None when the repository has none)."""

    def served_models(self) -> list[str]:
        """The models the manifest lists, sorted."""

    def verify(self) -> int:
        """Every served file hashed against the manifest (TritonRepoError naming the first that differs);
        the number checked."""

    def read_file(self, name: str) -> bytes | None:
        """A file at the repository's root (the build report), None when absent."""

    def write_files(self, files: dict[str, bytes]) -> None:
        """Files at the repository's root, each replaced whole."""

    def update_files(self, name: str, make: Callable[[bytes | None], dict[str, bytes]]) -> None:
        """Files at the repository's root made from file `name` as it is (None when absent), with no other
        publisher writing between the read and the write: many builders merge their models into one
        build report."""

    def server_setup(self, state_dir: Path, control: ModelControlMode) -> ServerSetup:
        """Check the repository for the local tritonserver (refused when built for a target it cannot
        serve; every published file verified) and say how to start it."""


def open_repository(
    where: Path | ObjectStoreUrl, work_dir: Path, access: Callable[[], StoreAccess] = StoreAccess
) -> Repository:
    """The repository `where` names: a folder, or object storage (a parsed s3:// URL).

    `access` is called only for object storage (so what only it uses is checked only then). The server
    `triton-repo serve` runs from `work_dir` on the same repository, if any, loads every publish.
    """
    if isinstance(where, ObjectStoreUrl):
        return open_object_store(where, work_dir, access())
    return LocalRepository(Path(where), model_control(work_dir / "server", where))


def open_object_store(url: ObjectStoreUrl, work_dir: Path, access: StoreAccess) -> StoreRepository:
    """Object storage at `url`, loaded by `access`'s servers and by `triton-repo serve` run from
    `work_dir` on the same URL; its lock and staging area stand in the work dir."""
    serving = model_control(work_dir / "server", url)
    servers = tuple(server.rstrip("/") for server in access.servers)
    target = StoreTarget(url, access.profile, servers, access.headers, serving.http_url if serving else None)
    return StoreRepository(target, (work_dir / STANDS_IN / url.label).resolve())


def as_repository(where: Repository | Path) -> Repository:
    """`where` itself, or the local folder a Path names (for callers that hold a folder)."""
    return LocalRepository(where) if isinstance(where, Path) else where


class LocalRepository:
    """A folder on this machine; the server `triton-repo serve` runs on it, if any, loads each publish."""

    def __init__(self, path: Path, control: ModelControl | None = None) -> None:
        self.location = self.stand_in = self.path = path
        self.control = control

    def __str__(self) -> str:
        return str(self.path)

    def check_access(self) -> None:
        """A folder is created when first published into: nothing to check."""

    def publish(
        self, staged: list[StagedModel], tools: dict[str, str], retire: tuple[str, ...] = ()
    ) -> folder.Published:
        return folder.publish(staged, self.path, tools, retire=retire, control=self.control)

    def publish_step(self) -> str:
        where = f" and load into the server at {self.control.http_url}" if self.control else ""
        return f"publish into {self.path}{where}"

    def loaded_by(self) -> str:
        return "the running server"

    def report_location(self) -> str:
        return str(self.path / REPORT_MD)

    def rollback(self, names: list[str]) -> RolledBack:
        staging = staging_root(self.path)
        with repository_lock(self.path):
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
            where = f" (the server at {self.control.http_url} loads it)" if self.control else ""
            try:
                with step(f"roll back {', '.join(names)}{where}"):
                    moves = folder.rollback(names, self.path, staging, self.control)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        return RolledBack(moves, "now served" if self.control else "served from the next `triton-repo serve`")

    def manifest(self) -> dict | None:
        return folder.read_manifest(self.path) if (self.path / folder.MANIFEST).is_file() else None

    def served_models(self) -> list[str]:
        return sorted(folder.read_manifest(self.path)["models"])  # no manifest: the error says build first

    def verify(self) -> int:
        return folder.verify_published(self.path)

    def read_file(self, name: str) -> bytes | None:
        path = self.path / name
        return path.read_bytes() if path.is_file() else None

    def write_files(self, files: dict[str, bytes]) -> None:
        for name, data in files.items():
            _replace(self.path / name, data)

    def update_files(self, name: str, make: Callable[[bytes | None], dict[str, bytes]]) -> None:
        """The caller holds the repository lock (a build does, from start to end)."""
        self.write_files(make(self.read_file(name)))

    def server_setup(self, state_dir: Path, control: ModelControlMode) -> ServerSetup:
        """Refused when built for a target the local server cannot serve; else every file verified."""
        setup = ServerSetup(control, {}, watchdog=True)
        manifest = self.manifest()
        if manifest is None:
            warn(f"{self.path}: no manifest.json (not built by triton-repo), so its files are not verified")
            return setup
        models = manifest["models"]
        unservable = sorted(n for n, e in models.items() if not local_server_serves(e.get("target", CPU)))
        if unservable:
            raise ServerError(
                f"{self.path} was built for the gpu target ({unservable[0]}, ...): the local server has no "
                "TensorRT or ONNX Runtime backend; serve it with `make serve-gpu` on a GPU host, or rebuild "
                "with `--target cpu`"
            )
        checked = self.verify()  # a file changed since publishing is never loaded
        info(f"verified {checked} files against {self.path / folder.MANIFEST}")
        return setup


class StoreRepository:
    """A prefix in object storage (S3) and the servers reading it; its lock and staging area stand in
    `stand_in`, under the work dir (they guard this machine's staging). Publishers on other machines
    take turns through the publish lease in the bucket, which publish and rollback take (store/lease.py).
    Access is checked once, on first use."""

    def __init__(self, target: StoreTarget, stand_in: Path) -> None:
        self.target = target
        self.location = target.url
        self.stand_in = stand_in
        self._store: Store | None = None

    def __str__(self) -> str:
        return str(self.target.url)

    def check_access(self) -> None:
        self._checked()

    def warn_prefix_overlap(self) -> None:
        """Warn when other keys start with the prefix (KServe's storageUri would download them too)."""
        warn_prefix_overlap(self._checked())

    def publish(
        self, staged: list[StagedModel], tools: dict[str, str], retire: tuple[str, ...] = ()
    ) -> folder.Published:
        return publish_to_store(staged, self.target, tools, retire=retire, store=self._checked())

    def publish_step(self) -> str:
        return f"publish into {self}"

    def loaded_by(self) -> str:
        return "the servers"

    def report_location(self) -> str:
        return f"{self}/{REPORT_MD}"

    def rollback(self, names: list[str]) -> RolledBack:
        with repository_lock(self.stand_in), step(f"roll back {', '.join(names)} in {self}"):
            moves, loaded = rollback_store(names, self.target, self._checked())
        served = f"now served by {loaded} server(s)" if loaded else "served from each server's next load"
        return RolledBack(moves, served)

    def manifest(self) -> dict | None:
        return read_store_manifest(self._checked())

    def served_models(self) -> list[str]:
        return sorted((self.manifest() or {"models": {}})["models"])

    def verify(self) -> int:
        manifest = self.manifest()
        if manifest is None:
            raise TritonRepoError(f"{self}: no manifest.json; publish into it first (triton-repo publish)")
        return verify_store(self._checked(), manifest)

    def read_file(self, name: str) -> bytes | None:
        return self._checked().read(self.target.url.key(name))

    def write_files(self, files: dict[str, bytes]) -> None:
        """Uploaded, each also kept in `stand_in` (the copy a reader of the work dir finds)."""
        self.stand_in.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            _replace(self.stand_in / name, data)
        store = self._checked()
        for name, data in files.items():
            store.write(self.target.url.key(name), data)

    def update_files(self, name: str, make: Callable[[bytes | None], dict[str, bytes]]) -> None:
        """Read, made and written under the bucket's publish lease (store/lease.py)."""
        with publish_session(self._checked(), f"update {name}"):
            self.write_files(make(self.read_file(name)))

    def server_setup(self, state_dir: Path, control: ModelControlMode) -> ServerSetup:
        """Access checked, every served object verified; the server reads the bucket with the same
        credentials and loads only the models the manifest lists (no watchdog: no local files)."""
        control, environment = server_setup(self._checked(), state_dir, control)
        return ServerSetup(control, environment, watchdog=False)

    def _checked(self) -> Store:
        if self._store is None:
            self._store = open_store(self.target)  # wrong credentials, a missing bucket: one line
        return self._store


def _replace(path: Path, data: bytes) -> None:
    """Written beside, then renamed over: a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
