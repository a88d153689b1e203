"""What a benchmark sends: the served models to measure and one request's inputs at a chosen shape.

Shapes come from the spec's named axes (batch from --batch, the other axes at their opt size unless
--shape sets them), so nothing restates a shape. Data is the golden sample resized to that shape (values
the model really sees) or random values drawn within each golden input's range.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from triton_repo.core.errors import TritonRepoError
from triton_repo.core.golden import load_golden, sample_case
from triton_repo.core.references import inputs_at
from triton_repo.core.spec import BATCH_AXIS, LoadedSpec, load_spec

DATA_KINDS = ("golden", "random")


@dataclass(frozen=True)
class Variant:
    """One served Triton model and where its files are."""

    name: str
    source_model: str
    precision: str
    version_dir: Path
    entry: dict


def select_variants(
    manifest: dict, repository: Path, names: list[str], ensembles: bool = False
) -> list[Variant]:
    """Each name is a source model (all its published variants) or a Triton model; none = the whole zoo.
    `ensembles`: an ensemble named is a target too (a traffic sample gives it raw data)."""
    everything = manifest["models"]
    # Ensembles take raw data and their step models are internal: the benchmark loads the variants.
    models = {m: e for m, e in everything.items() if e.get("kind", "model") == "model"}
    if ensembles:
        models |= {m: e for m, e in everything.items() if e.get("kind") == "ensemble" and m in names}
    sources = sorted({entry["source_model"] for entry in models.values()})
    chosen: list[str] = []
    for name in names or sources:
        if name in sources and name not in models:
            matches = sorted(
                m
                for m, e in models.items()
                if e["source_model"] == name and e.get("kind", "model") == "model"
            )
        else:
            matches = [name] if name in models else []
        if name in everything and name not in models and name not in sources:
            raise TritonRepoError(
                f"bench: '{name}' is an ensemble or one of its steps; bench the variant it calls "
                f"({everything[name].get('variant', 'see manifest.json')}) or its source model, "
                "or an ensemble on your own inputs with --traffic"
            )
        if not matches:
            raise TritonRepoError(
                f"bench: '{name}' is neither a published model nor a source model in "
                f"{repository}/manifest.json; published: {sorted(models)}"
            )
        chosen.extend(m for m in matches if m not in chosen)
    return [
        Variant(
            name=m,
            source_model=models[m]["source_model"],
            precision=models[m].get("precision", "fp32"),
            version_dir=repository / m / str(models[m].get("version", 1)),
            entry=models[m],
        )
        for m in chosen
    ]


def parse_shape(values: tuple[str, ...]) -> dict[str, int]:
    """`seq=128` options into {"seq": 128}."""
    sizes = {}
    for value in values:
        axis, _, size = value.partition("=")
        if not axis or not size.isdigit():
            raise TritonRepoError(f"--shape {value!r}: expected AXIS=SIZE, for example seq=128")
        sizes[axis] = int(size)
    return sizes


def axis_sizes(loaded: LoadedSpec, batch: int, shape: dict[str, int]) -> dict[str, int]:
    """Every input axis' size for one request, checked against the spec's ranges."""
    spec = loaded.spec
    unknown = sorted(set(shape) - set(spec.used_axes()) - {BATCH_AXIS})
    if unknown:
        raise TritonRepoError(
            f"--shape {unknown[0]}: {loaded.path} has no input axis named so; axes: {spec.used_axes()}"
        )
    if BATCH_AXIS in shape and spec.batched:
        raise TritonRepoError("--shape batch=...: set the batch size with --batch")
    sizes = {}
    for axis in spec.used_axes():
        if axis == BATCH_AXIS and spec.batched:
            if not 1 <= batch <= spec.effective_max_batch_size:
                raise TritonRepoError(
                    f"--batch {batch}: {spec.name} accepts 1..{spec.effective_max_batch_size} "
                    f"(max_batch_size in {loaded.path})"
                )
            sizes[axis] = batch
            continue
        shape_range = spec.axes[axis]
        size = shape.get(axis, shape_range.opt)
        if not shape_range.takes(size):
            step = f" in steps of {shape_range.multiple_of}" if shape_range.multiple_of > 1 else ""
            raise TritonRepoError(
                f"--shape {axis}={size}: outside {spec.name}'s range {shape_range.min}..{shape_range.max}{step} "
                f"(axes.{axis} in {loaded.path})"
            )
        sizes[axis] = size
    if not spec.batched and batch != 1:
        raise TritonRepoError(f"--batch {batch}: {spec.name} is not batched (max_batch_size 0)")
    return sizes


def request_inputs(loaded: LoadedSpec, golden_file: Path, sizes: dict[str, int], data: str) -> dict:
    """One request's input arrays at `sizes`, as the graph takes them (`as_sent` gives the wire's view):
    the golden sample resized, or random within its value range."""
    sample = sample_case(load_golden(golden_file)).inputs
    if data == "golden":
        arrays = inputs_at(loaded, sample, sizes)
    else:
        rng = np.random.default_rng(0)
        arrays = {}
        for tensor in loaded.spec.inputs:
            reference = sample[tensor.name]
            shape = loaded.spec.concrete_shape(tensor, sizes)
            low, high = reference.min(), reference.max()
            if np.issubdtype(reference.dtype, np.integer) or reference.dtype == np.bool_:
                arrays[tensor.name] = rng.integers(int(low), int(high) + 1, size=shape).astype(tensor.dtype)
            else:
                arrays[tensor.name] = rng.uniform(float(low), float(high), size=shape).astype(tensor.dtype)
    return {name: np.require(array, requirements="C") for name, array in as_sent(loaded, arrays).items()}


def as_sent(loaded: LoadedSpec, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The arrays as a client sends them: Triton needs a dim, so a tensor with none besides the batch is
    dims [1] with reshape [] in the config: a [batch] input goes as [rows, 1], a scalar of a batched model
    (one value per request) as [rows, 1] with that value in every row, a scalar of an unbatched one as [1]."""
    spec = loaded.spec
    rows = next((len(a) for a in arrays.values() if a.ndim), 1)
    sent = {}
    for tensor in spec.inputs:
        array = arrays[tensor.name]
        if tensor.scalar:
            array = np.full((rows, 1), array, dtype=array.dtype) if spec.batched else array.reshape(1)
        elif spec.batched and len(tensor.dims) == 1:
            array = array[:, None]
        sent[tensor.name] = array
    return sent


