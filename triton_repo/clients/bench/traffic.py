"""A traffic sample (`bench --traffic FILE`): the user's own inputs, checked against what the served model
takes and cut into requests of --batch consecutive rows, so a benchmark measures the model on its real
inputs (text lengths, image sizes) instead of one golden request re-sent.

A .txt file holds one text per line (or one image path per line); a folder holds image files; a .npy
holds one input and a .npz one array per input name, rows along axis 0.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from triton_repo.core.errors import TritonRepoError
from triton_repo.core.spec import TRITON_DTYPES

MAX_REQUESTS = 256  # distinct requests prepared; a longer sample is cut (and the label says so)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
RAW = ""  # the key of text and image traffic, bound to the model's one BYTES input when checked
# Triton's config data types as numpy names (BYTES: numpy object arrays of bytes)
NUMPY_DTYPES = {triton: dtype for dtype, triton in TRITON_DTYPES.items()} | {"TYPE_STRING": "object"}


@dataclass(frozen=True)
class Traffic:
    """The sample as read: `text`, `images` (both under RAW, one item per row) or `tensors` (by name)."""

    path: Path
    kind: str
    arrays: dict[str, np.ndarray]

    @property
    def rows(self) -> int:
        return len(next(iter(self.arrays.values())))

    @property
    def raw(self) -> bool:
        """Text or encoded images: what an ensemble takes, never a variant."""
        return self.kind != "tensors"


@dataclass(frozen=True)
class Wanted:
    """One input a model takes: numpy dtype and dims besides the batch (an int, or an axis name)."""

    name: str
    dtype: str
    dims: tuple[int | str, ...]
    ranges: tuple[tuple[int, int] | None, ...] = ()  # per dim: the spec's range of a dynamic axis

    def describe(self) -> str:
        dtype = "BYTES" if self.dtype == "object" else self.dtype
        return f"{dtype} [{', '.join(['rows', *map(str, self.dims)])}]"


@dataclass(frozen=True)
class Takes:
    """What a model takes, and where that is declared (named in refusals)."""

    model: str
    inputs: tuple[Wanted, ...]
    max_batch: int  # 0: unbatched (each row of the sample is one request)
    where: str


def load_traffic(path: Path) -> Traffic:
    """Read a sample file or folder; refused in one line when it holds nothing usable."""
    if path.is_dir():
        images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not images:
            raise TritonRepoError(
                f"--traffic {path}: no image files ({', '.join(IMAGE_SUFFIXES)}) in the folder"
            )
        return _images(path, images)
    if not path.is_file():
        raise TritonRepoError(f"--traffic {path}: no such file or folder")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return Traffic(path, "tensors", {RAW: np.load(path, allow_pickle=False)})
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
        if not arrays:
            raise TritonRepoError(f"--traffic {path}: the .npz holds no arrays")
        rows = {name: len(a) if a.ndim else 0 for name, a in arrays.items()}
        if len(set(rows.values())) != 1 or 0 in rows.values():
            raise TritonRepoError(
                f"--traffic {path}: every array needs the same rows along axis 0; got {rows}"
            )
        return Traffic(path, "tensors", arrays)
    if suffix != ".txt":
        raise TritonRepoError(
            f"--traffic {path}: expected a .txt (text or image paths, one per line), .npy, .npz or a folder of images"
        )
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not lines:
        raise TritonRepoError(f"--traffic {path}: no lines of text")
    listed = [(path.parent / line.strip()) for line in lines]
    if all(p.suffix.lower() in IMAGE_SUFFIXES for p in listed):
        missing = next((p for p in listed if not p.is_file()), None)
        if missing is not None:
            raise TritonRepoError(f"--traffic {path}: lists {missing}, which does not exist")
        return _images(path, listed)
    return Traffic(path, "text", {RAW: _objects([line.encode("utf-8") for line in lines])})


def _images(path: Path, files: list[Path]) -> Traffic:
    items = [f.read_bytes() for f in files[: MAX_REQUESTS * 32]]
    unknown = next((f for f, data in zip(files, items, strict=False) if not _is_image(data)), None)
    if unknown is not None:
        raise TritonRepoError(
            f"--traffic {path}: {unknown.name} is not a JPEG, PNG, GIF, BMP, WebP or TIFF image"
        )
    return Traffic(path, "images", {RAW: _objects(items)})


def _is_image(data: bytes) -> bool:
    signatures = (b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"BM", b"II*\x00", b"MM\x00*")
    return data.startswith(signatures) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")


def _objects(items: list[bytes]) -> np.ndarray:
    array = np.empty(len(items), dtype=object)
    array[:] = items
    return array


def takes_of_spec(loaded, model: str) -> Takes:
    """Variant `model`'s inputs as its spec declares them (the graph's view: a [batch] input has no dims)."""
    spec = loaded.spec
    wanted = []
    for tensor in spec.served_inputs:
        if tensor.scalar:
            raise TritonRepoError(
                f"--traffic: {model}'s input '{tensor.name}' is one value per request; a sample cannot set it"
            )
        batch_axis = spec.batch_axis(tensor)
        dims = tuple(d for axis, d in enumerate(tensor.dims) if axis != batch_axis)
        ranges = tuple(None if isinstance(d, int) else (spec.axes[d].min, spec.axes[d].max) for d in dims)
        wanted.append(Wanted(tensor.name, tensor.dtype, dims, ranges))
    return Takes(model, tuple(wanted), spec.effective_max_batch_size, str(loaded.path))


def takes_of_config(model: str, config_path: Path) -> Takes:
    """A served model's inputs as its config.pbtxt states them (an ensemble's raw inputs)."""
    from tritonclient.grpc import model_config_pb2 as mc

    from triton_repo.repo.config import parse_config

    config = parse_config(config_path)
    wanted = []
    for tensor in config.input:
        triton = mc.DataType.Name(tensor.data_type)
        dtype = NUMPY_DTYPES.get(triton, triton)
        dims = tuple(d if d > 0 else f"dim{i + 1}" for i, d in enumerate(tensor.dims))
        wanted.append(Wanted(tensor.name, dtype, dims, tuple(None for _ in dims)))
    return Takes(model, tuple(wanted), config.max_batch_size, str(config_path))


def bind(traffic: Traffic, takes: Takes) -> dict[str, np.ndarray]:
    """The sample's arrays by input name, refused in one line (the input, what was expected, what the
    file has) where names, dtypes or dims disagree with what the model takes."""
    name = traffic.path.name
    if traffic.kind == "tensors" and RAW not in traffic.arrays:
        extra = sorted(set(traffic.arrays) - {w.name for w in takes.inputs})
        if extra:
            raise TritonRepoError(
                f"--traffic {name}: array '{extra[0]}' is no input of {takes.model}; it takes "
                + ", ".join(f"'{w.name}' {w.describe()}" for w in takes.inputs)
            )
        arrays = dict(traffic.arrays)
    else:
        if len(takes.inputs) != 1:
            raise TritonRepoError(
                f"--traffic {name}: {takes.model} takes {len(takes.inputs)} inputs "
                f"({', '.join(w.name for w in takes.inputs)}); give a .npz with one array per input name"
            )
        arrays = {takes.inputs[0].name: traffic.arrays[RAW]}
    for wanted in takes.inputs:
        if wanted.name not in arrays:
            raise TritonRepoError(
                f"--traffic {name}: no array for input '{wanted.name}' of {takes.model} "
                f"(expected {wanted.describe()}, from {takes.where})"
            )
        arrays[wanted.name] = _checked(name, takes, wanted, arrays[wanted.name])
    return {w.name: arrays[w.name] for w in takes.inputs}


def _checked(name: str, takes: Takes, wanted: Wanted, array: np.ndarray) -> np.ndarray:
    if wanted.dtype == "object" and array.dtype == object and array.ndim == 1 and wanted.dims == (1,):
        array = array[:, None]  # text or image bytes: one item per row, sent as [rows, 1]
    has = "text" if array.dtype == object else array.dtype.name
    problem = f"input '{wanted.name}' of {takes.model}: expected {wanted.describe()}, {name} has {has} {list(array.shape)}"
    if array.dtype.name != wanted.dtype:
        raise TritonRepoError(f"--traffic {problem}")
    if array.ndim != len(wanted.dims) + 1:
        raise TritonRepoError(f"--traffic {problem}")
    for size, dim, bounds in zip(
        array.shape[1:], wanted.dims, wanted.ranges or [None] * len(wanted.dims), strict=True
    ):
        if isinstance(dim, int) and size != dim:
            raise TritonRepoError(f"--traffic {problem}")
        if bounds is not None and not bounds[0] <= size <= bounds[1]:
            raise TritonRepoError(f"--traffic {problem} ({dim} takes {bounds[0]}..{bounds[1]})")
    return np.ascontiguousarray(array)


def requests_of(arrays: dict[str, np.ndarray], batch: int, takes: Takes) -> tuple[list[dict], str]:
    """Requests of `batch` consecutive rows (wrapping around at the end), at most MAX_REQUESTS of them,
    and a note when the sample was cut. An unbatched model gets one row per request, as the row is."""
    if takes.max_batch == 0 and batch != 1:
        raise TritonRepoError(f"--batch {batch}: {takes.model} is not batched (max_batch_size 0)")
    if takes.max_batch and batch > takes.max_batch:
        raise TritonRepoError(
            f"--batch {batch}: {takes.model} accepts 1..{takes.max_batch} (max_batch_size in {takes.where})"
        )
    rows = len(next(iter(arrays.values())))
    count = -(-rows // batch)
    note = ""
    if count > MAX_REQUESTS:
        note = f"first {MAX_REQUESTS * batch} of {rows} rows: {MAX_REQUESTS} requests prepared"
        count = MAX_REQUESTS
    requests = []
    for i in range(count):
        if takes.max_batch == 0:
            requests.append({n: np.ascontiguousarray(a[i]) for n, a in arrays.items()})
            continue
        index = np.arange(i * batch, (i + 1) * batch) % rows
        requests.append({n: np.ascontiguousarray(a[index]) for n, a in arrays.items()})
    return requests, note


def traffic_label(
    traffic: Traffic, arrays: dict[str, np.ndarray], takes: Takes, lengths: list[int] | None
) -> str:
    """`traffic=<file> (N rows; ...)`: the rows, and what varies: token lengths of text (when known),
    sizes of images, the size of each dynamic dim of tensors."""
    rows = len(next(iter(arrays.values())))
    parts = [f"{rows} rows"]
    if lengths:
        parts.append(f"seq {min(lengths)}..{max(lengths)}, median {int(np.median(lengths))}")
    elif traffic.kind == "images":
        kb = [len(item) / 1024 for item in traffic.arrays[RAW]]
        parts.append(f"{min(kb):,.0f}..{max(kb):,.0f} KB, median {np.median(kb):,.0f} KB")
    elif traffic.kind == "tensors":
        for wanted in takes.inputs:
            for axis, dim in enumerate(wanted.dims, start=1):
                if isinstance(dim, str):
                    parts.append(f"{dim}={arrays[wanted.name].shape[axis]}")
    return f"traffic={traffic.path.name} ({'; '.join(dict.fromkeys(parts))})"


def token_lengths(texts: np.ndarray, step_dir: Path) -> list[int] | None:
    """Tokens per text as a tokenize step counts them (its tokenizer and max length); None when the step
    is not a tokenizer or the tokenizers package is missing."""
    from triton_repo.repo.config import parse_config

    try:
        config = parse_config(step_dir.parent / "config.pbtxt")
        step = json.loads(config.parameters["step"].string_value)
        if step.get("kind") != "tokenize":
            return None
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(step_dir / step["tokenizer_file"]))
        tokenizer.no_padding()  # each text's own length (the step pads a batch to its longest)
        encoded = tokenizer.encode_batch([bytes(t).decode("utf-8", "replace") for t in texts.reshape(-1)])
    except Exception:  # noqa: BLE001 - the lengths are a label, not a measurement: none if unknown
        return None
    return [min(len(e.ids), int(step.get("max_length", 1 << 30))) for e in encoded]


@dataclass(frozen=True)
class TrafficPlan:
    """One target's traffic: its requests on the wire, the same rows as its graph takes them (the
    in-process floor's feed), the outputs to ask for, and what the report calls it."""

    requests: tuple[dict[str, np.ndarray], ...]
    graph_requests: tuple[dict[str, np.ndarray], ...]
    outputs: dict[str, tuple[tuple[int, ...], str]]
    steps: tuple[str, ...]
    label: str
    note: str


