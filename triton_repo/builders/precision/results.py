"""What the precision stage gives: every (artifact, runner) pair as measured, and the lines and inputs the
stage and its measurement share (their own module, so the stage can import the measurement directly)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from triton_repo.builders.precision.accuracy import AccuracyResult
from triton_repo.builders.precision.artifacts import Artifact
from triton_repo.builders.precision.kinds import pair_id
from triton_repo.builders.precision.lowered import describe_lowered
from triton_repo.builders.precision.timing import Timing
from triton_repo.core.golden import GoldenCase
from triton_repo.core.references import inputs_at
from triton_repo.core.spec import LoadedSpec
from triton_repo.runtimes.isolated import ORT, ArtifactRunFailed, Runner


@dataclass(frozen=True)
class VariantResult:
    """One (artifact, runner) pair as measured: accuracy vs the reference, speed, its golden outputs."""

    artifact: Artifact
    accuracy: AccuracyResult | None  # None for the reference
    timing: Timing | None  # None when the runtime could not run it
    sample: GoldenCase | None  # the golden sample inputs and the outputs this pair computes (None: not run)
    runner: Runner = ORT
    golden_ok: bool = True  # an FP32 pair's outputs match PyTorch's within the spec's tolerances
    streams: Path | None = None  # a stateful model: what this pair answers on the golden streams

    @property
    def pair(self) -> str:
        return pair_id(self.artifact.kind, self.runner)

    @property
    def passed(self) -> bool:
        return self.accuracy is None or self.accuracy.passed

    @property
    def servable(self) -> bool:
        """Within budget, measured, and (an FP32 pair) equal to PyTorch within tolerance."""
        return self.passed and self.timing is not None and self.golden_ok

    @property
    def verdict(self) -> str:
        if self.accuracy is None:
            return "reference"
        if not self.golden_ok and self.accuracy.passed:
            return f"{self.accuracy.verdict}, but differs from PyTorch beyond the outputs' tolerance"
        return self.accuracy.verdict


@dataclass(frozen=True)
class PrecisionResult:
    variants: dict[str, VariantResult]  # by pair: fp32, fp32@ov-bf16, fp16-cpu, int8-ov@ov-bf16, ...
    measured_at: str
    cached: bool
    op_types: dict[str, str]  # FP32 node name -> op type
    runtime: str  # what ran the reference, e.g. "ONNX Runtime 1.32.0"
    runners: dict[str, str] = dataclasses.field(default_factory=dict)  # runner name -> its runtime's label
    flops: dict[str, float] = dataclasses.field(default_factory=dict)  # batch size -> FP32 graph FLOPs
    # Q/DQ artifact kind -> share of the matrix FLOPs (batch 8) it runs in INT8
    int8_flops: dict[str, float] = dataclasses.field(default_factory=dict)


def refusal(name: str, kind: str, path: Path, error: ArtifactRunFailed) -> str:
    """'seqtag fp16-cpu: ONNX Runtime 1.32.0 crashed (SIGSEGV) running model.fp16-cpu.onnx; it has GRU in FP16'."""
    return f"{name} {kind}: {error}; {describe_lowered(path)}"


def speed_inputs(loaded: LoadedSpec, sample: dict[str, np.ndarray], batch: int) -> dict[str, np.ndarray]:
    """The golden sample at `batch` rows (capped at the model's max batch) and every other axis at opt."""
    spec = loaded.spec
    sizes = {axis: spec.axes[axis].opt for axis in spec.used_axes()}
    if spec.batched:
        sizes["batch"] = min(batch, spec.effective_max_batch_size)
    return inputs_at(loaded, sample, sizes)
