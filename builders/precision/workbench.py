"""What debug-int8 and search-precision share: a model's FP32 graph, its data, and a way to try a variant."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from builders.precision.accuracy import AccuracyResult, eval_batch_size, measure, run_onnx
from builders.precision.artifacts import ARTIFACT_FILES, build_artifact
from builders.precision.plan import PLAN_FILE, PrecisionPlan, check_nodes, load_plan
from builders.precision.stage import graph_node_names
from triton_repo.errors import SpecError
from triton_repo.log import step
from triton_repo.references import load_arrays, load_labels
from triton_repo.spec import LoadedSpec


@dataclass
class Workbench:
    loaded: LoadedSpec
    fp32: Path
    work: Path  # <work-dir>/<name>
    plan: PrecisionPlan
    op_types: dict[str, str]  # FP32 node name -> op type
    calibration: dict[str, np.ndarray] | None
    eval_inputs: dict[str, np.ndarray]
    labels: np.ndarray | None
    reference: dict[str, np.ndarray]  # FP32 outputs on the eval set

    @property
    def batch(self) -> int:
        return eval_batch_size(self.loaded.spec)

    def build(self, kind: str, kept: tuple[str, ...], output: Path) -> Path:
        return build_artifact(
            kind, self.fp32, output, self.loaded.spec.precision.int8, kept, self.calibration
        )

    def evaluate(self, kind: str, kept: tuple[str, ...], output: Path) -> AccuracyResult:
        """Build `kind` keeping `kept` in higher precision, then measure it against FP32 on the eval set."""
        self.build(kind, kept, output)
        outputs = [o.name for o in self.loaded.spec.outputs]
        variant = run_onnx(output, self.eval_inputs, self.batch, outputs)
        return measure(self.loaded.spec, self.reference, variant, self.labels)

    def scratch(self, kind: str, label: str) -> Path:
        folder = self.work / "precision-trials"
        folder.mkdir(parents=True, exist_ok=True)
        return folder / ARTIFACT_FILES[kind].replace(".onnx", f".{label}.onnx")


def open_workbench(loaded: LoadedSpec, work_dir: Path, kind: str) -> Workbench:
    """Export (cached) and verify the FP32 graph, load the data the artifact `kind` needs."""
    from builders.export import export
    from builders.verify import verify

    spec = loaded.spec
    if spec.accuracy is None or spec.data.eval is None:
        raise SpecError(
            f"{loaded.path}: {spec.name} has no accuracy/data.eval: lower precisions cannot be measured"
        )
    if kind.startswith("int8") and spec.data.calibration is None:
        raise SpecError(f"{loaded.path}: data.calibration is not set: INT8 needs calibration data")
    work = work_dir / spec.name
    with step(f"{spec.name}: export to ONNX (cached when unchanged)"):
        exported = export(loaded, work)
    with step(f"{spec.name}: verify ONNX Runtime vs PyTorch"):
        verify(loaded, exported.onnx_path, exported.golden_path)
    op_types = graph_node_names(exported.onnx_path)
    plan = load_plan(loaded.folder)
    check_nodes(plan, set(op_types), loaded.folder / PLAN_FILE)
    eval_inputs = load_arrays(loaded, "eval")
    labels = load_labels(loaded) if spec.accuracy.metric == "top1_drop" else None
    outputs = [o.name for o in spec.outputs]
    with step(f"{spec.name}: FP32 on the eval set"):
        reference = run_onnx(exported.onnx_path, eval_inputs, eval_batch_size(spec), outputs)
    calibration = load_arrays(loaded, "calibration") if kind.startswith("int8") else None
    return Workbench(
        loaded, exported.onnx_path, work, plan, op_types, calibration, eval_inputs, labels, reference
    )
