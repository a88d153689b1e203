"""A stateful model's states on Triton's own backends (the gpu target's onnxruntime and tensorrt models).

Triton's implicit state (sequence_batching.state) hands the backend each state batch first: [rows, *dims].
A graph whose state has its batch axis elsewhere (Silero VAD's [2, batch, 128]) is served behind an
adapter: a Transpose in front of the state input and one behind its next-state output, so the served graph
takes and gives the state batch first and computes as the exported one does.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from triton_repo.core.golden import GoldenCase
from triton_repo.core.spec import LoadedSpec
from triton_repo.repo.scalars import rename_uses, save_wrapped

_SUFFIX = "/__state"


def moved_states(loaded: LoadedSpec) -> dict[str, int]:
    """State input or output -> its batch axis, for every state whose batch axis is not the first."""
    spec = loaded.spec
    moved = {}
    for pair in spec.state_pairs:
        tensor = next(t for t in spec.inputs if t.name == pair.input)
        axis = spec.batch_axis(tensor)
        if axis:
            moved[pair.input] = moved[pair.output] = axis
    return moved


def batch_first(shape: tuple[int, ...], axis: int) -> tuple[int, ...]:
    return (shape[axis], *shape[:axis], *shape[axis + 1 :])


def adapt_states(loaded: LoadedSpec, source: Path, target: Path) -> Path:
    """`source` with every moved state taken and given batch first, written to `target`."""
    import onnx
    from onnx import helper

    spec = loaded.spec
    model = onnx.load(str(source))
    graph = model.graph
    moved = moved_states(loaded)
    head, tail = [], []
    for pair in spec.state_pairs:
        axis = moved.get(pair.input)
        if not axis:
            continue
        rank = len(next(t for t in spec.inputs if t.name == pair.input).dims)
        # served [batch, *others] -> the graph's order (batch back at `axis`), and the reverse for the output
        to_graph = [*range(1, axis + 1), 0, *range(axis + 1, rank)]
        to_served = [axis, *range(axis), *range(axis + 1, rank)]
        inner = pair.input + _SUFFIX
        rename_uses(graph, pair.input, inner)
        head.append(helper.make_node("Transpose", [pair.input], [inner], name=inner, perm=to_graph))
        _permute_shape(next(i for i in graph.input if i.name == pair.input), to_served)
        inner_out = pair.output + _SUFFIX
        for node in graph.node:
            node.output[:] = [inner_out if value == pair.output else value for value in node.output]
            node.input[:] = [inner_out if value == pair.output else value for value in node.input]
        tail.append(helper.make_node("Transpose", [inner_out], [pair.output], name=inner_out, perm=to_served))
        _permute_shape(next(o for o in graph.output if o.name == pair.output), to_served)
    return save_wrapped(model, head, tail, target)


def _permute_shape(value, perm: list[int]) -> None:
    dims = value.type.tensor_type.shape.dim
    copies = [type(d)() for d in dims]
    for copy, dim in zip(copies, dims, strict=True):
        copy.CopyFrom(dim)
    for index, source in enumerate(perm):
        dims[index].CopyFrom(copies[source])


def state_view(loaded: LoadedSpec, case: GoldenCase) -> GoldenCase:
    """A golden case as the adapted graph takes and gives it: moved states batch first."""
    moved = moved_states(loaded)

    def turn(arrays: dict) -> dict:
        return {n: np.moveaxis(a, moved[n], 0) if n in moved else a for n, a in arrays.items()}

    return replace(case, inputs=turn(case.inputs), outputs=turn(case.outputs))
