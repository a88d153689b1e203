"""Stage the gpu target's two models per variant: `<name>_<prec>_trt` (TensorRT plan) and `<name>_<prec>_onnx`.

Both get a config.pbtxt generated through the protobuf schema and parsed back, warmup rows at the
min/opt/max of every optimization profile, and 1/golden.npz for `triton-repo infer`. The plan comes from
the engines stage (triton_repo/builders/engines.py), which builds one only when this machine has an NVIDIA GPU
and TensorRT; without one the `_trt` model is staged with its config and no plan file, and its manifest
entry says the engine is pending, so nothing pretends an engine exists. Every `_trt` model passes the preflight before it is returned.
"""

from __future__ import annotations

import functools
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from triton_repo.core.errors import CheckFailed, TritonRepoError
from triton_repo.core.golden import GoldenCase, save_golden
from triton_repo.core.golden_streams import SEQUENCE_FILE, initial_states, load_streams, run_streams
from triton_repo.core.references import inputs_at
from triton_repo.core.releases import Release
from triton_repo.core.spec import LoadedSpec
from triton_repo.core.targets import GPU, variant_names
from triton_repo.repo.config import (
    WARMUP_DIR,
    parse_config,
    to_text,
    write_labels,
)
from triton_repo.repo.gpu_config import (
    INITIAL_STATE_DIR,
    ONNX_FILE,
    WarmupPoint,
    onnx_gpu_model_config,
    preflight,
    raw_initial_state_file,
    trt_model_config,
    warmup_points,
)
from triton_repo.repo.profiles import derive_profiles
from triton_repo.repo.scalars import adapt_graph, backend_view, has_scalars
from triton_repo.repo.staging import StagingRequest
from triton_repo.repo.states import adapt_states, moved_states, state_view
from triton_repo.repo.writer import (
    GOLDEN_FILE,
    VERSION,
    StagedModel,
    check_warmup_files,
    file_hashes,
    new_model_dir,
    validate_staged,
)
from triton_repo.runtimes.isolated import Runner, Runtime

# What to run on a GPU host to build the plans and serve them (printed by `build --target gpu` without a GPU).
GPU_HOST_COMMANDS = ("make engines", "make serve-gpu")


def gpu_graph(loaded: LoadedSpec, onnx_path: Path, work_dir: Path) -> tuple[Path, Callable | None]:
    """The graph Triton's own backends serve, and the view that turns a golden case into its inputs.

    Triton takes scalars as [1] (unbatched) or [rows] (batched), and a state batch first: a model with
    scalar inputs, or a state whose batch axis is not its first, is served behind adapters written into
    `work_dir`; any other graph is served as it is (view None)."""
    views = []
    if has_scalars(loaded):
        onnx_path = adapt_graph(loaded, onnx_path, work_dir / "model.scalars.onnx")
        views.append(functools.partial(backend_view, loaded))
    if moved_states(loaded):
        onnx_path = adapt_states(loaded, onnx_path, work_dir / "model.states.onnx")
        views.append(functools.partial(state_view, loaded))
    if not views:
        return onnx_path, None

    def view(case: GoldenCase) -> GoldenCase:
        for one in views:
            case = one(case)
        return case

    return onnx_path, view


def stage_gpu_models(
    request: StagingRequest, release: Release, engine: tuple[Path, dict] | None, graph_dir: Path
) -> list[StagedModel]:
    """`<name>_<prec>_trt` and `<name>_<prec>_onnx` for one precision artifact (the request's).

    `graph_dir` takes the adapted graph of a model with scalar inputs (gpu_graph). `engine` is the plan the
    engines stage built and checked (its path and summary), or None without a GPU: the `_trt` model is then
    staged with its config and marked pending. The `_onnx` model's graph is run by the request's runtime
    and runner (OpenVINO for a BF16 graph, which ONNX Runtime's CPU cannot run) for the staged check.
    """
    loaded = request.loaded
    # a stateful model: what this artifact answers on the golden streams (default: the golden ones)
    streams = request.streams or request.artifact.parent / SEQUENCE_FILE
    graph, view = gpu_graph(loaded, request.artifact, graph_dir)
    profiles = derive_profiles(loaded.spec)
    # no warmup for a stateful model: a warmup request carries no sequence, so no state to run with
    warmup = [] if loaded.spec.sequence is not None else warmup_points(loaded, profiles)
    trt = _stage_trt(request, profiles, warmup, release, engine)
    onnx = _stage_onnx(request, (graph, view), profiles, warmup, release)
    if loaded.spec.sequence is not None:
        trt = _with_streams(loaded, trt, streams, request.tolerances)
        check = (graph, view, request.runtime, request.runner)
        onnx = _with_streams(loaded, onnx, streams, request.tolerances, check)
    return [trt, onnx]


def _with_streams(
    loaded: LoadedSpec, model: StagedModel, streams: Path, tolerances, check: tuple | None = None
) -> StagedModel:
    """A stateful model's golden streams and initial states beside it, and (`check`: the served graph and
    its view) the streams run through the served graph in-process, the state fed batch first as Triton's
    implicit state feeds it, compared step by step with the golden ones."""
    from dataclasses import replace

    model_dir = model.path
    shutil.copyfile(streams, model_dir / VERSION / SEQUENCE_FILE)
    initial = initial_states(loaded, 1)
    for pair in loaded.spec.state_pairs:
        if pair.initial != "zeros":
            (model_dir / INITIAL_STATE_DIR).mkdir(exist_ok=True)
            (model_dir / INITIAL_STATE_DIR / raw_initial_state_file(pair.input)).write_bytes(
                np.ascontiguousarray(initial[pair.input]).tobytes()
            )
    golden = load_streams(streams)
    if check is not None:
        _check_streams(loaded, model.name, golden, tolerances, *check)
    entry = {
        **model.manifest_entry,
        "sequence": {"file": SEQUENCE_FILE, "streams": golden.streams, "steps": golden.steps},
        "files": file_hashes(model_dir),
    }
    return replace(model, manifest_entry=entry)


