"""The precision stage for one model: build its artifacts, gate each on accuracy, time them all.

Results are cached in <work>/<name>/precision.json, keyed by the artifacts and the eval data, so a rebuild
with nothing changed neither re-quantizes nor re-measures.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from builders.export import ExportResult
from builders.fingerprint import sha256_file
from builders.golden import GoldenCase, load_golden, sample_case
from builders.precision.accuracy import AccuracyResult, eval_batch_size, measure, run_onnx
from builders.precision.artifacts import Artifact, arrays_digest, artifacts_for, make_artifact
from builders.precision.plan import PLAN_FILE, check_nodes, load_plan
from builders.precision.timing import THROUGHPUT_BATCH, Timing, measure_speed
from triton_repo.log import step
from triton_repo.references import inputs_at, load_arrays, load_labels
from triton_repo.spec import LoadedSpec

RESULTS_FILE = "precision.json"


@dataclass(frozen=True)
class VariantResult:
    artifact: Artifact
    accuracy: AccuracyResult | None  # None for fp32 (the reference)
    timing: Timing
    sample: GoldenCase  # the golden sample inputs and this artifact's own ONNX Runtime outputs

    @property
    def passed(self) -> bool:
        return self.accuracy is None or self.accuracy.passed


@dataclass(frozen=True)
class PrecisionResult:
    variants: dict[str, VariantResult]  # by artifact kind: fp32, fp16, int8, int8-cpu
    measured_at: str
    cached: bool
    op_types: dict[str, str]  # FP32 node name -> op type


def graph_node_names(onnx_path: Path) -> dict[str, str]:
    """Node name -> op type of an ONNX graph (top level)."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    return {node.name: node.op_type for node in model.graph.node}


def run_precision(loaded: LoadedSpec, exported: ExportResult, work_dir: Path) -> PrecisionResult:
    spec = loaded.spec
    fp32_onnx, golden_path = exported.onnx_path, exported.golden_path
    plan = load_plan(loaded.folder)
    op_types = graph_node_names(fp32_onnx)
    check_nodes(plan, set(op_types), loaded.folder / PLAN_FILE)
    calibration = load_arrays(loaded, "calibration") if "int8" in spec.precisions else None
    artifacts: dict[str, Artifact] = {}
    for kind in artifacts_for(spec.precisions):
        label = f"{spec.name}: {kind} artifact" + (
            f" ({len(plan.for_artifact(kind).keep)} nodes kept)" if kind != "fp32" else ""
        )
        with step(label):
            artifacts[kind] = make_artifact(
                kind, fp32_onnx, exported.onnx_sha256, work_dir, spec.precision.int8, plan, calibration
            )
    eval_inputs = load_arrays(loaded, "eval") if spec.lower_precisions else None
    labels = load_labels(loaded) if eval_inputs is not None and spec.accuracy.metric == "top1_drop" else None
    key = _results_key(loaded, exported, artifacts, eval_inputs, labels)
    cached = _load_results(work_dir, key, artifacts, golden_path, op_types)
    if cached is not None:
        return cached
    outputs = [o.name for o in spec.outputs]
    accuracy: dict[str, AccuracyResult | None] = {"fp32": None}
    if eval_inputs is not None:
        batch = eval_batch_size(spec)
        rows = len(next(iter(eval_inputs.values())))
        with step(f"{spec.name}: FP32 on the eval set ({rows} rows)"):
            reference = run_onnx(fp32_onnx, eval_inputs, batch, outputs)
        for kind, artifact in artifacts.items():
            if kind == "fp32":
                continue
            with step(f"{spec.name}: {kind} vs FP32 on the eval set ({spec.accuracy.metric})"):
                accuracy[kind] = measure(
                    spec, reference, run_onnx(artifact.path, eval_inputs, batch, outputs), labels
                )
    threads = spec.triton.intra_op_threads or os.cpu_count() or 1
    sample = sample_case(load_golden(golden_path))
    with step(
        f"{spec.name}: in-process ONNX Runtime speed, {threads} threads, {len(artifacts)} artifacts interleaved"
    ):
        timings = measure_speed(
            {kind: a.path for kind, a in artifacts.items()},
            speed_inputs(loaded, sample.inputs, 1),
            speed_inputs(loaded, sample.inputs, THROUGHPUT_BATCH),
            threads,
        )
    variants = {
        kind: VariantResult(artifact, accuracy[kind], timings[kind], _own_sample(artifact, sample, outputs))
        for kind, artifact in artifacts.items()
    }
    measured_at = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    result = PrecisionResult(variants, measured_at, False, op_types)
    _save_results(work_dir, key, result)
    return result


