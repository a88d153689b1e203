"""Golden data: inputs and the FP32 PyTorch outputs for them, one case per verified shape."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

SAMPLE_CASE = "sample"
_SEPARATOR = "|"


@dataclass(frozen=True)
class GoldenCase:
    label: str  # "sample", or the axis sizes, e.g. "batch=1,seq=256"
    inputs: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]


def case_label(sizes: dict[str, int]) -> str:
    return ",".join(f"{axis}={size}" for axis, size in sizes.items()) or "static"


def save_golden(cases: list[GoldenCase], path: Path) -> None:
    arrays = {}
    for index, case in enumerate(cases):
        for kind, tensors in (("inputs", case.inputs), ("outputs", case.outputs)):
            for name, array in tensors.items():
                arrays[_SEPARATOR.join((f"{index:03d}", case.label, kind, name))] = array
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)


def load_golden(path: Path) -> list[GoldenCase]:
    grouped: dict[tuple[str, str], dict[str, dict[str, np.ndarray]]] = {}
    with np.load(path, allow_pickle=False) as archive:
        for key in archive.files:
            index, label, kind, name = key.split(_SEPARATOR, 3)
            grouped.setdefault((index, label), {"inputs": {}, "outputs": {}})[kind][name] = archive[key]
    return [
        GoldenCase(label=label, inputs=tensors["inputs"], outputs=tensors["outputs"])
        for (_, label), tensors in sorted(grouped.items())
    ]


def sample_case(cases: list[GoldenCase]) -> GoldenCase:
    return next(case for case in cases if case.label == SAMPLE_CASE)


def save_raw_golden(inputs: dict[str, np.ndarray], outputs: dict[str, np.ndarray], path: Path) -> None:
    """Golden data for a model fed raw client data: BYTES tensors (object arrays of bytes: raw inputs, or
    a postprocess step's class names) stored as one uint8 buffer with end offsets, so the file loads
    without pickle."""
    arrays = {}
    for side, tensors in (("", inputs), ("output-", outputs)):
        for name, array in tensors.items():
            if array.dtype == object:
                items = [bytes(v) for v in array.reshape(-1)]
                arrays[f"{side}bytes{_SEPARATOR}{name}"] = np.frombuffer(b"".join(items), dtype=np.uint8)
                arrays[f"{side}ends{_SEPARATOR}{name}"] = np.cumsum([len(v) for v in items], dtype=np.int64)
                arrays[f"{side}shape{_SEPARATOR}{name}"] = np.array(array.shape, dtype=np.int64)
            else:
                arrays[f"{'output' if side else 'array'}{_SEPARATOR}{name}"] = array
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)


def load_raw_golden(path: Path) -> GoldenCase:
    inputs, outputs, parts = {}, {}, {}
    with np.load(path, allow_pickle=False) as archive:
        for key in archive.files:
            kind, name = key.split(_SEPARATOR, 1)
            if kind == "array":
                inputs[name] = archive[key]
            elif kind == "output":
                outputs[name] = archive[key]
            else:
                side, _, part = kind.rpartition("-")
                parts.setdefault((side, name), {})[part] = archive[key]
    for (side, name), part in parts.items():
        buffer, ends = part["bytes"].tobytes(), part["ends"]
        starts = np.concatenate([[0], ends[:-1]]) if len(ends) else np.zeros(0, np.int64)
        items = [buffer[s:e] for s, e in zip(starts, ends, strict=True)]
        array = np.empty(len(items), dtype=object)
        array[:] = items
        (outputs if side == "output" else inputs)[name] = array.reshape(tuple(part["shape"]))
    return GoldenCase(label=SAMPLE_CASE, inputs=inputs, outputs=outputs)
