"""An ensemble that takes raw client data: the pre-processing step, the variant it calls, golden samples."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator

from triton_repo.core.spec.base import REFERENCE_PATTERN, TensorName, _Strict
from triton_repo.core.spec.sources import DataRef


class TokenizeStep(_Strict):
    """Text in (Triton BYTES, one UTF-8 string per batch row), token ids and attention mask out.

    Truncation to the largest size of the outputs' sequence axis, padding to the longest in the request.
    """

    kind: Literal["tokenize"]
    tokenizer: str  # a tokenizer.json in the model folder, or module:function returning its path
    input: TensorName = "TEXT"
    ids: str  # the model input that takes the token ids
    mask: str  # the model input that takes the attention mask
    pad_id: Annotated[int, Field(ge=0)] = 0


class ImageStep(_Strict):
    """Encoded image bytes in (PNG, JPEG; one per batch row), a normalised float CHW tensor out.

    Decode to RGB, resize the shorter side to `resize` (bilinear), centre-crop `size` x `size`, scale
    to 0..1, subtract `mean` and divide by `std` per channel.
    """

    kind: Literal["image"]
    input: TensorName = "IMAGE"
    output: str  # the model input that takes the tensor
    resize: Annotated[int, Field(ge=1)]
    size: Annotated[int, Field(ge=1)]
    mean: Annotated[list[float], Field(min_length=3, max_length=3)]
    std: Annotated[list[Annotated[float, Field(gt=0)]], Field(min_length=3, max_length=3)]


class PixelsStep(_Strict):
    """Raw uint8 pixels in (`dims` per batch row), float32 out: pixels times `scale`, in the model's shape."""

    kind: Literal["pixels"]
    input: TensorName = "PIXELS"
    output: str  # the model input that takes the tensor
    dims: Annotated[list[Annotated[int, Field(ge=1)]], Field(min_length=1)]
    scale: Annotated[float, Field(gt=0)] = 1.0


STEP_KINDS = ("tokenize", "image", "pixels")


class EnsembleSpec(_Strict):
    """An ensemble `<name>` that clients call with raw data: pre-processing step, then a served variant."""

    preprocess: Annotated[TokenizeStep | ImageStep | PixelsStep, Field(discriminator="kind")]
    variant: Literal["auto", "fp32", "fp16", "bf16", "int8"] = "auto"  # auto: the fastest published variant
    # Kept for existing specs: the labels of the first output (prefer outputs[0].labels, which every
    # variant gets too).
    labels: str | None = None
    samples: DataRef  # module:function returning the raw golden inputs (strings, bytes, or uint8 array)

    @field_validator("samples")
    @classmethod
    def _reference(cls, value: str) -> str:
        if not re.fullmatch(REFERENCE_PATTERN, value):
            raise ValueError(f"'{value}' must be module:function")
        return value


def check_ensemble(spec) -> None:
    if spec.ensemble is None:
        return
    step = spec.ensemble.preprocess
    if not spec.batched:
        raise ValueError("ensemble needs a batched model (a 'batch' axis): raw inputs come one per batch row")
    fed = [step.ids, step.mask] if isinstance(step, TokenizeStep) else [step.output]
    if len(set(fed)) != len(fed):
        raise ValueError(f"ensemble.preprocess: ids and mask must be two different inputs, got '{step.ids}'")
    names = [t.name for t in spec.inputs]
    for name in fed:
        if name not in names:
            raise ValueError(f"ensemble.preprocess feeds '{name}', which is not an input; inputs: {names}")
    if sorted(fed) != sorted(names):
        raise ValueError(
            f"ensemble.preprocess must feed every input; not fed: {sorted(set(names) - set(fed))}"
        )
    if step.input in names + [t.name for t in spec.outputs]:
        raise ValueError(
            f"ensemble.preprocess.input '{step.input}' is also a model tensor name; the ensemble's raw "
            "input needs its own name (e.g. TEXT, IMAGE, PIXELS)"
        )
    if isinstance(step, TokenizeStep):
        for tensor in (t for t in spec.inputs if t.name in fed):
            if len(tensor.dims) != 2 or not isinstance(tensor.dims[1], str):
                raise ValueError(
                    f"ensemble.preprocess (tokenize): input '{tensor.name}' must be [batch, <seq axis>] "
                    f"with a named sequence axis (texts are padded to the longest), got {tensor.dims}"
                )
    if spec.ensemble.variant != "auto" and spec.ensemble.variant not in spec.precisions:
        raise ValueError(
            f"ensemble.variant {spec.ensemble.variant} is not built; precision variants: {spec.precisions}"
        )
