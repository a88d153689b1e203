"""The gpu target's settings: TensorRT optimization profiles and builder options."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from triton_repo.core.spec.base import BATCH_AXIS, _Strict
from triton_repo.core.spec.shapes import ShapeRange


class GpuSettings(_Strict):
    """The gpu target: TensorRT engines (<name>_<prec>_trt) and ONNX Runtime on GPU (<name>_<prec>_onnx).

    profiles: TensorRT optimization profiles, each overriding some axes of `axes` (the others keep the
    spec's range); default one profile equal to the spec's axes. Several profiles let small and large
    batches each get kernels tuned for them; Triton picks the profile that fits a request's shapes.
    """

    profiles: Annotated[list[dict[str, ShapeRange]], Field(min_length=1, max_length=8)] | None = None
    builder_optimization_level: Annotated[int, Field(ge=0, le=5)] = 3  # TensorRT's default is 3
    version_compatible: bool = False  # plan runs on later TensorRT versions (slower; needs the server flag)
    hardware_compatibility_level: Literal["none", "ampere_plus", "same_compute_capability"] = "none"
    onnx_trt_accelerator: bool = True  # <name>_<prec>_onnx runs through ONNX Runtime's TensorRT EP
    instance_count: Annotated[int, Field(ge=1, le=16)] = 1  # instances per GPU, for both models

    @field_validator("profiles")
    @classmethod
    def _non_empty(cls, profiles: list[dict[str, ShapeRange]] | None) -> list[dict[str, ShapeRange]] | None:
        for index, profile in enumerate(profiles or []):
            if not profile:
                raise ValueError(f"profile {index} is empty: name at least one axis with min/opt/max")
        return profiles


def check_profiles(spec) -> None:
    """Each gpu profile names declared axes, stays inside their range, and batches <= max_batch_size."""
    for index, profile in enumerate(spec.gpu.profiles or []):
        for axis, shape_range in profile.items():
            where = f"gpu.profiles[{index}].{axis}"
            if axis not in spec.axes:
                raise ValueError(f"{where}: not a declared axis (declared: {', '.join(spec.axes) or 'none'})")
            declared = spec.axes[axis]
            if shape_range.min < declared.min or shape_range.max > declared.max:
                raise ValueError(
                    f"{where}: {shape_range.min}..{shape_range.max} is outside axes.{axis} "
                    f"{declared.min}..{declared.max}; widen axes.{axis} or narrow the profile"
                )
            if axis == BATCH_AXIS and spec.batched and shape_range.max > spec.effective_max_batch_size:
                raise ValueError(
                    f"{where}: max {shape_range.max} is larger than max_batch_size "
                    f"{spec.effective_max_batch_size}"
                )
