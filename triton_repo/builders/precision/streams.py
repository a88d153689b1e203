"""A stateful model's variants measured on streams: each (artifact, runner) pair runs every stream step
by step on its own state, so an error that grows over the steps counts against it, as it will when served."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from triton_repo.builders.precision.kinds import REFERENCE
from triton_repo.core.compare import compare
from triton_repo.core.golden_streams import SEQUENCE_FILE, Streams, load_streams, run_streams, save_streams
from triton_repo.core.spec import LoadedSpec


def stream_through(loaded: LoadedSpec, session, inputs: dict[str, np.ndarray]) -> Streams:
    """The streams run by `session` (an IsolatedSession), the state carried from step to step."""
    outputs = [o.name for o in loaded.spec.outputs]
    return run_streams(loaded, inputs, lambda feed: session.run(feed, outputs))


def as_rows(streams: Streams) -> dict[str, np.ndarray]:
    """[steps, streams, ...] outputs as rows (every step of every stream), what the accuracy gate reads."""
    return {name: a.reshape(-1, *a.shape[2:]) for name, a in streams.outputs.items()}


def streams_label(inputs: dict[str, np.ndarray]) -> str:
    steps = len(next(iter(inputs.values())))
    streams = next((a.shape[1] for a in inputs.values() if a.ndim > 1), 1)
    return f"{streams} streams x {steps} steps"


def streams_file(pair: str) -> str:
    return f"{pair.replace('@', '.')}.{SEQUENCE_FILE}"


def own_streams(
    loaded: LoadedSpec, pair: str, runner, session, work_dir: Path, golden: Path
) -> tuple[Path, bool]:
    """What the served model of `pair` must answer, chunk by chunk, on the golden streams, and whether
    that is PyTorch's within the outputs' tolerances: an FP32 pair in f32 must answer PyTorch's (what
    <name>_fp32 promises; the verify stage compared the reference pair already), any other its own."""
    if pair == REFERENCE:
        return golden, True
    expected = load_streams(golden)
    own = stream_through(loaded, session, expected.inputs)
    if pair.split("@")[0] == REFERENCE and runner.precision in ("", "f32"):
        tolerances = {o.name: o.tolerance for o in loaded.spec.served_outputs}
        same = all(compare(own.outputs[n], expected.outputs[n], t).passed for n, t in tolerances.items())
        return golden, same
    path = work_dir / streams_file(pair)
    save_streams(own, path)
    return path, True
