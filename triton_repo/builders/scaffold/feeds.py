"""What each input is fed while probing, chosen from its dtype, rank, layout and name: images uniform in
[0, 1), other floats standard normal, token ids 1..99, masks ones, a sample rate 16000."""

from __future__ import annotations

import re
from dataclasses import dataclass

from triton_repo.builders.scaffold.axes import FLOATS, INTS
from triton_repo.builders.scaffold.onnx_io import DeclaredTensor

SAMPLE_RATE = re.compile(r"(?i)(^|[_/.:-])(sr|sample_?rate|sampling_?rate|rate)($|[_/.:-])")
MASK = re.compile(r"(?i)mask")
SEGMENT = re.compile(r"(?i)(token_?type|segment)")
POSITION = re.compile(r"(?i)position")
TOKENS = re.compile(r"(?i)(ids|token|input)")


@dataclass(frozen=True)
class Feed:
    """How the child process fills one input (numpy only, so it travels to the child as it is)."""

    name: str
    dtype: str  # numpy's name, or 'string'
    fill: str  # uniform | normal | pixels | tokens | small | ones | zeros | positions | value | text
    value: float = 0.0  # fill 'value': the scalar; fill 'tokens': the largest id
    description: str = ""  # how the input was fed, for its note


def choose_feed(tensor: DeclaredTensor, layout: str | None, vocab: int | None = None) -> Feed:
    name, dtype = tensor.name, tensor.dtype
    scalar = tensor.rank == 0
    if dtype == "string":
        return Feed(name, dtype, "text", description="fed the text 'probe'")
    if dtype == "bool":
        return Feed(name, dtype, "ones", description="fed True")
    if dtype in FLOATS:
        if scalar:
            return Feed(name, dtype, "value", 1.0, "a 0-d float scalar: run with 1.0")
        if layout:
            return Feed(name, dtype, "uniform", description=f"fed uniform [0, 1) (an {layout} image)")
        return Feed(name, dtype, "normal", description="fed standard normal values")
    if dtype not in INTS:
        return Feed(name, dtype, "zeros", description=f"fed zeros ({dtype})")
    if scalar:
        if SAMPLE_RATE.search(name):
            return Feed(
                name, dtype, "value", 16000, f"a 0-d {dtype} scalar: run with 16000, a typical sample rate"
            )
        return Feed(name, dtype, "value", 1, f"a 0-d {dtype} scalar: run with 1")
    if layout:
        return Feed(name, dtype, "pixels", description=f"fed pixels 0..255 (an {layout} image)")
    if MASK.search(name):
        return Feed(name, dtype, "ones", description="fed ones (a mask)")
    if SEGMENT.search(name):
        return Feed(name, dtype, "zeros", description="fed zeros (token types)")
    if POSITION.search(name):
        return Feed(name, dtype, "positions", description="fed 0, 1, 2, ... along its last dim (positions)")
    if TOKENS.search(name) or vocab:
        top = min(99, vocab - 1) if vocab else 99
        table = f" (it indexes a table of {vocab} rows)" if vocab else ""
        return Feed(name, dtype, "tokens", top, f"fed token ids 1..{top}{table}")
    return Feed(name, dtype, "small", description="fed small ints 0..9")
