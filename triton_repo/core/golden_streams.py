"""Golden streams of a stateful model: per input that is not a state, its chunks [steps, streams, ...];
run step by step with explicit state (each stream one row of the batch, its state one slice along the
state's batch axis), the outputs of every step kept: what the served model must give chunk by chunk."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from triton_repo.core.errors import SpecError
from triton_repo.core.spec import LoadedSpec

SEQUENCE_FILE = "sequence.npz"
Step = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


@dataclass(frozen=True)
class Streams:
    """Batched: per input [steps, streams, *dims] ([steps] for a scalar), each stream a row of the
    batch. Unbatched (max_batch_size 0): one stream, [steps, *dims]."""

    inputs: dict[str, np.ndarray]  # served input -> its chunks
    outputs: dict[str, np.ndarray]  # served output -> what each step gives
    batched: bool = True

    @property
    def steps(self) -> int:
        return len(next(iter(self.inputs.values())))

    @property
    def streams(self) -> int:
        if not self.batched:
            return 1
        return next(a.shape[1] for a in self.inputs.values() if a.ndim > 1)

    def chunk(self, step: int, stream: int) -> dict[str, np.ndarray]:
        """What one client sends for one stream's step: its row as a batch of 1 (a scalar as 0-d)."""
        return {
            name: np.array(a[step])
            if a.ndim == 1 or not self.batched
            else np.ascontiguousarray(a[step, stream : stream + 1])
            for name, a in self.inputs.items()
        }

    def expected(self, step: int, stream: int) -> dict[str, np.ndarray]:
        if not self.batched:
            return {name: a[step] for name, a in self.outputs.items()}
        return {name: a[step, stream : stream + 1] for name, a in self.outputs.items()}


def sequence_line(loaded: LoadedSpec) -> str:
    """One line confirming how a stateful model is served: its states (and how they were paired) and its
    sequence batcher."""
    spec = loaded.spec
    sequence = spec.sequence
    how = "as sequence.state names them" if sequence.state is not None else "paired by name and shape"
    tensors = {t.name: t for t in spec.inputs}
    states = ", ".join(
        f"{p.input} -> {p.output} ({tensors[p.input].dtype} [{', '.join(map(str, tensors[p.input].dims))}], "
        f"{p.initial} at START)"
        for p in spec.state_pairs
    )
    live = (
        f"up to {sequence.max_candidate_sequences} live sequences batched"
        if sequence.strategy == "oldest"
        else "one batch slot per live sequence"
    )
    return (
        f"state {states}, {how}; sequence batcher {sequence.strategy}, {live}, idle timeout "
        f"{sequence.idle_timeout_ms} ms"
    )


def initial_states(loaded: LoadedSpec, rows: int) -> dict[str, np.ndarray]:
    """Each state input's value at START for `rows` sequences: zeros, or the pair's .npy file repeated
    along the state's batch axis."""
    spec = loaded.spec
    states = {}
    for i, pair in enumerate(spec.state_pairs):
        tensor = next(t for t in spec.inputs if t.name == pair.input)
        axis = spec.batch_axis(tensor)
        one = [1 if d == "batch" else d for d in tensor.dims]
        if pair.initial == "zeros":
            value = np.zeros(one, tensor.dtype)
        else:
            path = loaded.resolve_file(pair.initial, f"sequence.state[{i}].initial")
            value = np.load(path, allow_pickle=False)
            expected = [d for d in tensor.dims if d != "batch"]
            if list(value.shape) != expected or value.dtype != tensor.dtype:
                raise SpecError(
                    f"{loaded.path}: sequence.state[{i}].initial: {pair.initial} is {value.dtype} "
                    f"{list(value.shape)}, expected {tensor.dtype} {expected} (the state without its batch axis)"
                )
            value = value if axis is None else np.expand_dims(value, axis)
        states[pair.input] = value if axis is None else np.repeat(value, rows, axis=axis)
    return states


def check_streams(loaded: LoadedSpec, arrays: dict, field: str = "sequence") -> dict[str, np.ndarray]:
    """data.sequence (or a stateful model's data.eval) as [steps, streams, *dims] per served input (a
    scalar as [steps]), one count of steps and of streams."""
    spec = loaded.spec
    where = f"{loaded.path}: data.{field}"
    expected = [t.name for t in spec.served_inputs]
    if sorted(arrays) != sorted(expected):
        raise SpecError(
            f"{where}: arrays are named {sorted(arrays)}; give the inputs that are not states, {expected}"
        )
    checked, steps, streams = {}, set(), set()
    for tensor in spec.served_inputs:
        array = np.asarray(arrays[tensor.name]).astype(tensor.dtype, casting="same_kind")
        if array.ndim != 1 + len(tensor.dims):
            raise SpecError(
                f"{where}: input '{tensor.name}' has shape {list(array.shape)}; give [steps, *{tensor.dims}] "
                "(the streams on the batch axis; a scalar as [steps])"
            )
        steps.add(array.shape[0])
        if not tensor.scalar and spec.batched:
            streams.add(array.shape[1])
        checked[tensor.name] = np.ascontiguousarray(array)
    if len(steps) != 1 or len(streams) > 1:
        raise SpecError(f"{where}: inputs disagree on steps {sorted(steps)} or streams {sorted(streams)}")
    return checked


def run_streams(loaded: LoadedSpec, inputs: dict[str, np.ndarray], step: Step) -> Streams:
    """Every step of every stream at once, the state carried in-process: the reference the served model is
    compared with. `step` runs the model on one batch (every input, states included; every output)."""
    spec = loaded.spec
    steps = len(next(iter(inputs.values())))
    rows = next((a.shape[1] for a in inputs.values() if a.ndim > 1), 1) if spec.batched else 1
    states = initial_states(loaded, rows)
    served = [t.name for t in spec.served_outputs]
    outputs: dict[str, list[np.ndarray]] = {name: [] for name in served}
    for t in range(steps):
        feed = {name: np.asarray(a[t]) for name, a in inputs.items()} | states
        result = step(feed)
        for name in served:
            outputs[name].append(np.asarray(result[name]))
        states = {pair.input: np.asarray(result[pair.output]) for pair in spec.state_pairs}
    return Streams(inputs, {name: np.stack(values) for name, values in outputs.items()}, spec.batched)


def save_streams(streams: Streams, path: Path) -> None:
    arrays = {f"input|{k}": v for k, v in streams.inputs.items()}
    arrays |= {f"output|{k}": v for k, v in streams.outputs.items()}
    arrays["meta|batched"] = np.array(streams.batched)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)


def load_streams(path: Path) -> Streams:
    inputs, outputs, batched = {}, {}, True
    with np.load(path, allow_pickle=False) as archive:
        for key in archive.files:
            kind, name = key.split("|", 1)
            if kind == "meta":
                batched = bool(archive[key])
            else:
                (inputs if kind == "input" else outputs)[name] = archive[key]
    return Streams(inputs, outputs, batched)
