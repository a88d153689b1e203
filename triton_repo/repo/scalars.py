"""Scalar (0-d) tensors on Triton's own backends (the gpu target's onnxruntime and tensorrt models).

Triton has no scalar tensors in an unbatched model, and in a batched one it hands a per-request scalar
to the backend as [rows] (dims [1], reshape []). The python backend's template reshapes for the graph
itself; Triton's ONNX Runtime and TensorRT backends cannot, so the gpu target serves a graph with an
adapter in front: an unbatched scalar is taken as [1] (and a scalar output given as [1]), a per-request
scalar as [rows] whose first value is the graph's scalar. Such a batched model has no dynamic batcher
on the gpu target, so requests with different values are never run together.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from triton_repo.core.golden import GoldenCase
from triton_repo.core.spec import LoadedSpec

_SUFFIX = "/__scalar"


def has_scalars(loaded: LoadedSpec) -> bool:
    return any(t.scalar for t in [*loaded.spec.inputs, *loaded.spec.outputs])


def adapt_graph(loaded: LoadedSpec, source: Path, target: Path) -> Path:
    """`source` with the adapter in front of every scalar input (and behind every scalar output of an
    unbatched model), written to `target`."""
    import onnx
    from onnx import helper, numpy_helper

    spec = loaded.spec
    model = onnx.load(str(source))
    graph = model.graph
    scalar_inputs = [t.name for t in spec.inputs if t.scalar]
    scalar_outputs = [t.name for t in spec.outputs if t.scalar] if not spec.batched else []
    added = []
    for name in scalar_inputs:
        inner = name + _SUFFIX
        rename_uses(graph, name, inner)
        graph_input = next(i for i in graph.input if i.name == name)
        dims = graph_input.type.tensor_type.shape
        dims.ClearField("dim")
        if spec.batched:
            dims.dim.add().dim_param = "batch"
        else:
            dims.dim.add().dim_value = 1
        if spec.batched:  # [rows] -> its first value (every row holds the same one)
            index = numpy_helper.from_array(np.array(0, np.int64), name + "/__index")
            graph.initializer.append(index)
            added.append(helper.make_node("Gather", [name, index.name], [inner], name=inner, axis=0))
        else:  # [1] -> []
            shape = numpy_helper.from_array(np.zeros(0, np.int64), name + "/__shape")
            graph.initializer.append(shape)
            added.append(helper.make_node("Reshape", [name, shape.name], [inner], name=inner))
    tail = []
    for name in scalar_outputs:  # [] -> [1]
        inner = name + _SUFFIX
        for node in graph.node:
            node.output[:] = [inner if out == name else out for out in node.output]
        rename_uses(graph, name, inner)
        shape = numpy_helper.from_array(np.ones(1, np.int64), name + "/__shape")
        graph.initializer.append(shape)
        tail.append(helper.make_node("Reshape", [inner, shape.name], [name], name=name + "/__reshape"))
        graph_output = next(o for o in graph.output if o.name == name)
        dims = graph_output.type.tensor_type.shape
        dims.ClearField("dim")
        dims.dim.add().dim_value = 1
    return save_wrapped(model, added, tail, target)


def save_wrapped(model, head: list, tail: list, target: Path) -> Path:
    """`model` with `head` nodes before its own and `tail` nodes after them, checked and saved to `target`."""
    import onnx

    graph = model.graph
    nodes = [*head, *graph.node, *tail]
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    target.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(target))
    return target


def rename_uses(graph, name: str, inner: str) -> None:
    """Every node that reads `name` reads `inner` instead."""
    for node in graph.node:
        node.input[:] = [inner if value == name else value for value in node.input]


def backend_view(loaded: LoadedSpec, case: GoldenCase) -> GoldenCase:
    """A golden case as Triton's backends hand it to the adapted graph and get it back."""
    spec = loaded.spec
    rows = next((len(a) for a in case.inputs.values() if a.ndim), 1)

    def inputs(arrays: dict) -> dict:
        out = {}
        for tensor in spec.inputs:
            array = arrays[tensor.name]
            if tensor.scalar:
                array = np.full((rows,), array, dtype=array.dtype) if spec.batched else array.reshape(1)
            out[tensor.name] = array
        return out

    def outputs(arrays: dict) -> dict:
        if spec.batched:
            return arrays
        return {name: a.reshape(1) if a.ndim == 0 else a for name, a in arrays.items()}

    return replace(case, inputs=inputs(case.inputs), outputs=outputs(case.outputs))
