"""What staging one variant needs, as one record: every stager of a served model (the cpu target's python
backend model, the gpu target's `_trt` and `_onnx` models, an ensemble and its steps, a TensorRT plan)
takes a `StagingRequest` instead of a list of arguments restated at each call."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from triton_repo.core.golden import GoldenCase
from triton_repo.core.spec import LoadedSpec, Tolerance
from triton_repo.runtimes.isolated import ORT, Runner, Runtime


@dataclass(frozen=True)
class StagingRequest:
    """One variant of one model, to be staged for serving.

    `artifact` is the ONNX file served; `sample` holds the golden inputs and the outputs this artifact must
    give when served; `tolerances` the per-output limits `triton-repo infer` checks them with. `runtime`
    runs the staged graph in a worker process (a crash refuses the variant, not the build) with `runner`,
    the way the served model runs it; `runs` remembers those runs (run_cache.run_once). `streams`: a
    stateful model's golden streams as this artifact answers them (default: the export's).
    """

    loaded: LoadedSpec
    precision: str
    artifact: Path
    sample: GoldenCase
    tolerances: dict[str, Tolerance]
    staging: Path  # the staging area beside the repository
    runtime: Runtime
    runner: Runner = ORT
    runs: Path | None = None
    streams: Path | None = None

    @property
    def model(self) -> str:
        """The spec's name."""
        return self.loaded.spec.name
