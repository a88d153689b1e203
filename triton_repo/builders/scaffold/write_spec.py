"""model.yaml and model.py for a probed model: the spec (every decision commented) and a data stub that
reads the user's own files, random only as a marked placeholder the build refuses to gate on."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import yaml

from triton_repo.builders.scaffold.propose import Proposal
from triton_repo.builders.scaffold.record import ModelProbe, ProbedTensor

CALIBRATION_ROWS = 32
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


@dataclass(frozen=True)
class SpecExtras:
    """What a source adds to the probed spec: labels per output, an ensemble, text data for the stub."""

    labels: dict[str, str] = field(default_factory=dict)  # output name: labels file
    ensemble: dict | None = None
    ensemble_why: str = ""
    text: dict | None = None  # tokenizer, ids, mask, pad_id, max: the stub tokenizes data/*.txt


def _flow(value) -> str:
    """One YAML value on one line (flow style), as the zoo's specs write them."""
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a YAML string: `Identity:0`, `input.1` stay names
    return yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10_000).strip()


def image_layout(tensor: ProbedTensor) -> str | None:
    """NCHW or NHWC for a float image input of rank 4 with 1, 3 or 4 channels."""
    dims = tensor.dims
    if not tensor.dtype.startswith("float") or len(dims) != 4:
        return None
    first, last = dims[1] in (1, 3, 4), dims[3] in (1, 3, 4)
    if first:
        return "NCHW"  # both ambiguous ([n, 3, 5, 3]): the PyTorch layout
    return "NHWC" if last else None


def spec_yaml(
    name: str,
    source: dict,
    probe: ModelProbe,
    proposal: Proposal,
    source_note: str,
    extras: SpecExtras | None = None,
) -> str:
    extras = extras or SpecExtras()
    lines = [
        f"# Written by `triton-repo init` from {source_note}. Every choice below was read from the file or",
        "# found by running it (`triton-repo inspect` shows the runs); edit what your traffic needs.",
        f"name: {name}",
        f"source: {_flow(source)}",
    ]
    if not probe.batched:
        lines.append(f"max_batch_size: 0  # {probe.unbatched_reason or 'no batch axis'}")
    if probe.axes:
        lines.append("axes:")
        for axis in probe.axes.values():
            extra = f"; multiples of {axis.multiple_of} only" if axis.multiple_of > 1 else ""
            kind = "output only: " if axis.output_only else ""
            ranges = {"min": axis.min, "opt": axis.opt, "max": axis.max}
            lines.append(f"  {axis.name}: {_flow(ranges)}  # {kind}{axis.why}{extra}")
    lines.append("inputs:")
    for tensor in probe.inputs:
        entry = {"name": tensor.name, "dtype": tensor.dtype, "dims": list(tensor.dims)}
        layout = image_layout(tensor)
        if layout and probe.batched:  # Triton's image format names 3 dims besides the batch
            entry["format"] = layout
        said = tensor.note and not tensor.note.startswith("fed ")  # how the probe fed it: not for the spec
        lines.append(f"  - {_flow(entry)}" + (f"  # {tensor.note}" if said else ""))
    lines.append("outputs:")
    for tensor in probe.outputs:
        entry = {"name": tensor.name, "dtype": tensor.dtype, "dims": list(tensor.dims)}
        if tensor.name in extras.labels:
            entry["labels"] = extras.labels[tensor.name]
        lines.append(f"  - {_flow(entry)}" + (f"  # {tensor.note}" if tensor.note else ""))
    if probe.batched:
        data = {"sample": "model:sample", "calibration": "model:calibration", "eval": "model:evaluation"}
        lines.append(f"data: {_flow(data)}  # model.py reads your files in data/ (see its docstring)")
        lines += _accuracy_lines(proposal)
        lines.append(
            "precision: {variants: [fp32]}  # add fp16, bf16, int8 once data/ holds your examples: the build "
            "refuses to measure them on random placeholder data"
        )
        if extras.ensemble is not None:
            lines.append(f"ensemble:  # `{name}` {extras.ensemble_why}")
            lines += [f"  {key}: {_flow(value)}" for key, value in extras.ensemble.items()]
    else:
        lines.append("data: {sample: 'model:sample'}  # one request, read from data/ (see model.py)")
        lines.append("precision: {variants: [fp32]}  # unbatched: add data.eval before lower precisions")
    return "\n".join(lines) + "\n"


