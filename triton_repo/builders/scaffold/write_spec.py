"""model.yaml and model.py for a probed model: the spec (every decision commented) and a data stub that
reads the user's own files, random only as a marked placeholder the build refuses to gate on."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import yaml

from triton_repo.builders.scaffold.propose import Proposal
from triton_repo.builders.scaffold.record import ModelProbe, ProbedTensor
from triton_repo.builders.scaffold.states import States
from triton_repo.builders.scaffold.stub_template import STUB

CALIBRATION_ROWS = 32
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


@dataclass(frozen=True)
class SpecExtras:
    """What a source adds to the probed spec: labels per output, an ensemble, text data for the stub."""

    labels: dict[str, str] = field(default_factory=dict)  # output name: labels file
    ensemble: dict | None = None
    ensemble_why: str = ""
    text: dict | None = None  # tokenizer, ids, mask, pad_id, max: the stub tokenizes data/*.txt
    states: States | None = None  # a stateful model: its state pairs, served under the sequence batcher


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
            extra = ""
            kind = "output only: " if axis.output_only else ""
            ranges = {"min": axis.min, "opt": axis.opt, "max": axis.max}
            if axis.multiple_of > 1 and not axis.output_only:
                ranges["multiple_of"] = axis.multiple_of
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
    if extras.states is not None:
        lines += _stateful_lines(probe, extras.states)
    elif probe.batched:
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


def _stateful_lines(probe: ModelProbe, states: States) -> list[str]:
    """A stateful model: checked on golden streams, served under Triton's sequence batcher (the states stay
    in the server); lower precisions need eval streams, int8 is not built for it."""
    data = {"sample": "model:sample", "sequence": "model:sequence"}
    strategy = "oldest" if probe.batched else "direct"
    return [
        f"data: {_flow(data)}  # model.py reads your streams from data/ (see its docstring)",
        f"sequence: {_flow({'strategy': strategy, 'idle_timeout_ms': 5000})}  # {states.note}",
        "precision: {variants: [fp32]}  # fp16 and bf16 are gated on eval streams: add data.eval and accuracy "
        "(docs/spec.md, stateful models)",
    ]


def _accuracy_lines(proposal: Proposal) -> list[str]:
    from triton_repo.core.spec.accuracy import SETTINGS

    lines = [f"accuracy:  # proposed: {proposal.why}", f"  metric: {proposal.metric}"]
    lines.append(f"  output: {_flow(proposal.output)}")
    section = SETTINGS.get(proposal.metric)
    if proposal.settings and section:
        lines.append(f"  {section}: {_flow(proposal.settings)}")
    lines += [f"  # or {alternative}" for alternative in proposal.alternatives]
    return lines


def model_py(
    name: str, source_note: str, probe: ModelProbe, text: dict | None = None, states: States | None = None
) -> str:
    """The data stub: one row of every input read from data/, split into sample, calibration, eval; and a
    stateful model's streams."""
    shapes, dtypes, kinds, scalars, tops = {}, {}, {}, {}, {}
    fills = {t.name: t.fill or "normal" for t in probe.inputs}
    sizes = {axis.name: axis.opt for axis in probe.axes.values()}
    state_at = {n: i for n, i in states.batch_index.items()} if states else {}
    state_at.update({n: None for n, _ in states.pairs if n not in state_at} if states else {})
    for tensor in probe.inputs:
        dims = list(tensor.dims[1:] if probe.batched and tensor.dims else tensor.dims)
        if tensor.name in state_at:  # the batch axis anywhere: taken out here, put back per request
            dims = [d for d in tensor.dims if d != "batch"]
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
        if tensor.name in state_at:
            kinds[tensor.name] = "state"
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
        if kind == "state":
            how.append(f"- {tensor_name}: a state; zeros when a sequence starts, then the server keeps it")
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
        states=repr(state_at),
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
