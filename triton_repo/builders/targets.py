"""The targets: where a repository will be served, each one type the pipeline follows without branching on
its name. A target knows its name, which (artifact, runner) pairs may serve each precision (and so which
it builds and measures), how it chooses the served pair, how it stages its Triton models
(`<name>_<prec>` for the python backend; `<name>_<prec>_trt` and `_onnx` for the NGC image) and what the
report names. `resolve_target` turns `--target auto|cpu|gpu` into one, reading the release pin for gpu.

Adding a target: a subclass here with its `candidates`, `choose` and `stage`, an entry in TARGETS, and its
name, model suffixes and local servability in core/targets.py (docs/extending.md walks through it).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from triton_repo.builders.engines import GpuStatus, build_plan, gpu_available
from triton_repo.builders.precision.kinds import CPU_CANDIDATES, GPU_SERVED, REFERENCE
from triton_repo.builders.precision.pairs import Choice, choose_cpu_variants, choose_gpu_variants
from triton_repo.builders.precision.results import PrecisionResult, refusal
from triton_repo.builders.report import not_published
from triton_repo.core import targets as names
from triton_repo.core.errors import SpecError
from triton_repo.core.log import info, step, warn
from triton_repo.core.releases import Release, read_pinned_release
from triton_repo.core.spec import LoadedSpec
from triton_repo.repo.gpu_writer import stage_gpu_models
from triton_repo.repo.staging import StagingRequest
from triton_repo.repo.writer import StagedModel, served_tolerances, stage_cpu_model
from triton_repo.runtimes.isolated import ArtifactRunFailed, Runtime

RUNS_DIR = "runs"  # <work>/runs: staged files' checked runs, remembered by content (run_cache.run_once)


@dataclass(frozen=True)
class StageJob:
    """One model's measured variants and choices, to be staged for a target."""

    loaded: LoadedSpec
    result: PrecisionResult
    choices: dict[str, Choice]
    staging: Path  # the staging area beside the repository
    work_dir: Path  # the build's work dir (run cache, engines, timing cache)
    runtime: Runtime

    def request(self, precision: str) -> StagingRequest:
        """What staging the chosen pair of `precision` needs."""
        variant = self.result.variants[self.choices[precision].pair]
        return StagingRequest(
            self.loaded,
            precision,
            variant.artifact.path,
            variant.sample,
            served_tolerances(self.loaded, precision),
            self.staging,
            self.runtime,
            variant.runner,
            self.work_dir / RUNS_DIR,
            variant.streams,
        )


@dataclass(frozen=True)
class Staged:
    """What a target staged for one model, and what it did not."""

    models: list[StagedModel] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)  # (Triton model(s), one-line reason)
    pending: list[str] = field(default_factory=list)  # _trt models staged without a plan


def _served(candidates: dict[str, tuple[str, ...]]) -> frozenset[str]:
    return frozenset({REFERENCE, *(pair for pairs in candidates.values() for pair in pairs)})


@dataclass(frozen=True)
class Target(ABC):
    """Where the repository will be served. `artifacts`: "served" builds and measures only the pairs this
    target serves (and the reference); "all" every pair the spec asks for."""

    name: ClassVar[str]
    candidates: ClassVar[dict[str, tuple[str, ...]]]  # precision -> the pairs that may serve it
    report_suffix: ClassVar[str]  # the Triton model the report names for a published pair
    no_ensemble: ClassVar[str] = ""  # why this target builds no ensemble (warned), if it builds none

    artifacts: str = "served"

    @property
    def serves(self) -> frozenset[str]:
        """The pairs built and measured unless every pair is asked for: its candidates, the reference."""
        return _served(self.candidates)

    @property
    def pairs(self) -> frozenset[str] | None:
        """The (artifact, runner) pairs to build and measure; None for every pair the spec asks for."""
        return self.serves if self.artifacts == "served" else None

    @classmethod
    def for_build(cls, artifacts: str, probe: GpuStatus | None, pin_file: Path) -> Target:
        """The target for a build on this machine (`probe`: its GPU, when one was looked for)."""
        return cls(artifacts)

    def note(self) -> str:
        """A line on what this machine cannot do for this target ("" when nothing is missing)."""
        return ""

    @abstractmethod
    def choose(
        self, loaded: LoadedSpec, result: PrecisionResult, previous: dict[str, str]
    ) -> dict[str, Choice]:
        """Every precision's served pair (`previous`: the pair each precision served before)."""

    @abstractmethod
    def stage(self, job: StageJob) -> Staged:
        """The Triton models of every chosen variant, and the variants refused."""

    def variant_names(self, model: str, precision: str) -> tuple[str, ...]:
        return names.variant_names(model, precision, self.name)


def _refusal(choice: Choice) -> str:
    """Why no candidate pair of a variant is served: each candidate's verdict."""
    if len(choice.refused) == 1:
        return choice.refused[0][1]
    return "; ".join(f"{pair}: {verdict}" for pair, verdict in choice.refused)


