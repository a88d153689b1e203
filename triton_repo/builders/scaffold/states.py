"""A stateful model in a probe: inputs whose next value an output returns (h0 -> hn, state -> stateN),
paired by name, dtype and shape as the spec pairs them; and its batch axis, which a state may carry at any
position (Silero VAD's state [2, batch, 128]), so the probe's rule (every input's first dim) missed it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from triton_repo.builders.scaffold.record import ModelProbe, ProbedAxis, ProbedTensor
from triton_repo.core.spec.base import BATCH_AXIS
from triton_repo.core.spec.sequence import auto_pairs

MAX_LIVE = 64  # the batch axis of a stateful model is its live sequences (one slot each, per instance)


@dataclass(frozen=True)
class States:
    pairs: tuple[tuple[str, str], ...]  # (state input, the output holding its next value)
    batch_index: dict[str, int]  # state input -> the position of its batch axis (batched models)
    note: str


def find_states(probe: ModelProbe) -> tuple[ModelProbe, States | None]:
    """The probe with its batch axis found through the states, and the states; (probe, None) when no
    input pairs with an output, or a state has a dim besides the batch that varies (Triton keeps one
    fixed shape per sequence)."""
    pairs = [(p.input, p.output) for p in auto_pairs(probe.inputs, probe.outputs)]
    if not pairs:
        return probe, None
    states = {name for name, _ in pairs}
    given = probe
    if not probe.batched:
        probe = _batched_through_states(probe, states | {output for _, output in pairs})
    tensors = {t.name: t for t in probe.inputs}
    batch_index = {}
    for name in states:
        named = [i for i, d in enumerate(tensors[name].dims) if isinstance(d, str)]
        if any(tensors[name].dims[i] != BATCH_AXIS for i in named) or (probe.batched and len(named) != 1):
            return given, None  # not a state Triton can keep: the probe as it was
        if probe.batched:
            batch_index[name] = named[0]
    said = ", ".join(f"{a} -> {b}" for a, b in pairs)
    where = "; ".join(f"batch is dim {i} of {n}" for n, i in sorted(batch_index.items()) if i)
    note = f"stateful: {said} carry the state from one request to the next" + (f" ({where})" if where else "")
    return probe, States(tuple(pairs), batch_index, note)


def _batched_through_states(probe: ModelProbe, states: set[str]) -> ModelProbe:
    """The unbatched probe batched when one axis is the first dim of every other input and output, and
    appears once in every state (`states`: the state inputs and outputs): that axis is the batch."""
    others = [t for t in (*probe.inputs, *probe.outputs) if t.dims and t.name not in states]
    firsts = {t.dims[0] for t in others}
    axis = next(iter(firsts)) if len(firsts) == 1 else None
    if not isinstance(axis, str) or axis not in probe.axes or probe.axes[axis].output_only:
        return probe
    state_tensors = [t for t in (*probe.inputs, *probe.outputs) if t.name in states]
    if any(t.dims.count(axis) != 1 for t in state_tensors):
        return probe
    if BATCH_AXIS in probe.axes and axis != BATCH_AXIS:
        return probe
    found = probe.axes[axis]
    batch = ProbedAxis(
        BATCH_AXIS,
        1,
        min(4, found.max),
        min(found.max, MAX_LIVE),
        f"live sequences: {found.why}, each state carrying it once",
    )
    axes = {BATCH_AXIS: batch, **{n: a for n, a in probe.axes.items() if n != axis}}
    return dataclasses.replace(
        probe,
        inputs=tuple(_renamed(t, axis) for t in probe.inputs),
        outputs=tuple(_renamed(t, axis) for t in probe.outputs),
        axes=axes,
        batched=True,
        unbatched_reason="",
        notes=(
            *probe.notes,
            f"{axis} is the batch: the states carry it (live sequences, at most {MAX_LIVE})",
        ),
    )


def _renamed(tensor: ProbedTensor, axis: str) -> ProbedTensor:
    return dataclasses.replace(tensor, dims=tuple(BATCH_AXIS if d == axis else d for d in tensor.dims))
