"""A gate that proves it can fail: before any variant is measured, FP32's own eval outputs are damaged the
way the task would notice (answers for another input; decisions flipped, boxes moved, classes swapped,
maps shifted, characters changed; for cosine, the quiet part of an output whose channels differ in scale
replaced), and the spec's metric must refuse every one. A metric that passes damage, or refuses FP32's
own outputs, is refused in one line that says what to use instead."""

from __future__ import annotations

import numpy as np

from triton_repo.builders.precision.metrics import Metric, metric_for
from triton_repo.builders.precision.metrics.base import Outputs, Score
from triton_repo.core.errors import SpecError
from triton_repo.core.log import warn
from triton_repo.core.spec import LoadedSpec

SCALE_GAP = 100.0  # channels whose RMS differ by this factor or more are "of different scale"


def check_metric(loaded: LoadedSpec, reference: Outputs, labels) -> None:
    """Raise SpecError when the spec's metric cannot judge variants of this model on this eval set."""
    spec = loaded.spec
    metric = metric_for(loaded)
    accuracy = spec.accuracy
    where = f"{loaded.path}: accuracy.metric {accuracy.metric}"
    if metric.name == "cosine_min" and reference[metric.reads[0]][:1].size == 1:
        output = next(o for o in spec.outputs if o.name == metric.reads[0])
        raise SpecError(
            f"{where} over output '{output.name}' {output.dims} is 1 whatever the value (the cosine of one "
            "number is its sign): use metric: binary for a probability or logit, or metric: custom"
        )
    own = metric.score(reference, reference, labels)
    for line in doubts(metric, reference, own):
        warn(f"{spec.name}: {line}")
    threshold = accuracy.threshold(own.value)
    if not _passes(metric, own, threshold):
        raise SpecError(
            f"{where} refuses FP32's own outputs on the eval set ({_shown(metric, own)}, budget "
            f"{threshold:.4g}{_evidence(own)}): {metric.fix()}"
        )
    for what, damaged in damages(metric, reference).items():
        result = metric.score(reference, damaged, labels)
        if _passes(metric, result, threshold):
            raise SpecError(
                f"{where} cannot fail on {spec.name}: FP32's own outputs {what} still pass "
                f"({_shown(metric, result)}, budget {threshold:.4g}); {_fix(metric, what)}"
            )


def doubts(metric: Metric, reference: Outputs, own: Score) -> list[str]:
    """Settings that look wrong for what FP32 answers, said but not refused (the metric can still fail)."""
    values = np.asarray(reference[metric.reads[0]])
    found = []
    if (
        metric.name == "binary"
        and 0 < metric.settings.threshold < 1
        and (values.min() < 0 or values.max() > 1)
    ):
        found.append(
            f"accuracy.binary.threshold {metric.settings.threshold:g}, but the output runs from "
            f"{values.min():.3g} to {values.max():.3g}: if it is a logit, the decision is at 0 (threshold: 0)"
        )
    if metric.name == "detection":
        per_image = own.details.get("detections_fp32", 0.0) / max(1, own.rows)
        if per_image >= metric.settings.max_detections / 2:
            found.append(
                f"FP32 finds {per_image:.0f} detections per eval image at score > "
                f"{metric.settings.score_threshold:g}: check accuracy.detection's layout, box format, objectness "
                "and score_threshold"
            )
    return found


def damages(metric: Metric, reference: Outputs) -> dict[str, Outputs]:
    """Every damage the metric must refuse on this model: the ones every task notices, then its own."""
    rows = len(reference[metric.reads[0]])
    found: dict[str, Outputs] = {}
    if metric.name == "cosine_min":
        found |= quiet_part(reference, metric.reads[0])
    found |= metric.damages(reference)
    order = another_row(rows)
    found["answered for another eval row"] = {
        **reference,
        **{name: np.asarray(reference[name])[order] for name in metric.reads},
    }
    return found


def another_row(rows: int) -> np.ndarray:
    """A fixed shuffle of the rows in which no row keeps its own place: a shift would keep the structure
    of periodic or clustered eval sets (each row answered by one of its kind), a shuffle does not."""
    order = np.random.default_rng(0).permutation(rows)
    for i in np.flatnonzero(order == np.arange(rows)):
        j = (i + 1) % rows
        order[i], order[j] = order[j], order[i]
    return order


def quiet_part(reference: Outputs, name: str) -> dict[str, Outputs]:
    """The channels of an output far quieter than the rest, taken from another eval row (what cosine
    over the whole output cannot see: a detection head's class scores beside pixel box coordinates)."""
    array = np.asarray(reference[name], np.float64)
    if array.ndim < 2 or len(array) < 2:
        return {}
    found = {}
    # the axes that hold channels: a vector's features, a head's channels (either end of [batch, C, N]);
    # not the spatial axes of a map, whose quiet border is no part of the output's meaning
    for axis in sorted({1, array.ndim - 1}) if array.ndim <= 3 else [1]:
        if array.shape[axis] < 2:
            continue
        others = tuple(a for a in range(array.ndim) if a != axis)
        rms = np.sqrt(np.mean(array**2, axis=others))
        loud = float(rms.max())
        quiet = np.flatnonzero(rms < loud / SCALE_GAP)
        if not len(quiet) or loud == 0:
            continue
        damaged = np.array(reference[name], copy=True)
        index = [slice(None)] * array.ndim
        index[axis] = quiet
        damaged[tuple(index)] = damaged[another_row(len(damaged))][tuple(index)]
        ratio = loud / max(float(rms[quiet].max()), 1e-30)
        what = (
            f"with {_ranges(quiet)} of axis {axis} (RMS at most {rms[quiet].max():.3g}, {ratio:,.0f}x quieter "
            f"than {_ranges(np.flatnonzero(rms >= loud / SCALE_GAP))} at up to {loud:.3g}) taken from another eval row"
        )
        found[what] = {**reference, name: damaged}
    return found


def _passes(metric: Metric, score: Score, threshold: float) -> bool:
    holds = (lambda v: v >= threshold) if metric.higher_is_better else (lambda v: v <= threshold)
    return bool(np.isfinite(score.value)) and holds(score.value) and holds(score.bound)


def _shown(metric: Metric, score: Score) -> str:
    return f"{metric.label} {score.value:.4g}, {metric.bound_name} {score.bound:.4g}"


def _evidence(score: Score) -> str:
    details = {
        k: v for k, v in score.details.items() if k in ("detections_fp32", "characters_fp32", "too_few_rows")
    }
    return "".join(f", {k.replace('_', ' ')} {v:g}" for k, v in details.items())


def _fix(metric: Metric, what: str) -> str:
    if " of axis " in what and metric.name == "cosine_min":
        return (
            "cosine over the whole output is decided by its loud channels: use the metric of the task "
            "(detection for a raw detection head, ctc for CTC scores, a classification metric for class "
            "scores), or gate the part that matters with accuracy.output"
        )
    if what == "answered for another eval row":
        return (
            "FP32's outputs barely differ from one eval row to another, so the gate cannot tell a variant "
            "that ignores its input: give data.eval rows the model tells apart, or " + metric.fix()
        )
    return metric.fix()


def _ranges(indices: np.ndarray) -> str:
    """[0, 1, 2, 3, 7] -> 'channels 0-3, 7'."""
    parts, start = [], None
    for i, value in enumerate(indices):
        if start is None:
            start = value
        if i + 1 == len(indices) or indices[i + 1] != value + 1:
            parts.append(f"{start}" if start == value else f"{start}-{value}")
            start = None
    return "channels " + ", ".join(parts) if len(indices) > 1 else f"channel {parts[0]}"
