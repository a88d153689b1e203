"""Optimization profiles from the spec's named axes (and `gpu.profiles`): the shapes a TensorRT plan accepts,
and from them Triton's max_batch_size, preferred batch sizes and warmup points. Derived once, used by the
gpu config writer and the engines stage."""

from __future__ import annotations

from dataclasses import dataclass

from triton_repo.core.spec import BATCH_AXIS, ModelSpec, ShapeRange


@dataclass(frozen=True)
class InputShapes:
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]


@dataclass(frozen=True)
class Profile:
    """One TensorRT optimization profile: the range of every used axis and the input shapes it gives."""

    axes: dict[str, ShapeRange]
    inputs: dict[str, InputShapes]

    def batch(self) -> ShapeRange | None:
        return self.axes.get(BATCH_AXIS)

    def points(self) -> list[dict[str, int]]:
        """The min, opt and max sizes of every axis together (duplicates removed, in that order)."""
        points: list[dict[str, int]] = []
        for level in ("min", "opt", "max"):
            sizes = {axis: getattr(shape_range, level) for axis, shape_range in self.axes.items()}
            if sizes not in points:
                points.append(sizes)
        return points

    def contains(self, shapes: dict[str, tuple[int, ...]]) -> bool:
        """True when every input shape lies between this profile's min and max shapes."""
        for name, shape in shapes.items():
            bounds = self.inputs.get(name)
            if bounds is None or len(shape) != len(bounds.min):
                return False
            if not all(lo <= size <= hi for lo, size, hi in zip(bounds.min, shape, bounds.max, strict=True)):
                return False
        return True

    def to_json(self) -> dict:
        return {
            name: {"min": list(s.min), "opt": list(s.opt), "max": list(s.max)}
            for name, s in self.inputs.items()
        }


def derive_profiles(spec: ModelSpec) -> list[Profile]:
    """The spec's axes (batch capped at max_batch_size), once per `gpu.profiles` entry with its overrides."""
    overrides = spec.gpu.profiles or [{}]
    profiles = []
    for override in overrides:
        axes = {}
        for axis in spec.used_axes():
            shape_range = override.get(axis, spec.axes[axis])
            if axis == BATCH_AXIS and spec.batched:
                cap = spec.effective_max_batch_size
                high = min(shape_range.max, cap)
                shape_range = ShapeRange(
                    min=min(shape_range.min, high), opt=min(shape_range.opt, high), max=high
                )
            axes[axis] = shape_range
        inputs = {}
        for tensor in spec.inputs:
            levels = [{a: getattr(r, level) for a, r in axes.items()} for level in ("min", "opt", "max")]
            if tensor.scalar:  # the adapted graph's input (triton_repo.repo.scalars): [rows] or [1]
                shapes = [(sizes[BATCH_AXIS],) if spec.batched else (1,) for sizes in levels]
            else:
                shapes = [spec.concrete_shape(tensor, sizes) for sizes in levels]
            axis = spec.batch_axis(tensor)
            if axis:  # a state with its batch axis inside: served batch first (triton_repo.repo.states)
                shapes = [(s[axis], *s[:axis], *s[axis + 1 :]) for s in shapes]
            inputs[tensor.name] = InputShapes(*shapes)
        profiles.append(Profile(axes, inputs))
    return profiles


def max_batch(profiles: list[Profile]) -> int:
    """Triton's max_batch_size for a plan: the largest batch any profile accepts (0 when unbatched)."""
    batches = [p.batch().max for p in profiles if p.batch() is not None]
    return max(batches, default=0)


def preferred_batch_sizes(profiles: list[Profile]) -> list[int]:
    """Each profile's opt batch: the sizes its kernels were tuned for, so the batcher should aim at them."""
    return sorted({p.batch().opt for p in profiles if p.batch() is not None})
