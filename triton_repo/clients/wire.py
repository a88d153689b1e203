"""What the wire carries: Triton needs a dim, so the tensors a spec declares without one travel reshaped."""

from __future__ import annotations

import numpy as np

from triton_repo.core.golden import GoldenCase


def as_clients_see_it(golden, config):
    """Triton needs a dim: a [batch] tensor is served as dims [1] with reshape [], so clients send and
    receive it as [batch, 1]; a scalar of a batched model (one value per request) is sent as [rows, 1],
    every row the same; a scalar of an unbatched model as [1] (Triton has no scalar tensors)."""
    from dataclasses import replace

    if config.max_batch_size == 0:  # Triton has no scalars in an unbatched model: a 0-d tensor goes as [1]

        def one(arrays: dict) -> dict:
            return {n: a.reshape(1) if a.ndim == 0 else a for n, a in arrays.items()}

        return replace(golden, inputs=one(golden.inputs), outputs=one(golden.outputs))
    reshaped = {
        t.name for t in [*config.input, *config.output] if t.HasField("reshape") and list(t.dims) == [1]
    }
    if not reshaped:
        return golden
    rows = next((len(a) for a in golden.inputs.values() if a.ndim), 1)

    def widen(arrays: dict) -> dict:
        widened = {}
        for name, array in arrays.items():
            if name in reshaped and array.ndim == 0:
                array = np.full((rows, 1), array)
            elif name in reshaped and array.ndim == 1:
                array = array[:, None]
            widened[name] = array
        return widened

    return replace(golden, inputs=widen(golden.inputs), outputs=widen(golden.outputs))


def wire_inputs(config, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One request's inputs as the wire carries them (a scalar as [1, 1] in a batched model, [1] in an
    unbatched one)."""
    return as_clients_see_it(GoldenCase("request", inputs, {}), config).inputs