@dataclass(frozen=True)
class CpuTarget(Target):
    """The python backend of the local tritonserver, running the chosen artifact in the chosen runtime."""

    name: ClassVar[str] = names.CPU
    candidates: ClassVar[dict[str, tuple[str, ...]]] = CPU_CANDIDATES
    report_suffix: ClassVar[str] = ""
    no_gpu: str = ""  # why `--target auto` chose cpu: what the GPU probe found

    @classmethod
    def for_build(cls, artifacts, probe, pin_file):
        return cls(artifacts, probe.reason if probe else "")

    def note(self) -> str:
        return self.no_gpu

    def choose(self, loaded, result, previous):
        spec = loaded.spec
        return choose_cpu_variants(spec.precisions, result.variants, previous, spec.precision.variants)

    def stage(self, job: StageJob) -> Staged:
        """`<name>_<prec>` for every variant with a pair within budget; one not published because it is no
        faster than FP32 is said in a line, and is not a refusal."""
        name = job.loaded.spec.name
        staged = Staged()
        for precision, choice in job.choices.items():
            if choice.pair is None:
                staged.refused.append((f"{name}_{precision}", _refusal(choice)))
                continue
            variant = job.result.variants[choice.pair]
            if not choice.published:
                info(f"{name}_{precision} not published: {not_published(choice, variant)}")
                continue
            try:
                with step(f"{name}: stage {name}_{precision} (cpu: {choice.pair}, {choice.why})"):
                    staged.models.append(stage_cpu_model(job.request(precision)))
            except ArtifactRunFailed as error:
                line = refusal(name, choice.pair, variant.artifact.path, error)
                warn(f"refused {line}")
                staged.refused.append((f"{name}_{precision}", line))
        return staged


_GPU_CANDIDATES = {precision: (pair,) for precision, pair in GPU_SERVED.items()}


@dataclass(frozen=True)
class GpuTarget(Target):
    """TensorRT plans and ONNX Runtime in the pinned NGC tritonserver release (`gpu`: whether this machine
    can build the plans)."""

    name: ClassVar[str] = names.GPU
    candidates: ClassVar[dict[str, tuple[str, ...]]] = _GPU_CANDIDATES
    report_suffix: ClassVar[str] = "_onnx"  # the _trt twin is listed by the build
    no_ensemble: ClassVar[str] = (
        "the ensemble is not built on the gpu target (its pre-processing needs packages the NGC "
        "tritonserver image lacks); clients call the variants"
    )

    release: Release | None = None
    gpu: GpuStatus | None = None

    @classmethod
    def for_build(cls, artifacts, probe, pin_file):
        return cls(artifacts, read_pinned_release(pin_file), probe or gpu_available())

    def note(self) -> str:
        return self.gpu.reason if self.gpu else ""

    def choose(self, loaded, result, previous):
        spec = loaded.spec
        return choose_gpu_variants(spec.precisions, result.variants, previous, spec.precision.variants)

    def stage(self, job: StageJob) -> Staged:
        """`<name>_<prec>_trt` (only with a built plan; else listed as pending) and `<name>_<prec>_onnx`."""
        loaded, name = job.loaded, job.loaded.spec.name
        staged = Staged()
        for precision, choice in job.choices.items():
            both = f"{name}_{precision}_trt and _onnx"
            if choice.pair is None:
                staged.refused.append((both, _refusal(choice)))
                continue
            if loaded.spec.sequence is not None and loaded.spec.per_request_inputs:
                staged.refused.append((both, _per_request_state(loaded)))
                continue
            plan = "build and check the TensorRT plan" if self.gpu.available else "no GPU: configs only"
            with step(f"{name}: stage {both} (gpu; {plan})"):
                request = job.request(precision)
                engines_dir = job.work_dir / name / "engines" / precision
                engine = None
                if self.gpu.available:
                    cache = job.work_dir / "timing-cache"
                    engine = build_plan(request, self.release, self.gpu, engines_dir, cache)
                trt, onnx = stage_gpu_models(request, self.release, engine, engines_dir)
            staged.models.extend([trt, onnx])
            if trt.manifest_entry["engine_pending"]:
                staged.pending.append(trt.name)  # published with its config and no plan; the manifest says so
        return staged


def _per_request_state(loaded: LoadedSpec) -> str:
    """Why the gpu target does not serve a stateful model with a per-request scalar."""
    quoted = ", ".join(f"'{n}'" for n in loaded.spec.per_request_inputs)
    return (
        f"{quoted} is one value per request, but Triton's sequence batcher runs several sequences as one "
        "batch and the served graph takes one value for all of them; serve it on the cpu target (which "
        f"batches only requests that agree), or give {quoted} a value per row (dims [batch])"
    )


TARGETS: dict[str, type[Target]] = {CpuTarget.name: CpuTarget, GpuTarget.name: GpuTarget}
AUTO = "auto"  # gpu where this machine has an NVIDIA GPU and TensorRT, else cpu
CHOICES = (AUTO, *TARGETS)  # what `--target` accepts


def resolve_target(asked: str, artifacts: str, pin_file: Path) -> Target:
    """The target `--target` names (`auto`: gpu when this machine has both an NVIDIA GPU and TensorRT,
    else cpu); gpu reads the pinned NGC release from `pin_file`, so a bad pin fails before any work."""
    if asked not in CHOICES:
        raise SpecError(f"--target {asked!r}: choose one of {', '.join(CHOICES)}")
    probe = gpu_available() if asked in (AUTO, GpuTarget.name) else None
    if asked == AUTO:
        asked = GpuTarget.name if probe.available else CpuTarget.name
    return TARGETS[asked].for_build(artifacts, probe, pin_file)