def _check_streams(
    loaded: LoadedSpec, name: str, golden, tolerances, graph: Path, view, runtime: Runtime, runner: Runner
) -> None:
    """In a worker of `runtime`, run by `runner` (OpenVINO for a BF16 graph, as validate_staged does)."""
    from triton_repo.core.compare import compare
    from triton_repo.runtimes.isolated import IsolatedSession

    names = [o.name for o in loaded.spec.outputs]
    moved = moved_states(loaded)
    with IsolatedSession(runtime, graph, loaded.spec.triton.intra_op_threads, runner) as session:

        def step(feed: dict) -> dict:
            served = view(GoldenCase("step", feed, {})).inputs if view else feed
            outputs = session.run(served, names)
            return {n: np.moveaxis(a, 0, moved[n]) if n in moved else a for n, a in outputs.items()}

        actual = run_streams(loaded, golden.inputs, step)
    for output, expected in golden.outputs.items():
        diff = compare(actual.outputs[output], expected, tolerances[output])
        if not diff.passed:
            raise CheckFailed(
                f"{name}: output '{output}' of the served graph, its state fed batch first, differs from the "
                f"golden streams: max abs diff {diff.max_abs:.3g}"
            )


def _write_warmup(loaded: LoadedSpec, model_dir: Path, sample: GoldenCase, warmup: list[WarmupPoint]) -> None:
    """One row per input and shape: the golden sample resized to the point's sizes (first row)."""
    (model_dir / WARMUP_DIR).mkdir()
    for point in warmup:
        inputs = inputs_at(loaded, sample.inputs, point.sizes)
        for tensor in loaded.spec.inputs:
            array = inputs[tensor.name]
            row = array[0] if loaded.spec.batched and not tensor.scalar else array
            row = np.require(row, dtype=tensor.dtype, requirements="C")  # 0-d stays 0-d
            if row.shape != point.dims[tensor.name]:
                raise TritonRepoError(
                    f"{point.name}: warmup row {row.shape} is not {point.dims[tensor.name]} (a bug)"
                )
            (model_dir / WARMUP_DIR / point.files[tensor.name]).write_bytes(row.tobytes())


def _entry(request: StagingRequest, model_dir: Path, release: Release, **extra) -> dict:
    loaded, tolerances = request.loaded, request.tolerances
    labels = write_labels(loaded, model_dir)
    if labels:
        extra["labels"] = labels
    return {
        "source_model": loaded.spec.name,
        "precision": request.precision,
        "target": GPU,
        "release": release.name,
        "spec": str(loaded.path),
        "version": int(VERSION),
        "golden": f"{VERSION}/{GOLDEN_FILE}",
        "tolerances": {o: {"atol": t.atol, "rtol": t.rtol} for o, t in tolerances.items()},
        **extra,
        "files": file_hashes(model_dir),
    }


def _stage_trt(request: StagingRequest, profiles, warmup, release, engine) -> StagedModel:
    loaded, sample = request.loaded, request.sample
    name = variant_names(loaded.spec.name, request.precision, GPU)[0]  # <name>_<prec>_trt
    model_dir = new_model_dir(request.staging, name)
    _write_warmup(loaded, model_dir, sample, warmup)
    save_golden([sample], model_dir / VERSION / GOLDEN_FILE)
    plans, engines = {}, []
    if engine is not None:
        plan_path, summary = engine
        shutil.copyfile(plan_path, model_dir / VERSION / summary["plan"])
        plans[summary["compute_capability"]] = summary["plan"]
        engines.append(summary)
    config = trt_model_config(loaded, name, profiles, warmup, plans)
    (model_dir / "config.pbtxt").write_text(to_text(config))
    if parse_config(model_dir / "config.pbtxt") != config:
        raise TritonRepoError(f"{model_dir}/config.pbtxt does not parse back to the generated config (a bug)")
    check_warmup_files(loaded, model_dir, config)
    preflight(config, [p.to_json() for p in profiles], engines, release, loaded.spec.batched)
    entry = _entry(request, model_dir, release, engines=engines, engine_pending=not engines)
    return StagedModel(name, loaded.spec.name, request.precision, model_dir, entry)


def _stage_onnx(request: StagingRequest, served: tuple[Path, Callable | None], profiles, warmup, release):
    """`served`: the graph Triton's ONNX Runtime backend runs and the view of a golden case it takes."""
    loaded, sample = request.loaded, request.sample
    graph, view = served
    name = variant_names(loaded.spec.name, request.precision, GPU)[1]  # <name>_<prec>_onnx
    model_dir = new_model_dir(request.staging, name)
    shutil.copyfile(graph, model_dir / VERSION / ONNX_FILE)
    save_golden([sample], model_dir / VERSION / GOLDEN_FILE)
    _write_warmup(loaded, model_dir, sample, warmup)
    config = onnx_gpu_model_config(loaded, name, request.precision, profiles, warmup)
    (model_dir / "config.pbtxt").write_text(to_text(config))
    # round trip, warmup, golden (through the scalar adapter's view, if any)
    validate_staged(
        loaded, model_dir, config, request.tolerances, request.runtime, request.runner, view, request.runs
    )
    entry = _entry(request, model_dir, release)
    return StagedModel(name, loaded.spec.name, request.precision, model_dir, entry)
