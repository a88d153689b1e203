"""Which published variant an ensemble calls: the spec's choice, else the fastest one (at the eval set's
real shapes when the build measured them), ties within the speed noise going to the one called before,
then to the most accurate."""

from __future__ import annotations

import math

from triton_repo.core.errors import SpecError
from triton_repo.core.spec import LoadedSpec


def choose_variant(
    loaded: LoadedSpec, report: dict, staged: list[str], before: str | None = None
) -> tuple[str, str]:
    """The variant the ensemble calls, and why: the spec's choice, else the fastest published one. Those
    within the speed noise of the fastest are as fast: of them the one called before (`before`) is kept,
    else the most accurate is called (FP32 itself counts as the most accurate)."""
    spec = loaded.spec
    if spec.ensemble.variant != "auto":
        name = f"{spec.name}_{spec.ensemble.variant}"
        if name not in staged:
            raise SpecError(
                f"{loaded.path}: ensemble.variant {spec.ensemble.variant}: {name} was not published"
            )
        return name, "chosen in the spec"
    rows = {v["triton_model"]: v for v in report["variants"] if v["triton_model"] in staged}
    floor = report.get("noise_floor", 0.0)
    # at the eval set's own lengths when the build measured them (texts are shorter than the opt size)
    real = all(rows[name].get("throughput_real_per_s") for name in rows)
    speed, spread = (
        ("throughput_real_per_s", "throughput_real_noise")
        if real
        else ("throughput_per_s", "throughput_noise")
    )
    shapes = " on the eval set's shapes" if real and _shaped(report) else ""

    def rate(name: str) -> float:
        return rows[name][speed] or 0.0

    def noise(a: str, b: str) -> float:
        return max(rows[a].get(spread) or 0.0, rows[b].get(spread) or 0.0, floor)

    def speeds(a: str, b: str) -> str:
        return (
            f"{rate(a):,.0f} vs {rate(b):,.0f} inf/s in-process at batch 8{shapes}, noise {noise(a, b):.0%}"
        )

    fastest = max(rows, key=rate)
    tied = [name for name in rows if rate(fastest) <= rate(name) * (1 + noise(fastest, name))]
    if before in tied:  # a change must be faster beyond the noise
        best = before
    else:  # ties go to the more accurate
        best = max(tied, key=lambda name: (_accuracy_rank(rows[name], report), rate(name)))
    if best == fastest:
        why = f"fastest published variant within budget ({rate(best):,.0f} inf/s in-process, batch 8{shapes})"
    elif best == before:
        why = f"kept: within the noise of {fastest} ({speeds(best, fastest)}), called before"
    else:
        why = (
            "the most accurate published variant within the noise of the fastest, "
            f"{fastest} ({speeds(best, fastest)})"
        )
    if before is not None and before not in rows:
        why += f"; {before}, called before, is not published now"
    elif before in rows and before not in tied:
        gain = rate(fastest) / rate(before) - 1 if rate(before) else float("inf")
        why += (
            f"; replaces {before}, called before: {fastest} is faster by {gain:.0%} "
            f"(noise {noise(fastest, before):.0%})"
        )
    return best, why


def _shaped(report: dict) -> bool:
    """Whether the real-shape speeds differ from opt's: a dynamic axis besides batch was measured."""
    described = report.get("speed_real_shapes")
    return bool(described) and described != "same as opt"


def _accuracy_rank(row: dict, report: dict) -> float:
    """Larger is more accurate: FP32 itself (a row without accuracy: the reference) first, then by the
    gate's bound (its value when none) in the metric's direction."""
    accuracy = row.get("accuracy")
    if accuracy is None:
        return math.inf
    measured = accuracy["bound"] if accuracy.get("bound") is not None else accuracy.get("value")
    if measured is None:
        return -math.inf
    higher = accuracy.get("higher_is_better")
    higher = report.get("higher_is_better", True) if higher is None else higher
    return measured if higher else -measured
