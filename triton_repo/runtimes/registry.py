"""The CPU runtimes, one entry each: the one list the build, staging and the served model read.

An entry names the runtime as config.pbtxt's `runtime` parameter does, its module in triton_repo/runtimes/
(a loader and a runner, interface.CpuRuntime), the ways the build runs it (its runners) and the files a
version folder served with it must hold beside model.py. Adding a runtime is one entry here and one module.

This file is copied into every cpu version folder (the python backend template looks its runtime up here),
so it imports the standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass

# Shipped into every cpu version folder, whatever its runtime: the template reads this file.
SHARED_FILES = ("registry.py",)


@dataclass(frozen=True)
class RuntimeEntry:
    name: str  # config.pbtxt's `runtime` parameter, the worker's name for it
    label: str  # how people call it, in reports and refusals
    module: str  # its module in triton_repo/runtimes/: load, load_measured, version
    runners: tuple[tuple[str, str], ...]  # (runner name, inference precision) the build can choose
    ships: tuple[str, ...]  # files of triton_repo/runtimes/ copied beside model.py (the module first)

    @property
    def files(self) -> tuple[str, ...]:
        """Every file a version folder served with this runtime holds beside model.py."""
        return SHARED_FILES + self.ships


RUNTIMES = {
    entry.name: entry
    for entry in (
        RuntimeEntry(
            name="onnxruntime",
            label="ONNX Runtime",
            module="onnxruntime_cpu",
            runners=(("ort", ""),),
            ships=("onnxruntime_cpu.py",),
        ),
        RuntimeEntry(
            name="openvino",
            label="OpenVINO",
            module="openvino_cpu",
            runners=(("ov-f32", "f32"), ("ov-bf16", "bf16")),
            ships=("openvino_cpu.py",),
        ),
    )
}


def entry_of(name: str) -> RuntimeEntry:
    """The runtime called `name` in a config or a worker command; ValueError naming the known ones."""
    try:
        return RUNTIMES[name]
    except KeyError:
        known = ", ".join(sorted(RUNTIMES))
        raise ValueError(f"unknown runtime '{name}': the runtimes are {known}") from None