def _accuracy_lines(proposal: Proposal) -> list[str]:
    from triton_repo.core.spec.accuracy import SETTINGS

    lines = [f"accuracy:  # proposed: {proposal.why}", f"  metric: {proposal.metric}"]
    lines.append(f"  output: {_flow(proposal.output)}")
    section = SETTINGS.get(proposal.metric)
    if proposal.settings and section:
        lines.append(f"  {section}: {_flow(proposal.settings)}")
    lines += [f"  # or {alternative}" for alternative in proposal.alternatives]
    return lines


def model_py(name: str, source_note: str, probe: ModelProbe, text: dict | None = None) -> str:
    """The data stub: one row of every input read from data/, split into sample, calibration, eval."""
    shapes, dtypes, kinds, scalars, tops = {}, {}, {}, {}, {}
    fills = {t.name: t.fill or "normal" for t in probe.inputs}
    sizes = {axis.name: axis.opt for axis in probe.axes.values()}
    for tensor in probe.inputs:
        dims = list(tensor.dims[1:] if probe.batched and tensor.dims else tensor.dims)
        shapes[tensor.name] = [sizes.get(d, 1) if isinstance(d, str) else d for d in dims]
        dtypes[tensor.name] = tensor.dtype
        kinds[tensor.name] = image_layout(tensor) or ("mask" if "mask" in tensor.name.lower() else "array")
        if _is_audio(tensor, probe.batched):
            kinds[tensor.name] = "audio"
        if tensor.dims and tensor.value and tensor.dtype.startswith("int"):
            tops[tensor.name] = int(tensor.value)  # the largest token id its embedding table takes
        if not tensor.dims:  # one value per request (a sample rate), the same for every row
            kinds[tensor.name] = "scalar"
            scalars[tensor.name] = tensor.value if tensor.value is not None else 1
    images = [n for n, k in kinds.items() if k in ("NCHW", "NHWC")]
    how = []
    tokenized = (text["ids"], text["mask"]) if text else ()
    if text:
        how.append(
            f"- {', '.join(tokenized)}: lines of text in data/*.txt, tokenized with {text['tokenizer']}"
        )
    for tensor_name, kind in kinds.items():
        if tensor_name in tokenized:
            continue
        if kind in ("NCHW", "NHWC"):
            how.append(f"- {tensor_name}: image files (png, jpg) in data/, resized to the opt size")
        elif kind == "audio":
            samples = shapes[tensor_name][-1]
            how.append(
                f"- {tensor_name}: .wav files in data/ (PCM; channels mixed down), cut or zero-padded to "
                f"{samples} samples (SHAPES below); resample them to the rate the model was trained at"
            )
        elif kind == "mask":
            how.append(f"- {tensor_name}: data/{_file(tensor_name)} if you give it, else ones")
        elif kind == "scalar":
            how.append(
                f"- {tensor_name}: one value per request, SCALARS below ({scalars[tensor_name]} as probed)"
            )
        else:
            shape = ", ".join(str(s) for s in shapes[tensor_name])
            how.append(
                f"- {tensor_name}: data/{_file(tensor_name)}, one array [rows, {shape}] ({dtypes[tensor_name]})"
            )
    return STUB.format(
        name=name,
        source=source_note,
        how="\n".join(how),
        shapes=json.dumps(shapes),
        dtypes=json.dumps(dtypes),
        kinds=json.dumps(kinds),
        files=json.dumps({n: _file(n) for n, k in kinds.items() if k != "scalar"}),
        scalars=json.dumps(scalars),
        tops=json.dumps(tops),
        fills=json.dumps(fills),
        images=json.dumps(images),
        audio=json.dumps([n for n, k in kinds.items() if k == "audio"]),
        text=repr(text),
        batched=probe.batched,
        calibration_rows=CALIBRATION_ROWS,
        suffixes=IMAGE_SUFFIXES,
    )


AUDIO_NAMES = re.compile(r"(?i)audio|wav|speech|pcm|waveform|input_values|signal")


def _is_audio(tensor: ProbedTensor, batched: bool) -> bool:
    """A float input of one axis per row named like a waveform: read from .wav files."""
    dims = tensor.dims[1:] if batched and tensor.dims else tensor.dims
    if not tensor.dtype.startswith("float") or len(dims) != 1:
        return False
    return bool(AUDIO_NAMES.search(tensor.name))