def response_shapes(loaded: LoadedSpec, sizes: dict[str, int]) -> dict[str, tuple[tuple[int, ...], str]]:
    return {t.name: (loaded.spec.concrete_shape(t, sizes), t.dtype) for t in loaded.spec.served_outputs}


def sequence_load(variant: Variant, batch: int, live: list, shared_memory: bool, length: int | None):
    """A stateful model's load: its golden streams' chunks, one live sequence per closed-loop worker, each
    `length` chunks long (default the streams' steps); refused, with the reason, where Triton's sequence
    batcher cannot take it (`live`: the live sequences asked for, None for an open-loop rate)."""
    from triton_repo.clients.bench.load import Sequences
    from triton_repo.clients.sequences import live_sequence_limit
    from triton_repo.clients.wire import wire_inputs
    from triton_repo.core.golden_streams import load_streams
    from triton_repo.repo.config import parse_config

    name = variant.name
    if batch != 1:
        raise TritonRepoError(
            f"--batch {batch}: {name} is stateful; each request is one chunk of one sequence (batch 1)"
        )
    if shared_memory:
        raise TritonRepoError(
            f"--shared-memory: not with {name}, a stateful model (its chunks change per request)"
        )
    if None in live:
        raise TritonRepoError(
            f"--request-rate: {name} is stateful; drive it closed loop (--concurrency = live sequences)"
        )
    config = parse_config(variant.version_dir.parent / "config.pbtxt")
    limit, why, field = live_sequence_limit(config)
    if max(live) > limit:
        raise TritonRepoError(
            f"--concurrency {max(live)}: {name} holds {limit} live sequences ({why}); run at most {limit} "
            f"or raise it in the spec ({field})"
        )
    streams = load_streams(variant.version_dir / variant.entry["sequence"]["file"])
    chunks = [
        [wire_inputs(config, streams.chunk(step, stream)) for step in range(streams.steps)]
        for stream in range(streams.streams)
    ]
    return Sequences(chunks, length or streams.steps)


def shape_label(sizes: dict[str, int]) -> str:
    return ",".join(f"{axis}={size}" for axis, size in sizes.items()) or "static"


def load_variant_spec(variant: Variant) -> LoadedSpec:
    spec_path = Path(variant.entry["spec"])
    if not spec_path.is_file():
        raise TritonRepoError(
            f"{variant.name}: its spec {spec_path} (from the repository manifest) is not here; "
            "run bench from the checkout that built the repository"
        )
    return load_spec(spec_path)
