"""One run of an artifact on given inputs, remembered by content.

Staging runs each served ONNX file once more on its golden sample (the check that the file, as staged,
gives what `triton-repo infer` will expect). The outputs depend only on the file's bytes, the runtime and
its version, the runner, the thread count and the inputs, so they are kept under a key of those in
`<work>/runs/`; a rebuild with nothing changed starts no worker process.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from triton_repo.core.fingerprint import arrays_digest, sha256_file
from triton_repo.runtimes.isolated import ORT, IsolatedSession, Runner, Runtime


def run_once(
    runtime: Runtime,
    onnx_path: Path,
    inputs: dict[str, np.ndarray],
    outputs: list[str],
    threads: int = 0,
    runner: Runner = ORT,
    cache: Path | None = None,
) -> dict[str, np.ndarray]:
    """`outputs` of `onnx_path` run by `runtime` with `runner` on `inputs` (a worker process; a crash raises
    ArtifactRunFailed), or the same run's outputs kept in the folder `cache`."""
    if cache is None:
        return _run(runtime, onnx_path, inputs, outputs, threads, runner)
    payload = {
        "onnx": sha256_file(onnx_path),
        "runtime": runtime.label_of(runner),
        "engine": runner.name,
        "threads": threads,
        "inputs": arrays_digest(inputs),
        "outputs": outputs,
    }
    key = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
    path = cache / f"{key[:40]}.npz"
    try:
        with np.load(path, allow_pickle=False) as archive:
            if sorted(archive.files) == sorted(outputs):
                return {name: archive[name] for name in outputs}
    except (OSError, ValueError):
        pass
    result = _run(runtime, onnx_path, inputs, outputs, threads, runner)
    cache.mkdir(parents=True, exist_ok=True)
    # one temporary file per process: models built side by side (build -j) can make the same run at once
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
    np.savez(tmp, **result)
    tmp.replace(path)
    return result


def _run(runtime, onnx_path, inputs, outputs, threads, runner) -> dict[str, np.ndarray]:
    with IsolatedSession(runtime, onnx_path, threads, runner) as session:
        return session.run(inputs, outputs)
