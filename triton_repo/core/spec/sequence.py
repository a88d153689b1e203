"""A stateful (streaming) model: Triton's sequence batcher and the state each sequence carries from one
request to the next.

Each state input is paired with the output that holds its next value (`state` -> `stateN`, `h0` -> `hn`).
Clients send only the new chunk; the state never crosses the network: on the cpu target the served model
keeps it per correlation ID, from the request that carries START to the one that carries END (or until the
sequence is idle longer than `idle_timeout_ms`).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from triton_repo.core.spec.base import BATCH_AXIS, TensorName, _Strict

# an output pairs with an input when its name is the input's stem plus one of these (h0 -> hn, state -> stateN)
_NEXT_SUFFIXES = ("N", "n", "_n", "_out", "_next", "_new", "_t")
_INPUT_SUFFIXES = ("0", "_0", "_in", "_prev", "")


class StatePair(_Strict):
    """One state: the input that takes it and the output that gives its next value; its value when a
    sequence starts: zeros, or a .npy file in the model folder holding one sequence's state (the state's
    dims without the batch axis)."""

    input: TensorName
    output: TensorName
    initial: Annotated[str, Field(min_length=1)] = "zeros"

    @field_validator("initial")
    @classmethod
    def _initial(cls, value: str) -> str:
        if value != "zeros" and not value.endswith(".npy"):
            raise ValueError(f"initial '{value}' must be 'zeros' or a .npy file in the model folder")
        return value


class SequenceSettings(_Strict):
    """Triton's sequence batcher: `oldest` batches the oldest ready request of up to
    `max_candidate_sequences` live sequences; `direct` gives each sequence a batch slot of its own
    (max_batch_size x instance_count live sequences). `state: null` pairs states by name and shape."""

    strategy: Literal["oldest", "direct"] = "oldest"
    max_candidate_sequences: Annotated[int, Field(ge=1, le=65536)] = 64
    idle_timeout_ms: Annotated[int, Field(ge=1, le=86_400_000)] = 5000
    state: list[StatePair] | None = None


def auto_pairs(inputs, outputs) -> list[StatePair]:
    """States paired by name, dtype and dims: an input and the one output named as its next value."""
    pairs = []
    for tensor in inputs:
        stems = {tensor.name.removesuffix(s) for s in _INPUT_SUFFIXES if tensor.name.endswith(s)}
        names = {stem + suffix for stem in stems if stem for suffix in _NEXT_SUFFIXES}
        found = [o for o in outputs if o.name in names and o.dtype == tensor.dtype and o.dims == tensor.dims]
        if len(found) == 1:
            pairs.append(StatePair(input=tensor.name, output=found[0].name))
    return pairs


def check_sequence(spec) -> None:
    """Each pair names an input and an output of the same dtype and dims, fixed but for the batch axis
    (once, anywhere); the golden streams are given (data.sequence); no int8 (its calibration needs states)."""
    sequence = spec.sequence
    if sequence is None:
        if spec.data.sequence is not None:
            raise ValueError("data.sequence is read only by a stateful model: add 'sequence:' or remove it")
        return
    pairs = spec.state_pairs
    if not pairs:
        raise ValueError(
            "sequence: no state input pairs with an output by name (state -> stateN, h0 -> hn) and shape; "
            "name them under sequence.state: [{input: ..., output: ...}]"
        )
    inputs = {t.name: t for t in spec.inputs}
    outputs = {t.name: t for t in spec.outputs}
    for i, pair in enumerate(pairs):
        where = f"sequence.state[{i}]"
        if pair.input not in inputs:
            raise ValueError(f"{where}: input '{pair.input}' is not an input (inputs: {list(inputs)})")
        if pair.output not in outputs:
            raise ValueError(f"{where}: output '{pair.output}' is not an output (outputs: {list(outputs)})")
        state, following = inputs[pair.input], outputs[pair.output]
        if (state.dtype, state.dims) != (following.dtype, following.dims):
            raise ValueError(
                f"{where}: '{pair.input}' is {state.dtype} {state.dims} but '{pair.output}' is "
                f"{following.dtype} {following.dims}; a state and its next value have one dtype and shape"
            )
        batch = [d for d in state.dims if d == BATCH_AXIS]
        other = [d for d in state.dims if d != BATCH_AXIS and not isinstance(d, int)]
        if other:
            raise ValueError(
                f"{where}: '{pair.input}' dims {state.dims}: a state's dims are fixed sizes (and the batch "
                f"axis), not {other}; Triton keeps a state of one shape per sequence"
            )
        if spec.batched and len(batch) != 1:
            raise ValueError(
                f"{where}: '{pair.input}' dims {state.dims} need the '{BATCH_AXIS}' axis once: each "
                "sequence's state is one slice of it"
            )
    if len({p.input for p in pairs}) < len(pairs) or len({p.output for p in pairs}) < len(pairs):
        raise ValueError("sequence.state names an input or an output twice")
    if spec.ensemble is not None:
        raise ValueError(
            "ensemble: a stateful model is not served behind an ensemble yet (each chunk of a sequence must "
            "reach the same model with its sequence ID); clients call <name>_<precision>: remove ensemble"
        )
    if spec.data.sequence is None:
        raise ValueError(
            "a stateful model is checked on streams: set data.sequence (module:function or .npz giving, per "
            "input that is not a state, its chunks as [steps, *dims])"
        )
    if "int8" in spec.lower_precisions or spec.data.calibration is not None:
        raise ValueError(
            "int8 and data.calibration: a stateful model's calibration would need the states its FP32 model "
            "reaches, which the build does not collect yet; build fp32, fp16 and bf16 (gated on data.eval's "
            "streams) and remove int8 and data.calibration"
        )
