"""Speed inputs at the shapes real traffic has: batches of the eval set, each cut to its own length on
every dynamic axis other than batch. The opt size of such an axis (a text model's seq 128) is far from
what requests carry (sentences of 14 to 40 tokens), and the ranking of runtimes differs between them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from triton_repo.builders.precision.accuracy import row_count
from triton_repo.builders.precision.timing import Timing
from triton_repo.core.references import resize_axis
from triton_repo.core.spec import BATCH_AXIS, LoadedSpec, ModelSpec

REAL_GROUPS = 8  # the most eval batches the speed run cycles through
SAME_AS_OPT = "same as opt"


@dataclass(frozen=True)
class RealShapes:
    """The eval batches to time, or why there are none (`why`: 'same as opt' when opt is the real shape)."""

    groups: list[dict[str, np.ndarray]]
    why: str = ""


def dynamic_axes(spec: ModelSpec) -> list[str]:
    """The axes of the inputs, other than batch, whose size varies (min < max)."""
    return [
        axis for axis in spec.used_axes() if axis != BATCH_AXIS and spec.axes[axis].min < spec.axes[axis].max
    ]


def not_timed(spec: ModelSpec) -> str:
    """Why the speed run times no real shapes for this model ('' when it does): 'same as opt' when no
    axis but batch is dynamic, else what it lacks."""
    if not dynamic_axes(spec):
        return SAME_AS_OPT
    if spec.sequence is not None:
        return "not measured: a stateful model"
    if not spec.batched:
        return "not measured: no batch axis"
    if spec.data.eval is None:
        return "not measured: the spec has no eval set"
    return ""


def real_shape_groups(
    loaded: LoadedSpec, eval_inputs: dict[str, np.ndarray] | None, batch: int, most: int = REAL_GROUPS
) -> RealShapes:
    """Up to `most` batches of `batch` consecutive eval rows, spread over the eval set, each trimmed on
    every dynamic non-batch axis to its longest real row (fewer rows than `batch`: repeated to it)."""
    spec = loaded.spec
    why = not_timed(spec) or ("" if eval_inputs is not None else "not measured: the spec has no eval set")
    if why:
        return RealShapes([], why)
    rows = row_count(eval_inputs)
    count = max(1, rows // batch)
    starts = sorted({int(round(s)) * batch for s in np.linspace(0, count - 1, min(most, count))})
    groups = []
    for start in starts:
        group = {
            name: resize_axis(array[start : start + batch], 0, batch) if array.ndim else array
            for name, array in eval_inputs.items()
        }
        groups.append(_trimmed(loaded, group))
    return RealShapes(groups)


def _trimmed(loaded: LoadedSpec, group: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """`group` cut on each dynamic non-batch axis after its last position that holds a real value in
    some row: where a mask input (a name with 'mask') is non-zero, else where some input is non-zero."""
    spec = loaded.spec
    for axis in dynamic_axes(spec):
        carriers = {t.name: t.dims.index(axis) for t in spec.inputs if axis in t.dims and t.name in group}
        if not carriers:
            continue
        masks = [name for name in carriers if "mask" in name.lower()] or list(carriers)
        used = np.zeros(group[masks[0]].shape[carriers[masks[0]]], dtype=bool)
        for name in masks:
            array, position = group[name], carriers[name]
            others = tuple(i for i in range(array.ndim) if i != position)
            used |= np.any(array != 0, axis=others)
        size = _allowed(spec, axis, int(np.flatnonzero(used)[-1]) + 1 if used.any() else 1, len(used))
        for name, position in carriers.items():
            group[name] = np.ascontiguousarray(np.take(group[name], np.arange(size), axis=position))
    return group


def _allowed(spec: ModelSpec, axis: str, size: int, given: int) -> int:
    """The smallest size the axis takes that holds `size` positions, never more than the data has."""
    shape_range = spec.axes[axis]
    size = max(size, shape_range.min)
    size = -(-size // shape_range.multiple_of) * shape_range.multiple_of
    return min(size, given)


def shape_summary(spec: ModelSpec, groups: list[dict[str, np.ndarray]]) -> dict[str, list[int]]:
    """Each dynamic non-batch axis's size over the groups: [min, median, max]."""
    summary = {}
    for axis in dynamic_axes(spec):
        tensor = next((t for t in spec.inputs if axis in t.dims), None)
        if tensor is None or not groups:
            continue
        sizes = [group[tensor.name].shape[tensor.dims.index(axis)] for group in groups]
        summary[axis] = [min(sizes), int(np.median(sizes)), max(sizes)]
    return summary


def real_speed(timing: Timing | None, reference: Timing, same_as_opt: bool) -> dict:
    """A row's speed at the eval set's real shapes: inferences/s, noise, ratio to FP32 (ONNX Runtime)
    at the same shapes. A model whose only dynamic axis is batch runs at its real shape at opt: the same
    numbers as at opt."""
    if timing is not None and same_as_opt:
        rate, noise, ratio = (
            timing.throughput_b8,
            timing.noise,
            timing.throughput_b8 / reference.throughput_b8,
        )
    elif timing is not None and timing.throughput_real and reference.throughput_real:
        rate, noise, ratio = (
            timing.throughput_real,
            timing.noise_real,
            timing.throughput_real / reference.throughput_real,
        )
    else:
        rate = noise = ratio = None
    return {
        "throughput_real_per_s": None if rate is None else round(rate, 1),
        "throughput_real_noise": None if noise is None else round(noise, 4),
        "speedup_real_vs_fp32": None if ratio is None else round(ratio, 2),
        "real_shapes": timing.real_shapes if timing is not None else None,
    }


def real_shapes_note(spec: ModelSpec, reference: Timing) -> str:
    """What 'real shapes' means for this model: the eval batches' sizes, 'same as opt', or why not."""
    why = not_timed(spec)
    if why:
        return why
    if not reference.real_shapes or not reference.throughput_real:
        return "not measured"
    sizes = ", ".join(
        f"{axis} {low}-{high} (median {mid})" for axis, (low, mid, high) in reference.real_shapes.items()
    )
    return f"{reference.real_batches} eval batches of {reference.batch} rows, each cut to its longest row: {sizes}"