def speed_inputs(loaded: LoadedSpec, sample: dict[str, np.ndarray], batch: int) -> dict[str, np.ndarray]:
    """The golden sample at `batch` rows (capped at the model's max batch) and every other axis at opt."""
    spec = loaded.spec
    sizes = {axis: spec.axes[axis].opt for axis in spec.used_axes()}
    if spec.batched:
        sizes["batch"] = min(batch, spec.effective_max_batch_size)
    return inputs_at(loaded, sample, sizes)


def _own_sample(artifact: Artifact, sample: GoldenCase, outputs: list[str]) -> GoldenCase:
    """FP32 keeps the PyTorch outputs; a variant's served check expects what the variant itself computes."""
    if artifact.kind == "fp32":
        return sample
    batch = len(next(iter(sample.inputs.values())))
    return GoldenCase(sample.label, sample.inputs, run_onnx(artifact.path, sample.inputs, batch, outputs))


def _results_key(
    loaded: LoadedSpec, exported: ExportResult, artifacts: dict[str, Artifact], eval_inputs, labels
) -> str:
    """Everything the measurements depend on: artifacts, eval data and labels, golden sample, settings."""
    spec = loaded.spec
    payload = {
        "artifacts": {kind: artifact.key for kind, artifact in artifacts.items()},
        "fp32": exported.onnx_sha256,
        "eval": arrays_digest(eval_inputs),
        "labels": arrays_digest(None if labels is None else {"labels": labels}),
        "golden": sha256_file(exported.golden_path),
        "accuracy": spec.accuracy.model_dump(mode="json") if spec.accuracy else None,
        "threads": spec.triton.intra_op_threads,
        "axes": {name: r.model_dump() for name, r in spec.axes.items()},
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _save_results(work_dir: Path, key: str, result: PrecisionResult) -> None:
    data = {
        "key": key,
        "measured_at": result.measured_at,
        "variants": {
            kind: {
                "accuracy": asdict(v.accuracy) if v.accuracy else None,
                "timing": asdict(v.timing),
                "sample_outputs": f"{kind}.sample.npz",
            }
            for kind, v in result.variants.items()
        },
    }
    for kind, variant in result.variants.items():
        np.savez(work_dir / f"{kind}.sample.npz", **variant.sample.outputs)
    tmp = work_dir / (RESULTS_FILE + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(work_dir / RESULTS_FILE)


def _load_results(
    work_dir: Path, key: str, artifacts: dict[str, Artifact], golden_path: Path, op_types: dict[str, str]
) -> PrecisionResult | None:
    path = work_dir / RESULTS_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if data.get("key") != key or set(data["variants"]) != set(artifacts):
        return None
    sample = sample_case(load_golden(golden_path))
    variants = {}
    for kind, entry in data["variants"].items():
        with np.load(work_dir / entry["sample_outputs"], allow_pickle=False) as archive:
            outputs = {name: archive[name] for name in archive.files}
        variants[kind] = VariantResult(
            artifacts[kind],
            AccuracyResult(**entry["accuracy"]) if entry["accuracy"] else None,
            Timing(**entry["timing"]),
            GoldenCase(sample.label, sample.inputs, outputs),
        )
    return PrecisionResult(variants, data["measured_at"], True, op_types)
