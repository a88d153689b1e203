"""The targets' names and what the floors below the pipeline need to know of them: which Triton models a
target's variant becomes, and which targets the local tritonserver (python backend only) can serve. The
pipeline's `builders.targets.Target` is the type that builds, chooses, stages and reports for each."""

from __future__ import annotations

CPU, GPU = "cpu", "gpu"
NAMES = (CPU, GPU)  # the targets a build can name (`--target auto` picks one of them)

# The Triton model names of one variant of model <name> at <precision>: `<name>_<precision><suffix>`
VARIANT_SUFFIXES = {CPU: ("",), GPU: ("_trt", "_onnx")}

# The local tritonserver (the nvidia-pytriton wheel's) has the python backend only.
SERVED_BY_LOCAL_SERVER = frozenset({CPU})


def local_server_serves(target: str) -> bool:
    """Whether the local tritonserver can serve a model a build made for `target`."""
    return target in SERVED_BY_LOCAL_SERVER


def variant_names(model: str, precision: str, target: str) -> tuple[str, ...]:
    """The Triton models one variant of `model` becomes on `target`."""
    return tuple(f"{model}_{precision}{suffix}" for suffix in VARIANT_SUFFIXES[target])


def every_variant_name(model: str, precisions: tuple[str, ...]) -> list[str]:
    """Every Triton model a variant of `model` can be, on any target (what a build retires)."""
    return [name for p in precisions for target in NAMES for name in variant_names(model, p, target)]
