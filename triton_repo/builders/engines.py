"""Engines stage: strongly typed TensorRT plans from the precision ONNX artifacts (GPU only).

Precision is already in the graph (Cast, Q/DQ), so the network is strongly typed: TensorRT 10's
STRONGLY_TYPED flag, TensorRT 11's only mode. Optimization profiles come from the spec's named axes (and
`gpu.profiles`). Each build runs in a spawned child process with Polygraphy's loaders, reuses a timing cache
kept per GPU and TensorRT version, leaves `reproduce.sh` (the same build as `polygraphy convert`) and
`engine.json` (TensorRT version, GPU, profiles, sha256 of ONNX, plan and timing cache), and checks the plan
against golden outputs with Polygraphy's TrtRunner. `tensorrt` is imported only in the child.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import shlex
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

from triton_repo.core.errors import CheckFailed, TritonRepoError
from triton_repo.core.golden import GoldenCase, case_label
from triton_repo.core.references import inputs_at
from triton_repo.core.releases import Release
from triton_repo.core.spec import LoadedSpec, Tolerance
from triton_repo.repo.gpu_writer import gpu_graph
from triton_repo.repo.profiles import Profile, derive_profiles
from triton_repo.repo.staging import StagingRequest
from triton_repo.runtimes.isolated import ORT, IsolatedSession, Runner, Runtime

ENGINE_MANIFEST = "engine.json"
REPRODUCE = "reproduce.sh"


@dataclass(frozen=True)
class GpuStatus:
    available: bool
    reason: str  # why not, when not available
    name: str = ""
    compute_capability: str = ""  # e.g. "8.6"


def gpu_available() -> GpuStatus:
    """An NVIDIA GPU (nvidia-smi answers) and TensorRT importable here; otherwise the reason."""
    if shutil.which("nvidia-smi") is None:
        return GpuStatus(False, "no NVIDIA GPU on this machine (nvidia-smi not found)")
    query = ["nvidia-smi", "--query-gpu=name,compute_cap", "--format=csv,noheader", "-i", "0"]
    try:
        answer = subprocess.run(query, capture_output=True, text=True, timeout=30, check=True).stdout
    except (subprocess.SubprocessError, OSError) as error:
        return GpuStatus(False, f"nvidia-smi found but no usable GPU ({error})")
    name, _, capability = answer.strip().partition(", ")
    if not re.fullmatch(r"\d+\.\d+", capability.strip()):
        return GpuStatus(False, f"nvidia-smi did not report a compute capability: {answer.strip()!r}")
    if importlib.util.find_spec("tensorrt") is None:
        return GpuStatus(False, f"TensorRT is not installed in this environment (GPU: {name})")
    return GpuStatus(True, "", name.strip(), capability.strip())


def plan_filename(compute_capability: str) -> str:
    """model.sm86.plan: one plan per compute capability, named in config.pbtxt's cc_model_filenames."""
    return f"model.sm{compute_capability.replace('.', '')}.plan"


def timing_cache_path(cache_dir: Path, gpu: GpuStatus, tensorrt_version: str) -> Path:
    """One timing cache per GPU model and TensorRT version, shared by every build on it."""
    slug = re.sub(r"[^a-z0-9]+", "-", gpu.name.lower()).strip("-")
    return cache_dir / f"{slug}-sm{gpu.compute_capability.replace('.', '')}-trt{tensorrt_version}.cache"


@dataclass(frozen=True)
class EngineRequest:
    onnx: Path
    plan: Path  # where the plan goes; engine.json and reproduce.sh go beside it
    profiles: list[Profile]
    timing_cache: Path
    expected_tensorrt: str  # the pinned release's TensorRT; the build refuses any other
    builder_optimization_level: int = 3
    version_compatible: bool = False
    hardware_compatibility_level: str = "none"
    gpu: GpuStatus = field(default_factory=lambda: GpuStatus(False, "unknown"))


def _shape_arguments(flag: str, profile: Profile, level: str) -> list[str]:
    shapes = [f"{name}:[{','.join(str(d) for d in getattr(s, level))}]" for name, s in profile.inputs.items()]
    return [flag, *shapes]