def traffic_targets(manifest: dict, repository: Path, names: list[str], traffic: Traffic) -> list:
    """The served models to drive with `traffic`: an ensemble named; a source model's ensemble when the
    rows are its raw data (text, images, or arrays it takes), else its variants; a variant named."""
    from triton_repo.clients.bench.workload import select_variants

    if not names:
        raise TritonRepoError(
            "--traffic: name the model(s) it is for, e.g. `bench minilm --traffic lines.txt`"
        )
    everything = manifest["models"]
    chosen = []
    for name in names:
        entry = everything.get(name, {})
        ensemble = name if entry.get("kind") == "ensemble" else _ensemble_of(everything, name)
        if entry.get("kind", "model") == "model" and name in everything:
            ensemble = None  # a variant named: it is the target
        if ensemble and (traffic.raw or _takes_raw(traffic, ensemble, repository)):
            found = select_variants(manifest, repository, [ensemble], ensembles=True)
        else:
            found = select_variants(manifest, repository, [name])
            if traffic.raw:
                suggestion = _ensemble_of(everything, found[0].source_model)
                raise TritonRepoError(
                    f"--traffic {traffic.path.name}: {traffic.kind} is raw data, which an ensemble takes; "
                    + (f"{name} is not one (bench {suggestion})" if suggestion else f"{name} has no ensemble")
                )
        chosen.extend(v for v in found if v.name not in {c.name for c in chosen})
    return chosen


