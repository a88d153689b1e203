"""What debug-int8 and search-precision share: a model's FP32 graph, its data, and a way to try a variant."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from triton_repo.builders.precision.accuracy import AccuracyResult, eval_batch_size, measure
from triton_repo.builders.precision.artifacts import ArtifactBuilder, ArtifactJob, OpTypeRule, fp16_op_rule
from triton_repo.builders.precision.kinds import BY_NAME
from triton_repo.builders.precision.metrics.selfcheck import check_metric
from triton_repo.builders.precision.node_choices import (
    CHOICES_FILE,
    PrecisionChoices,
    check_nodes,
    load_choices,
)
from triton_repo.builders.precision.qad import QadJob, qad_job
from triton_repo.builders.precision.results import refusal
from triton_repo.builders.precision.stage import graph_node_names
from triton_repo.core.errors import CheckFailed, SpecError
from triton_repo.core.log import step
from triton_repo.core.references import load_arrays, load_labels
from triton_repo.core.spec import Int8Settings, LoadedSpec
from triton_repo.runtimes.isolated import ArtifactRunFailed, IsolatedSession, Runtime


@dataclass
class Workbench:
    loaded: LoadedSpec
    fp32: Path
    work: Path  # <work-dir>/<name>
    choices: PrecisionChoices  # precision.yaml
    op_types: dict[str, str]  # FP32 node name -> op type
    calibration: dict[str, np.ndarray] | None
    eval_inputs: dict[str, np.ndarray]
    labels: np.ndarray | None
    reference: dict[str, np.ndarray]  # FP32 outputs on the eval set
    runtime: Runtime  # what runs the artifacts (the serving environment's)
    rule: OpTypeRule  # op types the artifact keeps in higher precision whatever precision.yaml says
    builder: ArtifactBuilder  # its child processes live as long as the command
    qad: QadJob | None = None  # the TensorRT int8 artifact is distilled (precision.int8.recover: qad)

    @property
    def batch(self) -> int:
        return eval_batch_size(self.loaded.spec)

    @property
    def threads(self) -> int:
        return self.loaded.spec.triton.intra_op_threads

    def runner(self, kind: str):
        """How the artifact is measured: the runtime that serves it (OpenVINO for int8-ov)."""
        return BY_NAME[kind].runners[0]

    def build(
        self, kind: str, kept: tuple[str, ...], output: Path, settings: Int8Settings | None = None
    ) -> Path:
        """`settings`: the spec's precision.int8 unless given (`triton-repo qad` overrides QAD's)."""
        settings = settings or self.loaded.spec.precision.int8
        qad = self.qad if BY_NAME[kind].qad_high and settings.recover == "qad" else None
        return self.builder.build(
            ArtifactJob(kind, self.fp32, output, settings, kept, self.calibration, self.rule.op_types, qad)
        )

    def evaluate(
        self, kind: str, kept: tuple[str, ...], output: Path, settings: Int8Settings | None = None
    ) -> AccuracyResult:
        """Build `kind` keeping `kept` in higher precision, then measure it against FP32 on the eval set
        (in a worker process: a runtime crash makes a failing result that says so)."""
        self.build(kind, kept, output, settings)
        return self.measure(kind, output)

    def measure(self, kind: str, output: Path) -> AccuracyResult:
        """An artifact already built, measured against FP32 on the eval set."""
        outputs = [o.name for o in self.loaded.spec.outputs]
        try:
            with IsolatedSession(self.runtime, output, self.threads, self.runner(kind)) as session:
                variant = session.run(self.eval_inputs, outputs, self.batch)
        except ArtifactRunFailed as error:
            return AccuracyResult.not_run(
                self.loaded.spec, refusal(self.loaded.spec.name, kind, output, error)
            )
        return measure(self.loaded, self.reference, variant, self.labels)

    def scratch(self, kind: str, label: str) -> Path:
        folder = self.work / "precision-trials"
        folder.mkdir(parents=True, exist_ok=True)
        return folder / BY_NAME[kind].file.replace(".onnx", f".{label}.onnx")


def open_workbench(
    loaded: LoadedSpec, work_dir: Path, kind: str, runtime: Runtime, builder: ArtifactBuilder
) -> Workbench:
    """Export (cached) and verify the FP32 graph, load the data the artifact `kind` needs."""
    from triton_repo.builders.export import export
    from triton_repo.builders.verify import verify

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
    choices = load_choices(loaded.folder)
    check_nodes(choices, set(op_types), loaded.folder / CHOICES_FILE)
    eval_inputs = load_arrays(loaded, "eval")
    labels = load_labels(loaded, eval_inputs) if spec.data.eval_labels is not None else None
    outputs = [o.name for o in spec.outputs]
    with step(f"{spec.name}: FP32 on the eval set ({runtime.label})"):
        try:
            with IsolatedSession(runtime, exported.onnx_path, spec.triton.intra_op_threads) as session:
                reference = session.run(eval_inputs, outputs, eval_batch_size(spec))
        except ArtifactRunFailed as error:
            raise CheckFailed(f"{spec.name}: the FP32 model cannot be run: {error}") from None
    check_metric(loaded, reference, labels)
    calibration = load_arrays(loaded, "calibration") if kind.startswith("int8") else None
    fp16_kernels = runtime.fp16_kernel_ops() if BY_NAME[kind].cpu_kernels_only else frozenset()
    rule = fp16_op_rule(kind, set(op_types.values()), fp16_kernels, runtime.label)
    return Workbench(
        loaded,
        exported.onnx_path,
        work,
        choices,
        op_types,
        calibration,
        eval_inputs,
        labels,
        reference,
        runtime,
        rule,
        builder,
        qad_job(loaded, always=True) if kind == "int8" else None,
    )
