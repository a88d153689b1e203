"""What probing a model learned: its tensors with the spec's dims, its axes with the ranges it accepts,
and every probe run. Written by probe.py, read by `inspect` (printed) and `init` (written as a spec)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class ValueStats:
    """What one output's values look like over the probe at the opt sizes (for the proposed metric)."""

    minimum: float
    maximum: float
    mean: float
    integer: bool  # every value is a whole number (class ids, counts, masks)
    rows_sum_to_one: bool  # the last axis sums to 1 per row (softmax probabilities)
    rows_unit_norm: bool  # the last axis has L2 norm 1 per row (normalised embeddings)


@dataclass(frozen=True)
class ProbedTensor:
    name: str
    dtype: str  # as the spec writes it: float32, float16, int64, int32, bool, uint8, string
    declared: tuple[int | str | None, ...] | None  # dims as the file declares them (None: no shape given)
    dims: tuple[int | str, ...]  # the spec's dims: sizes, or names of `ModelProbe.axes`
    note: str = ""  # e.g. "the file declares [batch, 80]; it returns [batch, 80, anchors]"
    stats: ValueStats | None = None  # outputs only
    value: float | None = None  # a 0-d input: the value it ran with (a sample rate); token ids: the largest
    fill: str = ""  # inputs: how the probe filled it (uniform, normal, pixels, tokens, small, ones, zeros,
    # positions, value, text): the data stub's placeholder fills it the same way


@dataclass(frozen=True)
class ProbedAxis:
    """One named axis of the spec: the sizes min/opt/max it was run at (all run), and how it was found."""

    name: str
    min: int
    opt: int
    max: int
    why: str  # one line: "dim_param 'N' of pixel_values and mask", "4x when height and width double"
    multiple_of: int = 1  # the model refused sizes that are not multiples of this
    output_only: bool = False  # an output dim that follows the inputs (anchors): clients never set it


@dataclass(frozen=True)
class ProbeRun:
    """One run of the model: the input shapes fed, and the output shapes it returned or its error."""

    inputs: dict[str, tuple[int, ...]]
    outputs: dict[str, tuple[int, ...]] | None
    error: str | None = None  # the runtime's one-line refusal, or "the runtime crashed (SIGSEGV)"


@dataclass(frozen=True)
class ModelProbe:
    source: Path
    inputs: tuple[ProbedTensor, ...]
    outputs: tuple[ProbedTensor, ...]
    axes: dict[str, ProbedAxis]
    batched: bool  # False: written with max_batch_size 0 (the file fixes its batch at 1, or has none)
    unbatched_reason: str = ""
    runs: tuple[ProbeRun, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)  # each decision, one line, for the printout