def _ensemble_of(everything: dict, source: str) -> str | None:
    return next(
        (m for m, e in everything.items() if e.get("kind") == "ensemble" and e.get("source_model") == source),
        None,
    )


def _takes_raw(traffic: Traffic, ensemble: str, repository: Path) -> bool:
    """Tensor rows an ensemble takes as they are (the digits ensemble's uint8 pixels)."""
    try:
        bind(traffic, takes_of_config(ensemble, repository / ensemble / "config.pbtxt"))
    except TritonRepoError:
        return False
    return True


def plan_traffic(variant, loaded, traffic: Traffic, batch: int, repository: Path) -> TrafficPlan:
    """Check `traffic` against what `variant` (a variant or an ensemble) takes and cut it into requests."""
    from triton_repo.clients.bench.workload import as_sent

    if "sequence" in variant.entry:
        raise TritonRepoError(f"--traffic: {variant.name} is stateful; it is driven by its golden streams")
    ensemble = variant.entry.get("kind") == "ensemble"
    config_path = repository / variant.name / "config.pbtxt"
    takes = takes_of_config(variant.name, config_path) if ensemble else takes_of_spec(loaded, variant.name)
    if ensemble and traffic.raw:
        _check_kind(traffic, variant, repository)
    arrays = bind(traffic, takes)
    graph, note = requests_of(arrays, batch, takes)
    wire = graph if ensemble else [as_sent(loaded, r) for r in graph]
    lengths = None
    if traffic.kind == "text" and ensemble:
        lengths = token_lengths(arrays[takes.inputs[0].name], _version_dir(repository, _first_step(variant)))
    return TrafficPlan(
        requests=tuple({n: np.ascontiguousarray(a) for n, a in r.items()} for r in wire),
        graph_requests=tuple(graph),
        outputs=_outputs(config_path),
        steps=tuple(variant.entry.get("steps", ())) if ensemble else (),
        label=traffic_label(traffic, arrays, takes, lengths),
        note=note,
    )


