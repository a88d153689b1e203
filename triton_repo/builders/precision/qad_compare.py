"""`triton-repo qad`'s workflow: distil the TensorRT INT8 artifact and measure it against FP32 on the eval
set, beside ModelOpt's ONNX PTQ of the same graph, with the same nodes kept."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from triton_repo.builders.data import DataSet
from triton_repo.builders.precision.accuracy import AccuracyResult
from triton_repo.builders.precision.artifacts import ArtifactBuilder, ArtifactRequest, make_artifact
from triton_repo.builders.precision.qad import QadStats, load_stats
from triton_repo.builders.precision.results import speed_inputs
from triton_repo.builders.precision.roofline import int8_fraction, matrix_node_flops
from triton_repo.core.errors import SpecError
from triton_repo.core.fingerprint import sha256_file
from triton_repo.core.golden import load_golden, sample_case
from triton_repo.core.log import info, step
from triton_repo.core.spec import LoadedSpec
from triton_repo.runtimes.isolated import Runtime


@dataclass(frozen=True)
class QadComparison:
    """PTQ (unless skipped) and QAD, each with its accuracy and artifact; written to <work>/<name>/qad.json."""

    rows: list[tuple[str, AccuracyResult, Path]]  # (method, accuracy vs FP32, artifact)
    kept: tuple[str, ...]  # the nodes precision.yaml keeps out of INT8, in both
    stats: QadStats | None
    shares: dict[str, float | None]  # method -> share of the matrix FLOPs run in INT8
    the_builds: bool  # the QAD artifact is the build's (the spec's settings, recover: qad)

    @property
    def distilled(self) -> AccuracyResult:
        return self.rows[-1][1]

    @property
    def artifact(self) -> Path:
        return self.rows[-1][2]


def compare_qad(
    loaded: LoadedSpec, work_dir: Path, runtime: Runtime, overrides: dict, ptq: bool = True
) -> QadComparison:
    """Distil with the spec's QAD settings updated by `overrides` (steps, max_minutes, learning_rate); with
    none and recover: qad, the artifact is the build's own (cached like the others), else a trial."""
    from triton_repo.builders.precision.workbench import open_workbench

    spec = loaded.spec
    if spec.source.factory is None:
        raise SpecError(f"{loaded.path}: QAD trains the PyTorch model; {spec.name} has an ONNX source")
    own = spec.precision.int8
    settings = own.model_copy(update={"recover": "qad", "qad": own.qad.model_copy(update=overrides)})
    with ArtifactBuilder() as builder:
        bench = open_workbench(loaded, work_dir, "int8", runtime, builder)
        kept = bench.choices.for_artifact("int8").node_names
        rows = []
        if ptq:
            ptq_path = bench.scratch("int8", "ptq")
            with step(f"{spec.name}: ModelOpt ONNX PTQ ({len(kept)} nodes kept), measured on the eval set"):
                measured = bench.evaluate("int8", kept, ptq_path, own.model_copy(update={"recover": "none"}))
            rows.append(("ONNX PTQ", measured, ptq_path))
        the_builds = own.recover == "qad" and not overrides
        with step(f"{spec.name}: QAD, {settings.qad.steps} steps ({len(kept)} nodes kept)"):
            if the_builds:
                request = ArtifactRequest(
                    "int8",
                    bench.fp32,
                    sha256_file(bench.fp32),
                    bench.work,
                    settings,
                    kept,
                    DataSet.of(bench.calibration) if bench.calibration is not None else None,
                    bench.rule,
                    bench.qad,
                )
                artifact = make_artifact(request, builder)
                qad_path = artifact.path
                if artifact.cached:
                    info(f"{qad_path.name}: cached (nothing it depends on changed)")
            else:
                qad_path = bench.scratch("int8", "qad")
                bench.build("int8", kept, qad_path, settings)
        with step(f"{spec.name}: QAD artifact measured on the eval set"):
            rows.append(("QAD", bench.measure("int8", qad_path), qad_path))
        comparison = QadComparison(rows, kept, load_stats(qad_path), _int8_shares(bench, rows), the_builds)
        _write(bench.work / "qad.json", rows, kept, comparison.stats, comparison.shares)
    return comparison


def _write(path: Path, rows, kept, stats, shares) -> None:
    """The comparison as JSON beside the model's build files (<work-dir>/<name>/qad.json)."""
    data = {
        "kept_nodes": list(kept),
        "methods": {
            label: {
                "artifact": str(artifact),
                "accuracy": dataclasses.asdict(accuracy),
                "passed": accuracy.passed,
                "int8_matrix_flops": shares.get(label),
            }
            for label, accuracy, artifact in rows
        },
        "qad": dataclasses.asdict(stats) if stats else None,
    }
    path.write_text(json.dumps(data, indent=2) + "\n")


def _int8_shares(bench, rows) -> dict[str, float | None]:
    sample = sample_case(load_golden(bench.work / "golden.npz")).inputs
    node_flops = matrix_node_flops(bench.fp32, speed_inputs(bench.loaded, sample, 8))
    return {label: int8_fraction(node_flops, path) for label, _, path in rows}