def polygraphy_command(request: EngineRequest) -> list[str]:
    """The `polygraphy convert` command that builds the same plan as build_engine."""
    command = ["polygraphy", "convert", str(request.onnx), "--convert-to", "trt", "--strongly-typed"]
    for profile in request.profiles:
        for flag, level in (
            ("--trt-min-shapes", "min"),
            ("--trt-opt-shapes", "opt"),
            ("--trt-max-shapes", "max"),
        ):
            command += _shape_arguments(flag, profile, level)
    command += ["--builder-optimization-level", str(request.builder_optimization_level)]
    if request.version_compatible:
        command.append("--version-compatible")
    if request.hardware_compatibility_level != "none":
        command += ["--hardware-compatibility-level", request.hardware_compatibility_level]
    command += [
        "--load-timing-cache",
        str(request.timing_cache),
        "--save-timing-cache",
        str(request.timing_cache),
    ]
    return command + ["-o", str(request.plan)]


def write_reproduce(request: EngineRequest) -> Path:
    """reproduce.sh beside the plan: rebuild it by hand, in the engines image of the pinned release."""
    path = request.plan.with_name(REPRODUCE)
    lines = [
        "#!/usr/bin/env bash",
        f"# Rebuild {request.plan.name} (TensorRT {request.expected_tensorrt}, {request.gpu.name or 'any GPU'}).",
        "# Run inside the engines service: docker compose run --rm engines bash",
        "set -euo pipefail",
        " \\\n    ".join(shlex.quote(part) for part in polygraphy_command(request)),
        "",
    ]
    path.write_text("\n".join(lines))
    path.chmod(0o755)
    return path


def _sha256(path: Path) -> str:
    from triton_repo.core.fingerprint import sha256_file

    return sha256_file(path)


