"""The in-process floor of a served variant: its ONNX file run in the serving environment's Python, by
the runtime (ONNX Runtime or OpenVINO, at the inference precision) its config names. For an ensemble, the
pipeline: its pre-processing step (the served preprocessing.py and tokenizer) on each raw request, then the
variant's ONNX file, one request at a time."""

from __future__ import annotations

import json
import subprocess
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from triton_repo.clients.bench.method import Latency

WORKER = Path(__file__).with_name("floor_worker.py")


@dataclass(frozen=True)
class Floor:
    """One request at a time through ONNX Runtime, no server: what the model itself costs."""

    runtime: str
    threads: int
    batch: int
    request_rate: float
    latency: Latency
    stable: bool
    windows: int
    measurements: tuple[float, ...] = ()  # inferences/s of every floor run (before and after the sweep)

    @property
    def inferences_per_s(self) -> float:
        return self.request_rate * self.batch


@dataclass(frozen=True)
class FloorPlan:
    """How the served model runs its ONNX file, read from its config.pbtxt."""

    onnx: Path
    threads: int
    runtime: str = "onnxruntime"  # or openvino
    precision: str = ""  # OpenVINO's inference precision
    step: str = ""  # an ensemble's pre-processing step (JSON, as its config states it), run first
    step_dir: Path | None = None  # where the step's preprocessing.py and tokenizer are


def best_floor(floors: list[Floor]) -> Floor:
    """The fastest of several floor runs: on a noisy machine the slowest run says more about the noise."""
    best = max(floors, key=lambda f: f.inferences_per_s)
    return replace(best, measurements=tuple(f.inferences_per_s for f in floors))


def floor_plan(config_path: Path, version_dir: Path) -> FloorPlan | None:
    """The ONNX file and thread count of a python-backend ONNX Runtime model; None for other backends."""
    from triton_repo.repo.config import parse_config

    config = parse_config(config_path)
    if config.backend != "python" or "onnx_file" not in config.parameters:
        return None
    parameters = {key: value.string_value for key, value in config.parameters.items()}
    onnx = version_dir / parameters["onnx_file"]
    threads = int(parameters.get("intra_op_threads") or 0)
    runtime = parameters.get("runtime", "onnxruntime")
    precision = parameters.get("inference_precision", "")
    return FloorPlan(onnx, threads, runtime, precision) if onnx.is_file() else None


def ensemble_floor_plan(repository: Path, manifest: dict, name: str) -> FloorPlan | None:
    """The pipeline of ensemble `name`: its step and the variant it calls (one fused model, or the step
    model and the variant); None with a postprocess step (its decoding is not measured in-process)."""
    from triton_repo.repo.config import parse_config

    def version_dir(model: str) -> Path:
        return repository / model / str(manifest[model].get("version", 1))

    entry = manifest[name]
    if entry.get("form") == "fused":
        step_model, runner = name, name
    elif len(entry.get("steps", ())) == 2:
        step_model, runner = entry["steps"]
    else:
        return None
    plan = floor_plan(repository / runner / "config.pbtxt", version_dir(runner))
    step = parse_config(repository / step_model / "config.pbtxt").parameters["step"].string_value
    return None if plan is None else replace(plan, step=step, step_dir=version_dir(step_model))


def measure_floor(
    python: Path,
    plan: FloorPlan,
    inputs: dict[str, np.ndarray] | list[dict[str, np.ndarray]],
    batch: int,
    window_s: float,
    max_windows: int,
    warmup_s: float,
) -> Floor:
    """Run the worker in `python` (the server's runtime); raises RuntimeError with its stderr on failure.
    `inputs`: one request's, or several requests' (a traffic sample), which the worker runs in turn."""
    with tempfile.TemporaryDirectory(prefix="bench-floor-") as tmp:
        feed = Path(tmp) / "inputs.npz"
        if isinstance(inputs, dict):
            np.savez(feed, **inputs)
        else:  # request i's input x as "i/x"
            np.savez(
                feed, **{f"{i}/{name}": a for i, request in enumerate(inputs) for name, a in request.items()}
            )
        step = [f"--step={plan.step}", f"--step-dir={plan.step_dir}"] if plan.step else []
        command = [
            str(python),
            str(WORKER),
            *step,
            f"--onnx={plan.onnx}",
            f"--inputs={feed}",
            f"--threads={plan.threads}",
            f"--runtime={plan.runtime}",
            f"--precision={plan.precision or 'f32'}",
            f"--window={window_s}",
            f"--max-windows={max_windows}",
            f"--warmup={warmup_s}",
        ]
        result = subprocess.run(command, capture_output=True, text=True, timeout=600 + window_s * max_windows)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"in-process floor failed in {python}: {last}")
    report = json.loads(result.stdout.strip().splitlines()[-1])
    return Floor(
        runtime=report["runtime"],
        threads=report["threads"],
        batch=batch,
        request_rate=report["request_rate"],
        latency=Latency(**report["latency_ms"]),
        stable=report["stable"],
        windows=report["windows"],
    )