def _check_kind(traffic: Traffic, variant, repository: Path) -> None:
    """Text to a tokenizer, images to an image decoder: the first step's kind says which it takes."""
    from triton_repo.repo.config import parse_config

    first = _first_step(variant)
    try:
        config = parse_config(repository / first / "config.pbtxt")
        kind = json.loads(config.parameters["step"].string_value).get("kind")
    except Exception:  # noqa: BLE001 - a step that does not say what it takes: the server will
        return
    wants = {"tokenize": "text", "image": "images", "letterbox": "images"}.get(kind)
    if wants and wants != traffic.kind:
        raise TritonRepoError(
            f"--traffic {traffic.path.name}: {variant.name} takes {wants} (its step {first} is '{kind}'), "
            f"the sample holds {traffic.kind}"
        )


def _first_step(variant) -> str:
    """The model that takes the raw data: an ensemble's first step, or the model itself when it is served
    as one process (a fused model: an ensemble entry without steps)."""
    return (variant.entry.get("steps") or [variant.name])[0]


def _version_dir(repository: Path, model: str) -> Path:
    """The newest version folder of a served model."""
    versions = [p for p in (repository / model).iterdir() if p.is_dir() and p.name.isdigit()]
    return max(versions, key=lambda p: int(p.name)) if versions else repository / model / "1"


def _outputs(config_path: Path) -> dict[str, tuple[tuple[int, ...], str]]:
    """The outputs to ask for (their shapes matter only for shared memory, which traffic does not use)."""
    from tritonclient.grpc import model_config_pb2 as mc

    from triton_repo.repo.config import parse_config

    config = parse_config(config_path)
    return {o.name: ((), NUMPY_DTYPES.get(mc.DataType.Name(o.data_type), "float32")) for o in config.output}
