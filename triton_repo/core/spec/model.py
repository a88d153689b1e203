"""The whole spec, models/<name>/model.yaml: its sections, the checks that span them, and what the
pipeline derives from it (Triton dims, max_batch_size, the shapes to verify at)."""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from triton_repo.core.errors import SpecError
from triton_repo.core.spec.accuracy import Accuracy
from triton_repo.core.spec.base import BATCH_AXIS, NAME_PATTERN, PRECISIONS, _Strict
from triton_repo.core.spec.ensemble import EnsembleSpec, check_ensemble
from triton_repo.core.spec.gpu import GpuSettings, check_profiles
from triton_repo.core.spec.precision import PrecisionSettings, check_precision
from triton_repo.core.spec.sequence import SequenceSettings, StatePair, auto_pairs, check_sequence
from triton_repo.core.spec.shapes import (
    InputSpec,
    OutputSpec,
    ShapeRange,
    TensorSpec,
    check_formats_and_labels,
)
from triton_repo.core.spec.sources import DataSpec, Source
from triton_repo.core.spec.triton import TritonSettings


class ModelSpec(_Strict):
    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    description: str = ""
    source: Source
    axes: dict[str, ShapeRange] = {}
    max_batch_size: Annotated[int, Field(ge=0)] | None = None
    inputs: Annotated[list[InputSpec], Field(min_length=1)]
    outputs: Annotated[list[OutputSpec], Field(min_length=1)]
    data: DataSpec
    accuracy: Accuracy | None = None
    precision: PrecisionSettings = PrecisionSettings()
    triton: TritonSettings = TritonSettings()
    ensemble: EnsembleSpec | None = None
    gpu: GpuSettings = GpuSettings()
    sequence: SequenceSettings | None = None

    @field_validator("axes")
    @classmethod
    def _axis_names(cls, axes: dict[str, ShapeRange]) -> dict[str, ShapeRange]:
        for name in axes:
            if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
                raise ValueError(f"axis name '{name}' must be lower case letters, digits and '_'")
        return axes

    @model_validator(mode="after")
    def _consistent(self) -> ModelSpec:
        names = [t.name for t in self.inputs] + [t.name for t in self.outputs]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"tensor names must be unique across inputs and outputs; repeated: {duplicates}")
        if self.max_batch_size and BATCH_AXIS not in self.axes:
            raise ValueError(
                f"max_batch_size {self.max_batch_size} needs an axis '{BATCH_AXIS}' under 'axes'"
            )
        declared = ", ".join(self.axes) or "none"
        check_sequence(self)  # before the batch-first rule, which a paired state is exempt from
        states = self.state_tensors
        for kind, tensors in (("inputs", self.inputs), ("outputs", self.outputs)):
            for i, tensor in enumerate(tensors):
                for dim in tensor.dims:
                    if isinstance(dim, str) and dim not in self.axes:
                        raise ValueError(
                            f"{kind}[{i}] '{tensor.name}': dim '{dim}' is not a declared axis (declared: {declared})"
                        )
                if tensor.scalar and self.batched and kind == "outputs":
                    raise ValueError(
                        f"outputs[{i}] '{tensor.name}': dims [] (a scalar) in a batched model; Triton "
                        f"splits outputs by the batch: return one value per row (dims [{BATCH_AXIS}]) "
                        "or serve the model unbatched (max_batch_size: 0, no 'batch' axis)"
                    )
                if tensor.scalar or tensor.name in states:
                    continue  # a scalar input of a batched model: one value per request; a state: any axis
                if self.batched and tensor.dims[0] != BATCH_AXIS:
                    elsewhere = (
                        "; only a state may have it elsewhere: pair it with its next value under 'sequence:'"
                        if BATCH_AXIS in tensor.dims
                        else ""
                    )
                    raise ValueError(
                        f"{kind}[{i}] '{tensor.name}': the first dim must be '{BATCH_AXIS}' when max_batch_size "
                        f"> 0{elsewhere}"
                    )
                if BATCH_AXIS in tensor.dims[1:]:
                    raise ValueError(f"{kind}[{i}] '{tensor.name}': '{BATCH_AXIS}' may only be the first dim")
        if BATCH_AXIS in self.axes and self.max_batch_size is not None and self.max_batch_size > 0:
            largest, smallest = self.axes[BATCH_AXIS].max, self.axes[BATCH_AXIS].min
            if self.max_batch_size < smallest:
                raise ValueError(
                    f"max_batch_size {self.max_batch_size} is smaller than axes.batch.min {smallest}: "
                    "lower axes.batch.min or raise max_batch_size"
                )
            if self.max_batch_size > largest:
                raise ValueError(
                    f"max_batch_size {self.max_batch_size} is larger than axes.batch.max {largest}: "
                    "raise axes.batch.max or lower max_batch_size"
                )
        check_formats_and_labels(self)
        check_precision(self)
        check_ensemble(self)
        check_profiles(self)
        if self.triton.dynamic_batching is not None:
            for size in self.triton.dynamic_batching.preferred_batch_sizes:
                if size > self.effective_max_batch_size:
                    raise ValueError(
                        f"triton.dynamic_batching.preferred_batch_sizes: {size} is larger than "
                        f"max_batch_size {self.effective_max_batch_size}"
                    )
        return self

    def labels_file(self, output: str) -> str | None:
        """The labels file of an output: its own `labels`, or for the first output `ensemble.labels`."""
        tensor = next(o for o in self.outputs if o.name == output)
        if tensor.labels is not None:
            return tensor.labels
        if self.ensemble is not None and self.ensemble.labels and tensor is self.outputs[0]:
            return self.ensemble.labels
        return None

    @property
    def precisions(self) -> list[str]:
        """The variants to build, in PRECISIONS order (see PrecisionSettings.variants for the default)."""
        chosen = self.precision.variants
        if chosen is None:  # unbatched models: fp32 only (see check_precision); stateful: no int8
            gated = self.accuracy is not None and self.data.eval is not None and self.batched
            chosen = (
                ["fp32"]
                + (["fp16", "bf16"] if gated else [])
                + (["int8"] if gated and self.data.calibration and self.sequence is None else [])
            )
        return [p for p in PRECISIONS if p in chosen]

    @property
    def lower_precisions(self) -> list[str]:
        return [p for p in self.precisions if p != "fp32"]

    @property
    def accuracy_output(self) -> str:
        return (self.accuracy and self.accuracy.output) or self.outputs[0].name

    @property
    def batched(self) -> bool:
        """True when the first dim of every tensor is the batch axis (Triton max_batch_size > 0)."""
        if self.max_batch_size is None:
            return BATCH_AXIS in self.axes
        return self.max_batch_size > 0

    @property
    def effective_max_batch_size(self) -> int:
        """Triton's max_batch_size: the spec's value, else the batch axis max, else 0."""
        if not self.batched:
            return 0
        return self.max_batch_size or self.axes[BATCH_AXIS].max

    @property
    def per_request_inputs(self) -> list[str]:
        """Scalar inputs of a batched model: one value per request, not per row (clients send it as
        [rows, 1], every row the same; requests are batched together only when their values agree)."""
        return [t.name for t in self.inputs if t.scalar] if self.batched else []

    @property
    def state_pairs(self) -> list[StatePair]:
        """A stateful model's states: as the spec names them, else paired by name and shape."""
        if self.sequence is None:
            return []
        if self.sequence.state is not None:
            return list(self.sequence.state)
        return auto_pairs(self.inputs, self.outputs)

    @property
    def state_tensors(self) -> set[str]:
        """The inputs and outputs that carry state: never sent or returned by clients."""
        return {name for pair in self.state_pairs for name in (pair.input, pair.output)}

    @property
    def served_inputs(self) -> list[InputSpec]:
        """The inputs clients send (a state input is kept by the server)."""
        states = self.state_tensors
        return [t for t in self.inputs if t.name not in states]

    @property
    def served_outputs(self) -> list[OutputSpec]:
        states = self.state_tensors
        return [t for t in self.outputs if t.name not in states]

    def batch_axis(self, tensor: TensorSpec) -> int | None:
        """Where a tensor's batch axis is (0 but for a state such as [2, batch, 128]); None if none."""
        if not self.batched or BATCH_AXIS not in tensor.dims:
            return None
        return tensor.dims.index(BATCH_AXIS)

    def triton_dims(self, tensor: TensorSpec) -> list[int]:
        """Dims as Triton's config states them: batch dim dropped when batched, dynamic axes as -1."""
        batch_axis = self.batch_axis(tensor)
        dims = [d for axis, d in enumerate(tensor.dims) if axis != batch_axis]
        return [d if isinstance(d, int) else -1 for d in dims]

    def used_axes(self) -> list[str]:
        """Axes that appear in some input, in order of first appearance."""
        seen: list[str] = []
        for tensor in self.inputs:
            for dim in tensor.dims:
                if isinstance(dim, str) and dim not in seen:
                    seen.append(dim)
        return seen

    def shape_points(self) -> list[dict[str, int]]:
        """Axis sizes to verify at: every combination of min/opt/max of every dynamic input axis."""
        axes = self.used_axes()
        ranges = []
        for axis in axes:
            shape_range = self.axes[axis]
            high = shape_range.max
            if axis == BATCH_AXIS and self.batched:
                high = min(high, self.effective_max_batch_size)
            ranges.append(sorted({shape_range.min, min(shape_range.opt, high), high}))
        points = [dict(zip(axes, sizes, strict=True)) for sizes in itertools.product(*ranges)]
        return points or [{}]

    def concrete_shape(self, tensor: TensorSpec, sizes: dict[str, int]) -> tuple[int, ...]:
        return tuple(d if isinstance(d, int) else sizes[d] for d in tensor.dims)


class LoadedSpec(BaseModel):
    """A validated spec and the folder it came from (relative references resolve against it)."""

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    spec: ModelSpec
    path: Path

    @property
    def folder(self) -> Path:
        return self.path.parent

    def resolve_file(self, relative: str, field: str) -> Path:
        """A file named by the spec, which must exist and stay inside the model folder."""
        folder = self.folder.resolve()
        candidate = (folder / relative).resolve()
        if not candidate.is_relative_to(folder):
            raise SpecError(
                f"{self.path}: {field}: '{relative}' points outside the model folder {self.folder}"
            )
        if not candidate.is_file():
            raise SpecError(f"{self.path}: {field}: file '{relative}' does not exist in {self.folder}")
        return candidate
