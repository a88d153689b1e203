"""What the local tritonserver needs to serve a bucket: every served object hashed against the manifest,
the models to load (only those the manifest lists, never a leftover directory), the credentials and the
directory Triton copies each loaded model into."""

from __future__ import annotations

import shutil
from pathlib import Path

from triton_repo.core.errors import ServerError
from triton_repo.core.log import info, step, warn
from triton_repo.core.targets import CPU, local_server_serves
from triton_repo.repo.store.client import Store
from triton_repo.repo.store.manifest import read_store_manifest, verify_store
from triton_repo.serve.server import ModelControlMode


def server_setup(
    store: Store, state_dir: Path, control: ModelControlMode
) -> tuple[ModelControlMode, dict[str, str]]:
    """Verify the bucket for the local server; its model control (the models to load) and environment.

    Refused when the bucket holds models the local server cannot serve (built for the gpu target).
    """
    url = store.url
    manifest = read_store_manifest(store)
    load: tuple[str, ...] = ("*",)
    if manifest is None:
        warn(f"{url}: no manifest.json (not published by triton-repo), so its objects are not verified")
    else:
        unservable = sorted(
            n for n, e in manifest["models"].items() if not local_server_serves(e.get("target", CPU))
        )
        if unservable:
            raise ServerError(
                f"{url} holds gpu-target models ({unservable[0]}, ...): the local server has no TensorRT or "
                "ONNX Runtime backend; serve it with the NGC tritonserver (deploy/helm/triton-repo)"
            )
        with step(f"verify every served object of {url} against its manifest.json"):
            checked = verify_store(store, manifest)
        info(f"verified {checked} objects against {url}/manifest.json")
        load = tuple(sorted(manifest["models"]))  # only complete publishes: never a leftover directory
    mount = state_dir / "s3-mount"  # Triton's local copy of each loaded model directory
    shutil.rmtree(mount, ignore_errors=True)
    mount.mkdir(parents=True)
    environment = {**store.credentials().environment(), "TRITON_AWS_MOUNT_DIRECTORY": str(mount.resolve())}
    return ModelControlMode(control.mode, load, control.poll_seconds), environment
