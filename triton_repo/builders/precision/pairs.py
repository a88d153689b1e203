"""What the precision stage measures: (artifact, runner) pairs, and which pair each served variant is.

An artifact is an ONNX file; a runner is how it runs (ONNX Runtime, or OpenVINO at f32 or bf16
inference precision). Which pairs exist and which serve what is declared in kinds.py. Every pair of a model is measured against FP32 (fp32 in ONNX Runtime, the
reference) on the eval set and timed in one interleaved run; each served variant is then the fastest
of its candidate pairs within the accuracy budget, so the runtime is chosen by measurement.

Speed is measured with noise (timing.noise_between), so a choice is stable under it: pairs within the
noise of the fastest are equally fast and the more accurate of them serves, the pair served before is
kept unless another beats it beyond the noise, and on the cpu target a lower precision that does not beat
the served FP32 beyond the noise is published only when the spec lists it (its name promises speed).
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass, replace

from triton_repo.builders.precision.kinds import CPU_CANDIDATES, GPU_SERVED
from triton_repo.builders.precision.timing import faster_beyond_noise, noise_between


@dataclass(frozen=True)
class Choice:
    """Which pair a served variant is, and why; `pair` None when every candidate was refused."""

    precision: str
    pair: str | None
    why: str
    refused: tuple[tuple[str, str], ...] = ()  # (pair, verdict) of every candidate outside its budget
    # False: within budget but not faster than the served FP32 beyond the noise, and not listed in the
    # spec's precision.variants: measured and reported, not published (and not a refusal)
    published: bool = True
    versus_fp32: float | None = None  # when not published: its throughput over the served FP32's
    noise: float | None = None  # when not published: the noise that comparison allowed


def choose_cpu(precision: str, variants: dict, previous: str | None = None) -> Choice:
    """The fastest candidate pair within budget (batch-8 throughput, measured in one interleaved run);
    among pairs within the noise of the fastest, `previous` (the pair served before) if it is one of
    them, else the most accurate."""
    candidates = [pair for pair in CPU_CANDIDATES[precision] if pair in variants]
    passing = [pair for pair in candidates if variants[pair].servable]
    refused = tuple((pair, variants[pair].verdict) for pair in candidates if not variants[pair].servable)
    if not passing:
        return Choice(precision, None, "", refused)
    if len(candidates) == 1:
        return Choice(precision, passing[0], "the only candidate", refused)
    pair, why = _stable_choice(passing, variants, previous)
    if len(passing) == 1:
        why += f" ({', '.join(p for p, _ in refused)} outside budget)"
    return Choice(precision, pair, why, refused)


def choose_cpu_variants(
    precisions: list[str], variants: dict, previous: dict[str, str], listed: Collection[str] | None
) -> dict[str, Choice]:
    """Every precision's choice (`previous`: the pair each served before); by default (`listed` None:
    the spec's precision.variants unset) a lower precision that does not beat the served FP32 beyond
    the noise is not published."""
    choices = {p: choose_cpu(p, variants, previous.get(p)) for p in precisions}
    fp32 = choices.get("fp32")
    if fp32 is None or fp32.pair is None:
        return choices
    served = variants[fp32.pair].timing
    for precision, choice in choices.items():
        if precision == "fp32" or choice.pair is None or (listed is not None and precision in listed):
            continue
        timing = variants[choice.pair].timing
        if not faster_beyond_noise(timing, served):
            choices[precision] = replace(
                choice,
                published=False,
                versus_fp32=timing.throughput_b8 / served.throughput_b8,
                noise=noise_between(timing, served),
            )
    return choices


def _stable_choice(passing: list[str], variants: dict, previous: str | None) -> tuple[str, str]:
    timing = {pair: variants[pair].timing for pair in passing}
    fastest = max(passing, key=lambda pair: timing[pair].throughput_b8)
    tied = [pair for pair in passing if not faster_beyond_noise(timing[fastest], timing[pair])]

    def rate(pair: str) -> str:
        return f"{timing[pair].throughput_b8:,.0f}"

    def noise(a: str, b: str) -> str:
        return f"noise {noise_between(timing[a], timing[b]):.0%}"

    if previous in tied:  # a change must be faster beyond the noise
        best = previous
    else:  # ties go to the more accurate
        best = max(tied, key=lambda pair: (_accuracy_rank(variants[pair]), timing[pair].throughput_b8))
    if best == fastest:
        others = ", ".join(f"{pair} {rate(pair)}" for pair in passing if pair != best)
        why = f"fastest within budget: {rate(best)} inf/s at batch 8" + (f" (vs {others})" if others else "")
    elif best == previous:
        why = (
            f"kept: within the noise of {fastest} ({rate(best)} vs {rate(fastest)} inf/s at batch 8, "
            f"{noise(best, fastest)}), served before"
        )
    else:
        why = (
            f"the most accurate within the noise of the fastest, {fastest} ({rate(best)} vs "
            f"{rate(fastest)} inf/s at batch 8, {noise(best, fastest)})"
        )
    if previous in timing and previous not in tied:
        gain = timing[fastest].throughput_b8 / timing[previous].throughput_b8 - 1
        why += (
            f"; replaces {previous}, served before: {fastest} is faster by {gain:.0%} "
            f"({noise(fastest, previous)})"
        )
    return best, why


def _accuracy_rank(variant) -> float:
    """Larger is more accurate: the reference first, then by the gate's bound (its value when none),
    in the metric's direction."""
    accuracy = variant.accuracy
    if accuracy is None:
        return math.inf
    measured = accuracy.bound if accuracy.bound is not None else accuracy.value
    if measured is None:
        return -math.inf
    return measured if accuracy.higher else -measured


def choose_gpu(precision: str, variants: dict) -> Choice:
    pair = GPU_SERVED[precision]
    variant = variants.get(pair)
    if variant is None or not variant.passed:
        verdict = variant.verdict if variant else "not measured (no runtime here runs it)"
        return Choice(precision, None, "", ((pair, verdict),))
    return Choice(precision, pair, "the artifact TensorRT builds")


def choose_gpu_variants(
    precisions: list[str], variants: dict, previous: dict[str, str], listed: Collection[str] | None
) -> dict[str, Choice]:
    """Every precision's choice: the artifact TensorRT builds (its speed is not measured here, so
    neither the previous choice nor the served FP32's speed matters)."""
    return {p: choose_gpu(p, variants) for p in precisions}
