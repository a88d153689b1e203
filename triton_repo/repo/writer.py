"""Write Triton model directories into a staging area and validate them (publish.py moves them in).

The staging area is beside the repository (same filesystem), so publishing is a rename. A staged model
holds one version directory, `1/`; publishing renumbers it to the model's next version.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from triton_repo.core.compare import compare
from triton_repo.core.errors import CheckFailed, TritonRepoError
from triton_repo.core.fingerprint import sha256_file
from triton_repo.core.golden import load_golden, sample_case, save_golden
from triton_repo.core.golden_streams import SEQUENCE_FILE, initial_states, load_streams
from triton_repo.core.spec import LoadedSpec, Tolerance
from triton_repo.core.targets import CPU, variant_names
from triton_repo.repo.config import (
    ONNX_FILE,
    WARMUP_DIR,
    cpu_model_config,
    initial_state_file,
    parse_config,
    to_text,
    warmup_file,
    warmup_rows,
    write_labels,
)
from triton_repo.repo.python_model import write_python_model
from triton_repo.repo.staging import StagingRequest
from triton_repo.runtimes.isolated import ORT, Runner, Runtime
from triton_repo.runtimes.run_cache import run_once

MANIFEST = "manifest.json"
NO_BYTECODE = "no bytecode here: a version Triton serves must not change while it serves sequences\n"
GOLDEN_FILE = "golden.npz"
VERSION = "1"


@dataclass(frozen=True)
class StagedModel:
    name: str  # the Triton model name, e.g. digits_fp32
    source_model: str  # the spec's name, e.g. digits
    precision: str
    path: Path  # the directory in the staging area
    manifest_entry: dict = field(hash=False)


def staging_root(repository: Path) -> Path:
    """Beside the repository, so that publishing is a rename on one filesystem."""
    return repository.resolve().parent / f".{repository.resolve().name}.staging"


def stage_cpu_model(request: StagingRequest) -> StagedModel:
    """<name>_<precision>: config.pbtxt, 1/model.onnx, 1/model.py (shared template), 1/golden.npz, warmup/
    (and a stateful model's streams: what this artifact answers on the golden streams).

    The staged ONNX file is run on the golden sample by the request's runtime and runner, the way the
    served model runs it, and must give the sample's outputs within the request's tolerances.
    """
    loaded, precision, tolerances, runner = (
        request.loaded,
        request.precision,
        request.tolerances,
        request.runner,
    )
    onnx_path, sample, streams = request.artifact, request.sample, request.streams
    spec = loaded.spec
    (name,) = variant_names(spec.name, precision, CPU)
    model_dir = new_model_dir(request.staging, name)
    version_dir = model_dir / VERSION
    shutil.copyfile(onnx_path, version_dir / ONNX_FILE)
    write_python_model(version_dir, runner.runtime)  # model.py and the runtime modules it imports
    save_golden([sample], version_dir / GOLDEN_FILE)  # what `triton-repo infer` sends and expects
    sequence = stage_streams(loaded, streams or onnx_path.parent / SEQUENCE_FILE, version_dir)
    rows = warmup_rows(loaded, sample.inputs)
    (model_dir / WARMUP_DIR).mkdir()
    for input_name, row in rows.items():
        (model_dir / WARMUP_DIR / warmup_file(input_name)).write_bytes(row.tobytes())
    config = cpu_model_config(loaded, name, rows, runner.parameters)
    labels = write_labels(loaded, model_dir)
    (model_dir / "config.pbtxt").write_text(to_text(config))
    validate_staged(loaded, model_dir, config, tolerances, request.runtime, runner, cache=request.runs)
    entry = {
        "source_model": spec.name,
        "precision": precision,
        "runtime": runner.name,
        "spec": str(loaded.path),
        "version": int(VERSION),
        "golden": f"{VERSION}/{GOLDEN_FILE}",
        "tolerances": {o: {"atol": t.atol, "rtol": t.rtol} for o, t in tolerances.items()},
        **({"labels": labels} if labels else {}),
        **({"sequence": sequence} if sequence else {}),
        "files": file_hashes(model_dir),
    }
    return StagedModel(name, spec.name, precision, model_dir, entry)


def stage_streams(loaded: LoadedSpec, streams: Path, version_dir: Path) -> dict | None:
    """A stateful model's streams (what `triton-repo infer` streams and expects, chunk by chunk) and the
    initial states that are not zeros, beside the model; None for other models."""
    spec = loaded.spec
    if spec.sequence is None:
        return None
    shutil.copyfile(streams, version_dir / SEQUENCE_FILE)
    # A file where Python would put model.py's bytecode as the server loads it: a __pycache__ written
    # into the version then would make Triton take the version for modified, and reload it (dropping its
    # live sequences) when a publish loads the next one. The python backend's stub ignores
    # PYTHONDONTWRITEBYTECODE; Python skips the write when it cannot make the folder.
    (version_dir / "__pycache__").write_text(NO_BYTECODE)
    states = initial_states(loaded, 1)
    for pair in spec.state_pairs:
        if pair.initial != "zeros":
            np.save(version_dir / initial_state_file(pair.input), states[pair.input])
    streams = load_streams(version_dir / SEQUENCE_FILE)
    return {
        "file": SEQUENCE_FILE,  # in the version directory, beside the golden sample
        "streams": streams.streams,
        "steps": streams.steps,
        "strategy": spec.sequence.strategy,
    }


def new_model_dir(staging: Path, name: str) -> Path:
    """An empty staged model directory with its version directory (a leftover one is removed)."""
    model_dir = staging / name
    if model_dir.exists():
        shutil.rmtree(model_dir)
    (model_dir / VERSION).mkdir(parents=True)
    return model_dir


def file_hashes(model_dir: Path) -> dict[str, str]:
    """sha256 of every file below a model directory, by relative path: what the manifest records."""
    return {
        str(p.relative_to(model_dir)): sha256_file(p) for p in sorted(model_dir.rglob("*")) if p.is_file()
    }


def served_tolerances(loaded: LoadedSpec, precision: str) -> dict[str, Tolerance]:
    """fp32: each output's own tolerance; lower precisions: the larger of that and the precision's."""
    spec = loaded.spec
    tolerances = {}
    for output in spec.outputs:
        own = output.tolerance
        wider = spec.precision.tolerances.get(precision) if precision != "fp32" else None
        tolerances[output.name] = (
            own
            if wider is None
            else Tolerance(atol=max(own.atol, wider.atol), rtol=max(own.rtol, wider.rtol))
        )
    return tolerances


def check_warmup_files(loaded: LoadedSpec, model_dir: Path, config) -> None:
    """Every warmup request's data file exists and holds exactly its dims of the input's dtype."""
    for warmup in config.model_warmup:
        for input_name, data in warmup.inputs.items():
            path = model_dir / WARMUP_DIR / data.input_data_file
            tensor = next(t for t in loaded.spec.inputs if t.name == input_name)
            expected = int(np.prod(data.dims)) * np.dtype(tensor.dtype).itemsize
            if not path.is_file() or path.stat().st_size != expected:
                raise TritonRepoError(f"{path}: warmup file missing or not {expected} bytes (a bug)")


def validate_staged(
    loaded: LoadedSpec,
    model_dir: Path,
    config,
    tolerances: dict[str, Tolerance],
    runtime: Runtime,
    runner: Runner = ORT,
    view=None,
    cache: Path | None = None,
) -> None:
    """The staged directory must parse back to the same config and its ONNX, run by `runtime` in a worker
    process (or remembered in `cache`), must reproduce the golden sample (through `view`, what an adapted
    graph takes and gives)."""
    parsed = parse_config(model_dir / "config.pbtxt")
    if parsed != config:
        raise TritonRepoError(f"{model_dir}/config.pbtxt does not parse back to the generated config (a bug)")
    check_warmup_files(loaded, model_dir, parsed)
    sample = sample_case(load_golden(model_dir / VERSION / GOLDEN_FILE))
    sample = view(sample) if view else sample
    names = [o.name for o in loaded.spec.outputs]
    threads = loaded.spec.triton.intra_op_threads
    computed = run_once(
        runtime, model_dir / VERSION / ONNX_FILE, sample.inputs, names, threads, runner, cache
    )
    for output in names:
        actual = computed[output]
        diff = compare(actual, sample.outputs[output], tolerances[output])
        if not diff.passed:
            raise CheckFailed(
                f"{model_dir.name}: staged ONNX output '{output}' differs from golden: max abs diff {diff.max_abs:.3g}"
            )