def _file(tensor_name: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in tensor_name)
    return f"{safe}.npy"


STUB = '''"""Data for {name}, written by `triton-repo init` from {source}.

Put your own examples in data/ beside this file:
{how}
Rows are taken in file-name order and split, never overlapping, into sample (the first 2), calibration
(the next {calibration_rows}) and eval (the rest: give at least a few hundred for a tight accuracy bound).

Until data/ holds them, calibration and eval are RANDOM PLACEHOLDERS: `triton-repo build` serves FP32
from them, and refuses to measure a lower precision on them ("data.eval is random placeholder data").
Image inputs are scaled to [0, 1] then (x - MEAN) / STD: set MEAN and STD as the model was trained
(ImageNet models: MEAN = (0.485, 0.456, 0.406), STD = (0.229, 0.224, 0.225)).
"""

from pathlib import Path

import numpy as np

DATA = Path(__file__).parent / "data"
SHAPES = {shapes}  # one row of each input at the opt sizes
DTYPES = {dtypes}
KINDS = {kinds}  # NCHW / NHWC: image files; audio: .wav files; mask: ones unless given; array: .npy; scalar
SCALARS = {scalars}  # one value per request: set it as your clients send it
TOP_IDS = {tops}  # token ids of the placeholder stay in 1..this (the model's embedding table)
FILLS = {fills}  # how the placeholder fills each input: as the probe ran it
FILES = {files}
IMAGES = {images}
AUDIO = {audio}
TEXT = {text}  # text inputs: your lines in data/*.txt through the model's own tokenizer (None: none)
BATCHED = {batched}
MEAN, STD = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
SAMPLE_ROWS, CALIBRATION_ROWS = 2, {calibration_rows}
SUFFIXES = {suffixes}


def _image(path, name):
    from PIL import Image

    layout, shape = KINDS[name], SHAPES[name]
    channels, height, width = shape if layout == "NCHW" else (shape[2], shape[0], shape[1])
    picture = Image.open(path).convert("L" if channels == 1 else "RGB").resize((width, height))
    pixels = np.asarray(picture, np.float32).reshape(height, width, -1)[..., :channels] / 255.0
    pixels = (pixels - np.array(MEAN[:channels], np.float32)) / np.array(STD[:channels], np.float32)
    return (pixels.transpose(2, 0, 1) if layout == "NCHW" else pixels).astype(DTYPES[name])


def _pictures():
    return sorted(p for p in DATA.glob("*") if p.suffix.lower() in SUFFIXES) if DATA.is_dir() else []


def _sounds():
    return sorted(DATA.glob("*.wav")) if DATA.is_dir() and AUDIO else []


def _sound(path, name):
    """A PCM .wav file as float32 in [-1, 1], channels mixed down, cut or zero-padded to SHAPES[name]."""
    import wave

    with wave.open(str(path)) as sound:
        width, channels, frames = sound.getsampwidth(), sound.getnchannels(), sound.readframes(sound.getnframes())
    kind, scale = {{1: (np.uint8, 128.0), 2: (np.int16, 32768.0), 4: (np.int32, 2.0**31)}}[width]
    samples = np.frombuffer(frames, kind).astype(np.float32)
    samples = (samples - 128.0 if width == 1 else samples) / scale
    samples = samples.reshape(-1, channels).mean(axis=1)
    wanted = SHAPES[name][-1]
    row = np.zeros(wanted, np.float32)
    row[: min(wanted, len(samples))] = samples[:wanted]
    return row.reshape(SHAPES[name]).astype(DTYPES[name])


def _lines():
    if not TEXT or not DATA.is_dir():
        return []
    files = sorted(DATA.glob("*.txt"))
    return [line.strip() for path in files for line in path.read_text().splitlines() if line.strip()]


def _tokenized(lines):
    """Token ids and attention mask of `lines`, padded to the longest, truncated to the axis' max."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(Path(__file__).parent / TEXT["tokenizer"]))
    tokenizer.no_padding()
    tokenizer.enable_truncation(TEXT["max"])
    encoded = tokenizer.encode_batch(lines)
    length = max(len(e.ids) for e in encoded)
    ids = np.full((len(lines), length), TEXT["pad_id"], DTYPES[TEXT["ids"]])
    mask = np.zeros((len(lines), length), DTYPES[TEXT["mask"]])
    for row, e in enumerate(encoded):
        ids[row, : len(e.ids)], mask[row, : len(e.ids)] = e.ids, 1
    return {{TEXT["ids"]: ids, TEXT["mask"]: mask}}


def _given():
    """Whether data/ holds any of your files."""
    return bool(_pictures() or _lines() or _sounds()) or any((DATA / f).is_file() for f in FILES.values())


def _rows():
    """Every row of your data as {{input: [rows, ...]}}, or None when data/ holds none."""
    if not _given():
        return None
    pictures = _pictures()
    arrays = {{n: np.load(DATA / f) for n, f in FILES.items() if (DATA / f).is_file()}}
    rows = {{n: np.stack([_image(p, n) for p in pictures]) for n in IMAGES if pictures}}
    sounds = _sounds()
    rows.update({{n: np.stack([_sound(p, n) for p in sounds]) for n in AUDIO if sounds}})
    rows.update({{n: a.astype(DTYPES[n]) for n, a in arrays.items() if n not in rows}})
    lines = _lines()
    if lines:
        rows.update(_tokenized(lines))
    count = min(len(a) for a in rows.values())
    for name, kind in KINDS.items():
        if name not in rows and kind == "mask":
            rows[name] = np.ones((count, *SHAPES[name]), DTYPES[name])
    scalars = {{n: np.array(v, DTYPES[n]) for n, v in SCALARS.items()}}
    missing = sorted(set(KINDS) - set(rows) - set(scalars))
    if missing:
        raise ValueError(f"data/ has no rows for {{missing}}: see the docstring of {{__file__}}")
    return {{**{{n: a[:count] for n, a in rows.items()}}, **scalars}}


def _random(rows, seed):
    """A RANDOM PLACEHOLDER of `rows` rows: it runs the model, it measures nothing."""
    rng = np.random.default_rng(seed)
    made = {{}}
    for name, shape in SHAPES.items():
        full = (rows, *shape) if BATCHED else tuple(shape)
        fill = "value" if KINDS[name] == "scalar" else FILLS[name]
        made[name] = _filled(fill, name, full, rng).astype(np.dtype(DTYPES[name]))
    return made


def _filled(fill, name, shape, rng):
    if fill == "value":
        return np.array(SCALARS.get(name, 1))
    if fill == "uniform":
        return rng.random(shape)
    if fill == "pixels":
        return rng.integers(0, 256, shape)
    if fill == "tokens":
        return rng.integers(1, TOP_IDS.get(name, 99) + 1, shape)
    if fill == "small":
        return rng.integers(0, 10, shape)
    if fill in ("ones", "zeros"):
        return (np.ones if fill == "ones" else np.zeros)(shape)
    if fill == "positions":
        return np.broadcast_to(np.arange(shape[-1] if shape else 1), shape).copy()
    if fill == "text":
        return np.full(shape, "placeholder", dtype=object)
    return rng.standard_normal(shape)


def _part(start, stop, seed, rows):
    data = _rows()
    if data is None:
        return _random(rows, seed)
    if not BATCHED:
        return {{n: a if KINDS[n] == "scalar" else a[0] for n, a in data.items()}}
    return {{n: a if KINDS[n] == "scalar" else a[start:stop] for n, a in data.items()}}


def sample():
    return _part(0, SAMPLE_ROWS, 0, SAMPLE_ROWS)


def calibration():
    return _part(SAMPLE_ROWS, SAMPLE_ROWS + CALIBRATION_ROWS, 1, 16)


def evaluation():
    return _part(SAMPLE_ROWS + CALIBRATION_ROWS, None, 2, 64)


def texts():
    """Raw text for a text ensemble's check: your first lines, else placeholders."""
    return (_lines() or ["A placeholder sentence.", "Another placeholder, a little longer than the first."])[:SAMPLE_ROWS]


def images():
    """Encoded images for an image ensemble's check: your first pictures, else a gradient as PNG."""
    import io

    from PIL import Image

    pictures = _pictures()[:SAMPLE_ROWS]
    if pictures:
        return [path.read_bytes() for path in pictures]
    gradient = np.add.outer(np.arange(96), np.arange(128)).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(np.stack([gradient] * 3, axis=-1)).save(buffer, format="PNG")
    return [buffer.getvalue()]


# `triton-repo build` reads these: it refuses to gate a lower precision on random eval data.
calibration.random_placeholder = evaluation.random_placeholder = not _given()
'''
