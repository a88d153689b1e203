"""What the precision stage measures: (artifact, runner) pairs, and which pair each served variant is.

An artifact is an ONNX file; a runner is how it runs (ONNX Runtime, or OpenVINO at f32 or bf16
inference precision). Which pairs exist and which serve what is declared in kinds.py. Every pair of a model is measured against FP32 (fp32 in ONNX Runtime, the
reference) on the eval set and timed in one interleaved run; each served variant is then the fastest
of its candidate pairs within the accuracy budget, so the runtime is chosen by measurement.
"""

from __future__ import annotations

from dataclasses import dataclass

from triton_repo.build.precision.kinds import CPU_CANDIDATES, GPU_SERVED


@dataclass(frozen=True)
class Choice:
    """Which pair a served variant is, and why; `pair` None when every candidate was refused."""

    precision: str
    pair: str | None
    why: str
    refused: tuple[tuple[str, str], ...] = ()  # (pair, verdict) of every candidate outside its budget


def choose_cpu(precision: str, variants: dict) -> Choice:
    """The fastest candidate pair within budget (batch-8 throughput, measured in one interleaved run)."""
    candidates = [pair for pair in CPU_CANDIDATES[precision] if pair in variants]
    passing = [pair for pair in candidates if variants[pair].servable]
    refused = tuple((pair, variants[pair].verdict) for pair in candidates if not variants[pair].servable)
    if not passing:
        return Choice(precision, None, "", refused)
    best = max(passing, key=lambda pair: variants[pair].timing.throughput_b8)
    if len(candidates) == 1:
        return Choice(precision, best, "the only candidate", refused)
    others = ", ".join(
        f"{pair} {variants[pair].timing.throughput_b8:,.0f}" for pair in passing if pair != best
    )
    why = f"fastest within budget: {variants[best].timing.throughput_b8:,.0f} inf/s at batch 8"
    why += f" (vs {others})" if others else f" ({', '.join(p for p, _ in refused)} outside budget)"
    return Choice(precision, best, why, refused)


def choose_gpu(precision: str, variants: dict) -> Choice:
    pair = GPU_SERVED[precision]
    variant = variants.get(pair)
    if variant is None or not variant.passed:
        verdict = variant.verdict if variant else "not measured (no runtime here runs it)"
        return Choice(precision, None, "", ((pair, verdict),))
    return Choice(precision, pair, "the artifact TensorRT builds")
