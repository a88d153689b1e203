"""Where a model and its data come from: a PyTorch factory (and checkpoint) or an ONNX file; the sample,
calibration and eval data."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from triton_repo.core.spec.base import REFERENCE_PATTERN, _Strict


class Source(_Strict):
    """Where the model comes from: a PyTorch factory, or an existing ONNX file."""

    factory: Annotated[str, Field(pattern=REFERENCE_PATTERN)] | None = None
    onnx: str | None = None
    # A state_dict file in the model folder, loaded into the factory's module with
    # torch.load(weights_only=True) and load_state_dict(strict=True).
    checkpoint: Annotated[str, Field(min_length=1)] | None = None
    exporter: Literal["torchscript", "dynamo"] = "torchscript"
    opset: Annotated[int, Field(ge=13, le=21)] = 17

    @model_validator(mode="after")
    def _exactly_one(self) -> Source:
        if (self.factory is None) == (self.onnx is None):
            raise ValueError(
                "give exactly one of 'factory' (module:function) or 'onnx' (path to a .onnx file)"
            )
        if self.onnx is not None and not self.onnx.endswith(".onnx"):
            raise ValueError(f"onnx '{self.onnx}' must be a path ending in .onnx")
        if self.checkpoint is not None and self.factory is None:
            raise ValueError(
                f"checkpoint '{self.checkpoint}' needs a factory to load it into; an ONNX source carries "
                "its own weights"
            )
        return self


DataRef = Annotated[str, Field(min_length=1)]


class DataSpec(_Strict):
    """Each entry is `module:function` (returning {input name: numpy array}) or a path to an .npz file."""

    sample: DataRef
    calibration: DataRef | None = None
    eval: DataRef | None = None
    eval_labels: DataRef | None = None  # module:function returning int labels, or .npz with one array
    train: DataRef | None = None  # unlabeled rows for quantization-aware distillation, disjoint from eval
    # a stateful model's golden streams: per input that is not a state, its chunks as [steps, *dims]
    sequence: DataRef | None = None

    @field_validator("sample", "calibration", "eval", "eval_labels", "train", "sequence")
    @classmethod
    def _reference(cls, value: str | None) -> str | None:
        if value is not None and not (value.endswith(".npz") or re.fullmatch(REFERENCE_PATTERN, value)):
            raise ValueError(f"'{value}' must be module:function or a path ending in .npz")
        return value
