"""Shapes, declared once: named dynamic axes with min/opt/max, and tensors whose dims are fixed sizes or
axis names; an image input's layout and a classification output's labels."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StrictInt, StrictStr, field_validator, model_validator

from triton_repo.core.spec.base import DType, TensorName, _Strict


class ShapeRange(_Strict):
    """One named dynamic axis: the smallest, the most common and the largest size it takes."""

    min: Annotated[int, Field(ge=1)]
    opt: Annotated[int, Field(ge=1)]
    max: Annotated[int, Field(ge=1)]
    # sizes the model takes are multiples of this (a detector's side: 32); the served model refuses others
    multiple_of: Annotated[int, Field(ge=1)] = 1

    @model_validator(mode="after")
    def _ordered(self) -> ShapeRange:
        if not self.min <= self.opt <= self.max:
            raise ValueError(f"min {self.min}, opt {self.opt}, max {self.max} must satisfy min <= opt <= max")
        uneven = [
            f"{k} {v}"
            for k, v in (("min", self.min), ("opt", self.opt), ("max", self.max))
            if v % self.multiple_of
        ]
        if uneven:
            raise ValueError(
                f"{', '.join(uneven)} must be a multiple of multiple_of {self.multiple_of} (the sizes the model takes)"
            )
        return self

    def takes(self, size: int) -> bool:
        return self.min <= size <= self.max and size % self.multiple_of == 0


class Tolerance(_Strict):
    """|actual - expected| <= atol + rtol * |expected|, elementwise (numpy.allclose)."""

    atol: Annotated[float, Field(ge=0)] = 1e-4
    rtol: Annotated[float, Field(ge=0)] = 1e-3


Dim = StrictInt | StrictStr  # strict: YAML `yes`/`true` must not become the dim 1


class TensorSpec(_Strict):
    name: TensorName
    dtype: DType
    dims: list[Dim]  # [] is a scalar (0-d) tensor

    @property
    def scalar(self) -> bool:
        return not self.dims

    @field_validator("dims")
    @classmethod
    def _positive(cls, dims: list[Dim]) -> list[Dim]:
        for dim in dims:
            if isinstance(dim, int) and dim < 1:
                raise ValueError(
                    f"dim {dim} is not allowed: a dim is a positive integer or the name of an axis under 'axes'"
                )
        return dims


class InputSpec(TensorSpec):
    # The layout of an image input, written to config.pbtxt (`format: FORMAT_NCHW`): Triton's image clients
    # (image_client.py) refuse a model whose image input does not say it.
    format: Literal["NCHW", "NHWC"] | None = None


class OutputSpec(TensorSpec):
    tolerance: Tolerance = Tolerance()
    # A text file in the model folder, one class label per line, for Triton's classification extension
    # (`class_count`): written beside config.pbtxt of every variant and named as the output's label_filename.
    labels: Annotated[str, Field(min_length=1)] | None = None


def check_formats_and_labels(spec) -> None:
    """An image layout needs three dims besides the batch; labels need one class axis of fixed size."""
    for i, tensor in enumerate(spec.inputs):
        dims = spec.triton_dims(tensor)
        if tensor.format is not None and len(dims) != 3:
            raise ValueError(
                f"inputs[{i}] '{tensor.name}': format {tensor.format} needs 3 dims besides the batch "
                f"(channels, height, width in that layout), got {len(dims)}: {tensor.dims}"
            )
    labelled = [o for o in spec.outputs if o.labels is not None]
    ensemble_labels = spec.ensemble.labels if spec.ensemble else None
    first = labelled[0] if labelled else None
    if ensemble_labels and first is spec.outputs[0] and first.labels != ensemble_labels:
        raise ValueError(
            f"ensemble.labels '{ensemble_labels}' and outputs[0].labels '{first.labels}' "
            "differ; give the labels once, under outputs[0].labels"
        )
    for i, tensor in enumerate(spec.outputs):
        if spec.labels_file(tensor.name) is None:
            continue
        dims = spec.triton_dims(tensor)
        classes = [d for d in dims if d != 1]
        if len(classes) != 1 or classes[0] == -1:
            raise ValueError(
                f"outputs[{i}] '{tensor.name}': labels need one class axis of fixed size (other dims 1), "
                f"got {tensor.dims}; Triton's class_count ranks a vector of class scores"
            )
