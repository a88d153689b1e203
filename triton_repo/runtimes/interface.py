"""What a CPU runtime module is: a loader that opens an ONNX file and the runner (session) it returns.

Each runtime in registry.RUNTIMES is one module of this package with two loaders and a version:
`load`, the session the served model runs (the python backend template calls it from the copy of the
module in the version folder), and `load_measured`, the same session plus what only the build needs (a
runtime bug worked around for measuring, a precision this machine can give), used by the artifact worker.
The interface is structural (Protocols), so the modules do not import this file: they are copied into
every cpu version folder and imported there with only numpy and their runtime installed.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

from triton_repo.runtimes.registry import entry_of

if TYPE_CHECKING:
    import numpy as np


class Session(Protocol):
    """The runner: one loaded artifact. Triton runs one model instance's batches in turn, so a session
    needs no locking."""

    input_names: list[str]
    output_names: list[str]

    def run(self, names: Sequence[str] | None, feed: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """The outputs `names` (None: every output, in output_names order) for one feed of inputs."""
        ...


class CpuRuntime(Protocol):
    """A runtime module (onnxruntime_cpu, openvino_cpu). `threads` 0 lets the runtime choose; `precision`
    is an inference precision ("f32", "bf16") where the runtime has one, ignored where it has not."""

    def load(self, path: str, threads: int = 0, precision: str = "") -> Session:
        """The session the served model runs: the python backend template's loader."""
        ...

    def load_measured(self, path: str, threads: int = 0, precision: str = "") -> Session:
        """The session the build runs and measures the artifact with (in the artifact worker)."""
        ...

    def version(self) -> str | None:
        """This environment's version of the runtime, None when it is not installed."""
        ...


def runtime_module(name: str) -> CpuRuntime:
    """The module of the runtime called `name` (registry.RUNTIMES), imported from this package."""
    return importlib.import_module(f"{__package__}.{entry_of(name).module}")  # type: ignore[return-value]
