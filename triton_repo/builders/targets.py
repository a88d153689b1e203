"""The two targets, each a profile the pipeline follows without branching on its name: which pairs serve
which precision, which kinds it builds by default, how a served variant is chosen and which stager writes
its models (`<name>_<prec>` for the python backend; `<name>_<prec>_trt` and `_onnx` for the NGC image).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from triton_repo.builders.engines import GpuStatus, build_plan
from triton_repo.builders.precision.kinds import CPU_CANDIDATES, GPU_SERVED, REFERENCE
from triton_repo.builders.precision.pairs import choose_cpu_variants, choose_gpu_variants
from triton_repo.builders.precision.results import refusal
from triton_repo.builders.report import not_published
from triton_repo.core.log import info, step, warn
from triton_repo.core.releases import Release
from triton_repo.repo.gpu_writer import stage_gpu_models
from triton_repo.repo.writer import served_tolerances, stage_cpu_model
from triton_repo.runtimes.isolated import ArtifactRunFailed

RUNS_DIR = "runs"  # <work>/runs: staged files' checked runs, remembered by content (run_cache.run_once)


@dataclass(frozen=True)
class Target:
    """Where the repository will be served: cpu (python backend) or gpu (TensorRT and ONNX Runtime
    in the pinned NGC release; `gpu` says whether plans can be built here)."""

    name: str  # "cpu" | "gpu"
    release: Release | None = None  # gpu only: the pinned NGC release
    gpu: GpuStatus | None = None  # gpu only: this machine's GPU and TensorRT, if any
    artifacts: str = (
        "served"  # "served": only the pairs this target serves (and the reference); "all": every pair
    )

    @property
    def profile(self) -> TargetProfile:
        return PROFILES[self.name]

    @property
    def pairs(self) -> frozenset[str] | None:
        """The (artifact, runner) pairs to build and measure; None for every pair the spec asks for."""
        return self.profile.serves if self.artifacts == "served" else None


def _refusal(choice) -> str:
    """Why no candidate pair of a variant is served: each candidate's verdict."""
    if len(choice.refused) == 1:
        return choice.refused[0][1]
    return "; ".join(f"{pair}: {verdict}" for pair, verdict in choice.refused)


def stage_cpu(loaded, result, choices, staging, work_dir, target, refused, pending, runtime) -> list:
    """`<name>_<prec>` for every variant with a pair within budget (python backend running the chosen
    artifact in the chosen runtime); one not published because it is no faster than FP32 is said in a
    line, and is not a refusal."""
    name = loaded.spec.name
    staged = []
    for precision, choice in choices.items():
        if choice.pair is None:
            refused.append((f"{name}_{precision}", _refusal(choice)))
            continue
        variant = result.variants[choice.pair]
        if not choice.published:
            info(f"{name}_{precision} not published: {not_published(choice, variant)}")
            continue
        try:
            with step(f"{name}: stage {name}_{precision} (cpu: {choice.pair}, {choice.why})"):
                staged.append(
                    stage_cpu_model(
                        loaded,
                        precision,
                        variant.artifact.path,
                        variant.sample,
                        served_tolerances(loaded, precision),
                        staging,
                        runtime,
                        variant.runner,
                        work_dir / RUNS_DIR,
                        variant.streams,
                    )
                )
        except ArtifactRunFailed as error:
            line = refusal(name, choice.pair, variant.artifact.path, error)
            warn(f"refused {line}")
            refused.append((f"{name}_{precision}", line))
    return staged


def stage_gpu(loaded, result, choices, staging, work_dir, target, refused, pending, runtime) -> list:
    """`<name>_<prec>_trt` (only with a built plan; else listed in `pending`) and `<name>_<prec>_onnx`."""
    name = loaded.spec.name
    staged = []
    for precision, choice in choices.items():
        if choice.pair is None:
            refused.append((f"{name}_{precision}_trt and _onnx", _refusal(choice)))
            continue
        if loaded.spec.sequence is not None and loaded.spec.per_request_inputs:
            refused.append((f"{name}_{precision}_trt and _onnx", _per_request_state(loaded)))
            continue
        variant = result.variants[choice.pair]
        plan = "build and check the TensorRT plan" if target.gpu.available else "no GPU: configs only"
        with step(f"{name}: stage {name}_{precision}_trt and _onnx (gpu; {plan})"):
            tolerances = served_tolerances(loaded, precision)
            engines_dir = work_dir / name / "engines" / precision
            engine = None
            if target.gpu.available:
                engine = build_plan(
                    loaded,
                    variant.artifact.path,
                    variant.sample,
                    tolerances,
                    release=target.release,
                    gpu=target.gpu,
                    engines_dir=engines_dir,
                    timing_cache_dir=work_dir / "timing-cache",
                    runtime=runtime,
                    run_with=variant.runner,
                )
            trt, onnx = stage_gpu_models(
                loaded,
                precision,
                variant.artifact.path,
                variant.sample,
                tolerances,
                staging,
                release=target.release,
                engine=engine,
                graph_dir=engines_dir,
                runtime=runtime,
                run_with=variant.runner,
                runs=work_dir / RUNS_DIR,
                streams=variant.streams,
            )
        staged += [trt, onnx]
        if trt.manifest_entry["engine_pending"]:
            pending.append(trt.name)  # published with its config and no plan; the manifest says so
    return staged


def _per_request_state(loaded) -> str:
    """Why the gpu target does not serve a stateful model with a per-request scalar."""
    names = ", ".join(f"'{n}'" for n in loaded.spec.per_request_inputs)
    return (
        f"{names} is one value per request, but Triton's sequence batcher runs several sequences as one "
        "batch and the served graph takes one value for all of them; serve it on the cpu target (which "
        f"batches only requests that agree), or give {names} a value per row (dims [batch])"
    )


@dataclass(frozen=True)
class TargetProfile:
    name: str
    candidates: dict[str, tuple[str, ...]]  # precision -> the pairs that may serve it
    serves: frozenset[
        str
    ]  # the pairs built and measured unless every pair is asked for: its candidates, the reference
    choose: Callable  # (precisions, variants, previous pairs, listed precisions) -> {precision: Choice}
    stage: (
        Callable  # (loaded, result, choices, staging, work_dir, target, refused, pending, runtime) -> staged
    )
    report_suffix: str  # the Triton model the report names for a published pair
    no_ensemble: str = ""  # why this target builds no ensemble (warned), if it builds none


def _served(candidates: dict[str, tuple[str, ...]]) -> frozenset[str]:
    return frozenset({REFERENCE, *(pair for pairs in candidates.values() for pair in pairs)})


_GPU_CANDIDATES = {precision: (pair,) for precision, pair in GPU_SERVED.items()}
PROFILES = {
    "cpu": TargetProfile("cpu", CPU_CANDIDATES, _served(CPU_CANDIDATES), choose_cpu_variants, stage_cpu, ""),
    "gpu": TargetProfile(
        "gpu",
        _GPU_CANDIDATES,
        _served(_GPU_CANDIDATES),
        choose_gpu_variants,
        stage_gpu,
        "_onnx",  # the _trt twin is listed by the build
        no_ensemble="the ensemble is not built on the gpu target (its pre-processing needs packages the "
        "NGC tritonserver image lacks); clients call the variants",
    ),
}