def request_key(request: EngineRequest) -> str:
    """What a plan is built from: the ONNX content, profiles, builder settings, TensorRT and GPU."""
    settings = {
        "onnx": _sha256(request.onnx),
        "profiles": [p.to_json() for p in request.profiles],
        "level": request.builder_optimization_level,
        "version_compatible": request.version_compatible,
        "hardware": request.hardware_compatibility_level,
        "tensorrt": request.expected_tensorrt,
        "gpu": [request.gpu.name, request.gpu.compute_capability],
    }
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def build_engine(request: EngineRequest, cases: list[GoldenCase], tolerances: dict[str, Tolerance]) -> dict:
    """Build (or reuse) the plan in a child process, check it against `cases`; returns engine.json's content.

    A plan whose inputs, settings, TensorRT and GPU are unchanged is reused, but still checked.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    request.plan.parent.mkdir(parents=True, exist_ok=True)
    request.timing_cache.parent.mkdir(parents=True, exist_ok=True)
    write_reproduce(request)
    manifest_path = request.plan.with_name(ENGINE_MANIFEST)
    key = request_key(request)
    previous = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    reuse = (
        request.plan.is_file()
        and previous.get("key") == key
        and previous.get("plan_sha256") == _sha256(request.plan)
    )
    context = multiprocessing.get_context("spawn")
    try:
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
            manifest = pool.submit(_build_and_check, request, cases, tolerances, reuse).result()
    except BrokenProcessPool:
        raise TritonRepoError(
            f"{request.plan}: the TensorRT build process died (out of GPU memory or a crash in TensorRT); "
            f"rebuild by hand with {request.plan.with_name(REPRODUCE)} to see its log"
        ) from None
    manifest.update(key=key, reused=reuse, onnx=str(request.onnx), onnx_sha256=_sha256(request.onnx))
    manifest["plan_sha256"] = _sha256(request.plan)
    if request.timing_cache.is_file():
        manifest["timing_cache"] = str(request.timing_cache)
        manifest["timing_cache_sha256"] = _sha256(request.timing_cache)
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    failed = [row for row in manifest["check"] if not row["passed"]]
    if failed:
        row = failed[0]
        raise CheckFailed(
            f"{request.plan}: output '{row['output']}' at {row['case']} differs from golden: max abs diff "
            f"{row['max_abs']:.3g}, max rel {row['max_rel']:.3g} (atol {row['atol']}, rtol {row['rtol']})"
        )
    return manifest


def _build_and_check(
    request: EngineRequest, cases: list[GoldenCase], tolerances: dict[str, Tolerance], reuse: bool
) -> dict:
    """The child's side: build with Polygraphy's TensorRT loaders, then run every case with TrtRunner."""
    import tensorrt as trt

    from triton_repo.runtimes import tensorrt_gpu

    if trt.__version__ != request.expected_tensorrt:
        raise TritonRepoError(
            f"TensorRT {trt.__version__} here, but the pinned release's server runs {request.expected_tensorrt} "
            "(triton_repo/core/releases.py): build in the engines service (make engines), or correct the table"
        )
    seconds = 0.0
    if not reuse:
        seconds = tensorrt_gpu.build_plan(request, trt)
    check = tensorrt_gpu.check_plan(request, cases, tolerances)
    return {
        "plan": request.plan.name,
        "tensorrt_version": trt.__version__,
        "gpu_name": request.gpu.name,
        "compute_capability": request.gpu.compute_capability,
        "strongly_typed": True,
        "profiles": [p.to_json() for p in request.profiles],
        "builder_optimization_level": request.builder_optimization_level,
        "version_compatible": request.version_compatible,
        "hardware_compatibility_level": request.hardware_compatibility_level,
        "build_seconds": round(seconds, 2),
        "check": check,
    }


def engine_summary(manifest: dict) -> dict:
    """The part of engine.json that the repository manifest and preflight need."""
    keys = (
        "plan",
        "tensorrt_version",
        "gpu_name",
        "compute_capability",
        "profiles",
        "version_compatible",
        "hardware_compatibility_level",
        "onnx_sha256",
        "plan_sha256",
        "timing_cache_sha256",
    )
    return {key: manifest.get(key) for key in keys}


def request_as_dict(request: EngineRequest) -> dict:
    """For logs and build.json: the request with paths as strings."""
    data = asdict(request)
    data["profiles"] = [p.to_json() for p in request.profiles]
    return json.loads(json.dumps(data, default=str))


def build_plan(
    staged: StagingRequest, release: Release, gpu: GpuStatus, engines_dir: Path, timing_cache_dir: Path
) -> tuple[Path, dict]:
    """The TensorRT plan of one precision artifact (the staging request's), built into `engines_dir`
    (reused when nothing changed) and checked against what the artifact computes, run by the request's
    runtime and runner, at the golden sample and every profile's min/opt/max. `timing_cache_dir` keeps one
    timing cache per GPU and TensorRT version. Returns the plan and its summary."""
    loaded, sample, tolerances = staged.loaded, staged.sample, staged.tolerances
    onnx_path, view = gpu_graph(loaded, staged.artifact, engines_dir)
    profiles = derive_profiles(loaded.spec)
    request = EngineRequest(
        onnx=onnx_path,
        plan=engines_dir / plan_filename(gpu.compute_capability),
        profiles=profiles,
        timing_cache=timing_cache_path(timing_cache_dir, gpu, release.tensorrt),
        expected_tensorrt=release.tensorrt,
        builder_optimization_level=loaded.spec.gpu.builder_optimization_level,
        version_compatible=loaded.spec.gpu.version_compatible,
        hardware_compatibility_level=loaded.spec.gpu.hardware_compatibility_level,
        gpu=gpu,
    )
    cases = engine_check_cases(loaded, onnx_path, sample, profiles, staged.runtime, staged.runner, view)
    return request.plan, engine_summary(build_engine(request, cases, tolerances))


def engine_check_cases(
    loaded: LoadedSpec,
    onnx_path: Path,
    sample: GoldenCase,
    profiles: list[Profile],
    runtime: Runtime,
    run_with: Runner = ORT,
    view=None,
) -> list[GoldenCase]:
    """The golden sample, and the sample resized to each profile's min/opt/max with what the same ONNX
    artifact computes there in ONNX Runtime (CPU, a worker process): what the plan must reproduce.
    `view` turns a case into what the graph takes (the scalar adapter's [1] or [rows])."""
    names = [output.name for output in loaded.spec.outputs]
    view = view or (lambda case: case)
    cases = []
    served = view(sample)
    if any(p.contains({n: tuple(a.shape) for n, a in served.inputs.items()}) for p in profiles):
        cases.append(served)
    seen = []
    with IsolatedSession(runtime, onnx_path, 0, run_with) as session:
        for profile in profiles:
            for sizes in profile.points():
                if sizes in seen:
                    continue
                seen.append(sizes)
                inputs = view(GoldenCase("", inputs_at(loaded, sample.inputs, sizes), {})).inputs
                cases.append(GoldenCase(case_label(sizes), inputs, session.run(inputs, names)))
    return cases
