"""The data stub init writes as a model's model.py (formatted by write_spec.model_py): it reads the user's
own files from data/ (images, .wav, text lines through the model's tokenizer, .npy arrays), splits them
into sample, calibration and eval, gives a stateful model's streams, and random data only as a marked
placeholder the build refuses to gate on."""

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
STATES = {states}  # state input -> where its batch axis goes (null: unbatched)
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
    samples = _sound_samples(path)
    wanted = SHAPES[name][-1]
    row = np.zeros(wanted, np.float32)
    row[: min(wanted, len(samples))] = samples[:wanted]
    return row.reshape(SHAPES[name]).astype(DTYPES[name])


def _sound_samples(path):
    import wave

    with wave.open(str(path)) as sound:
        width, channels, frames = sound.getsampwidth(), sound.getnchannels(), sound.readframes(sound.getnframes())
    kind, scale = {{1: (np.uint8, 128.0), 2: (np.int16, 32768.0), 4: (np.int32, 2.0**31)}}[width]
    samples = np.frombuffer(frames, kind).astype(np.float32)
    samples = (samples - 128.0 if width == 1 else samples) / scale
    return samples.reshape(-1, channels).mean(axis=1)


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
    if not rows:
        raise ValueError(f"data/ holds files, but none this model reads: see the docstring of {{__file__}}")
    count = min(len(a) for a in rows.values())
    for name, kind in KINDS.items():
        if name not in rows and kind == "mask":
            rows[name] = np.ones((count, *SHAPES[name]), DTYPES[name])
    scalars = {{n: np.array(v, DTYPES[n]) for n, v in SCALARS.items()}}
    missing = sorted(set(KINDS) - set(rows) - set(scalars) - set(STATES))
    if missing:
        raise ValueError(f"data/ has no rows for {{missing}}: see the docstring of {{__file__}}")
    return {{**{{n: a[:count] for n, a in rows.items()}}, **scalars}}


def _state(name, rows):
    """A state at the start of a sequence: zeros, `rows` sequences along its batch axis."""
    zeros = np.zeros(SHAPES[name], DTYPES[name])
    return np.stack([zeros] * rows, axis=STATES[name]) if BATCHED else zeros


def _random(rows, seed):
    """A RANDOM PLACEHOLDER of `rows` rows: it runs the model, it measures nothing."""
    rng = np.random.default_rng(seed)
    made = {{n: _state(n, rows) for n in STATES}}
    for name, shape in SHAPES.items():
        if name in STATES:
            continue
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
        part = {{n: a if KINDS[n] == "scalar" else a[0] for n, a in data.items()}}
        return {{**part, **{{n: _state(n, 1) for n in STATES}}}}
    part = {{n: a if KINDS[n] == "scalar" else a[start:stop] for n, a in data.items()}}
    rows = next((len(a) for n, a in part.items() if KINDS[n] != "scalar"), rows)
    return {{**part, **{{n: _state(n, rows) for n in STATES}}}}


def sample():
    return _part(0, SAMPLE_ROWS, 0, SAMPLE_ROWS)


def calibration():
    return _part(SAMPLE_ROWS, SAMPLE_ROWS + CALIBRATION_ROWS, 1, 16)


def evaluation():
    return _part(SAMPLE_ROWS + CALIBRATION_ROWS, None, 2, 64)


STREAM_STEPS, STREAMS = 20, 4  # the placeholder streams: steps per stream, streams


def sequence():
    """A stateful model's golden streams: per input that is not a state, [steps, streams, ...] (unbatched:
    [steps, ...]); a scalar as one value per step. From data/: each .wav file is one stream, cut into
    chunks of the input's length; or data/<input>_streams.npy shaped so. Else a RANDOM PLACEHOLDER."""
    streams = _given_streams()
    if streams is not None:
        return streams
    rng = np.random.default_rng(3)
    made = {{}}
    for name, shape in SHAPES.items():
        if name in STATES:
            continue
        if KINDS[name] == "scalar":
            made[name] = np.full(STREAM_STEPS, SCALARS.get(name, 1), DTYPES[name])
            continue
        full = (STREAM_STEPS, STREAMS, *shape) if BATCHED else (STREAM_STEPS, *shape)
        made[name] = _filled(FILLS[name], name, full, rng).astype(np.dtype(DTYPES[name]))
    return made


def _given_streams():
    inputs = [n for n in SHAPES if n not in STATES and KINDS[n] != "scalar"]
    made = {{}}
    for name in inputs:
        saved = DATA / f"{{name}}_streams.npy"
        if saved.is_file():
            made[name] = np.load(saved).astype(DTYPES[name])
        elif KINDS[name] == "audio" and _sounds():
            chunk = SHAPES[name][-1]
            clips = [_sound_samples(path) for path in _sounds()[: STREAMS if BATCHED else 1]]
            steps = min(50, min(len(c) // chunk for c in clips))
            if steps < 1:
                raise ValueError(f"data/*.wav: a clip is shorter than one chunk of {{chunk}} samples")
            cut = np.stack([c[: steps * chunk].reshape(steps, chunk) for c in clips], axis=1)
            made[name] = (cut if BATCHED else cut[:, 0]).astype(DTYPES[name])
    if not made:
        return None
    if len(made) < len(inputs):
        raise ValueError(f"data/ gives streams for {{sorted(made)}} only; give each of {{inputs}}")
    steps = min(len(a) for a in made.values())
    made = {{n: a[:steps] for n, a in made.items()}}
    made.update({{n: np.full(steps, v, DTYPES[n]) for n, v in SCALARS.items()}})
    return made


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
