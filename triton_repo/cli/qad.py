"""`triton-repo qad MODEL`: quantization-aware distillation of the TensorRT INT8 artifact, against PTQ."""

from __future__ import annotations

from pathlib import Path

import click

from triton_repo.cli.options import artifact_runtime, serve_env_option, work_dir_option


@click.command("qad")
@click.argument("model", type=click.Path(path_type=Path))
@click.option(
    "--steps", type=click.IntRange(0), default=None, help="Training steps [default: the spec's, 200]."
)
@click.option(
    "--max-minutes",
    type=click.FloatRange(0, min_open=True),
    default=None,
    help="Stop training after this long [default: the spec's, 20].",
)
@click.option("--learning-rate", type=click.FloatRange(0, 1, min_open=True), default=None)
@click.option("--no-ptq", is_flag=True, help="Skip building and measuring the PTQ artifact for comparison.")
@work_dir_option
@serve_env_option("The serving environment whose runtime measures the artifacts.")
def qad(
    model: Path,
    steps: int | None,
    max_minutes: float | None,
    learning_rate: float | None,
    no_ptq: bool,
    work_dir: Path,
    serve_env: Path | None,
) -> None:
    """Distil MODEL's TensorRT INT8 artifact (a name under models/, or a folder holding model.yaml).

    Quantizes every Linear and Conv of the PyTorch model with ModelOpt (INT8 weights and activations),
    calibrates on data.calibration, trains it to match the FP32 model on data.calibration and data.train
    (never data.eval), exports Q/DQ with FP16 for every other op, and measures it against FP32 on the
    eval set beside ModelOpt's ONNX PTQ of the same graph; precision.yaml's int8 nodes stay unquantized
    in both. With the spec's settings (recover: qad, no options) the result is the artifact the build
    uses, cached like the others; otherwise it is a trial under the work directory. Exits 1 when the
    distilled artifact is outside the accuracy budget.
    """
    from builders.precision.artifacts import ArtifactBuilder, make_artifact
    from builders.precision.qad import load_stats
    from builders.precision.workbench import open_workbench
    from triton_repo.errors import CheckFailed, SpecError
    from triton_repo.log import info, step
    from triton_repo.spec import find_model

    loaded = find_model(model)
    spec = loaded.spec
    if spec.source.factory is None:
        raise SpecError(f"{loaded.path}: QAD trains the PyTorch model; {spec.name} has an ONNX source")
    own = spec.precision.int8
    overrides = {
        key: value
        for key, value in (("steps", steps), ("max_minutes", max_minutes), ("learning_rate", learning_rate))
        if value is not None
    }
    settings = own.model_copy(update={"recover": "qad", "qad": own.qad.model_copy(update=overrides)})
    runtime = artifact_runtime(serve_env)
    with ArtifactBuilder() as builder:
        bench = open_workbench(loaded, work_dir, "int8", runtime, builder)
        kept = bench.plan.for_artifact("int8").node_names
        rows = []
        if not no_ptq:
            ptq_path = bench.scratch("int8", "ptq")
            with step(f"{spec.name}: ModelOpt ONNX PTQ ({len(kept)} nodes kept), measured on the eval set"):
                ptq = bench.evaluate("int8", kept, ptq_path, own.model_copy(update={"recover": "none"}))
            rows.append(("ONNX PTQ", ptq, ptq_path))
        the_builds = own.recover == "qad" and not overrides
        title = f"{spec.name}: QAD, {settings.qad.steps} steps ({len(kept)} nodes kept)"
        with step(title):
            if the_builds:
                from builders.data import DataSet
                from builders.fingerprint import sha256_file

                artifact = make_artifact(
                    "int8",
                    bench.fp32,
                    sha256_file(bench.fp32),
                    bench.work,
                    settings,
                    bench.plan,
                    DataSet.of(bench.calibration) if bench.calibration is not None else None,
                    builder,
                    bench.rule,
                    bench.qad,
                )
                qad_path = artifact.path
                if artifact.cached:
                    info(f"{qad_path.name}: cached (nothing it depends on changed)")
            else:
                qad_path = bench.scratch("int8", "qad")
                bench.build("int8", kept, qad_path, settings)
        with step(f"{spec.name}: QAD artifact measured on the eval set"):
            distilled = bench.measure("int8", qad_path)
        rows.append(("QAD", distilled, qad_path))
        stats, shares = load_stats(qad_path), _int8_shares(bench, rows)
        _print(spec.name, rows, kept, stats, shares)
        _write(bench.work / "qad.json", rows, kept, stats, shares)
    if the_builds:
        info(f"{qad_path} is the build's int8 artifact (precision.int8.recover: qad)")
    else:
        info(
            f"trial artifact: {qad_path}; set precision.int8.recover: qad (and these settings) to build with it"
        )
    if not distilled.passed:
        raise CheckFailed(
            f"{spec.name}: the distilled INT8 artifact is outside the budget ({distilled.verdict}); try more "
            "--steps, more data.train, or `triton-repo search-precision --artifact int8` for nodes to keep"
        )


def _write(path: Path, rows, kept, stats, shares) -> None:
    """The comparison as JSON beside the model's build files (<work-dir>/<name>/qad.json)."""
    import dataclasses
    import json

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
    from builders.golden import load_golden, sample_case
    from builders.precision.results import speed_inputs
    from builders.precision.roofline import int8_fraction, matrix_node_flops

    sample = sample_case(load_golden(bench.work / "golden.npz")).inputs
    node_flops = matrix_node_flops(bench.fp32, speed_inputs(bench.loaded, sample, 8))
    return {label: int8_fraction(node_flops, path) for label, _, path in rows}


def _print(name: str, rows, kept, stats, shares) -> None:
    from rich.table import Table

    from triton_repo.log import out

    table = Table(
        title=f"{name}: the TensorRT INT8 artifact, PTQ vs QAD (accuracy measured on ONNX Runtime CPU)"
    )
    for column in (
        "method",
        "accuracy vs FP32",
        "nodes kept",
        "matrix FLOPs in INT8",
        "high precision",
        "steps",
        "minutes",
    ):
        table.add_column(column)
    for label, accuracy, _path in rows:
        share = shares.get(label)
        qad = label == "QAD"
        table.add_row(
            label,
            accuracy.verdict if accuracy.passed else f"[red]{accuracy.verdict}[/red]",
            str(len(kept)),
            "—" if share is None else f"{100 * share:.0f}%",
            "FP16" if qad else "FP32",
            str(stats.steps) if qad and stats else "—",
            f"{stats.seconds / 60:.1f}" if qad and stats else "—",
        )
    out.print(table)
    if stats and stats.first_loss is not None:
        out.print(
            f"{stats.loss} loss {stats.first_loss:.4g} -> {stats.last_loss:.4g} over {stats.training_rows} "
            f"training rows; {stats.quantized_modules} modules quantized"
            + (f"; {stats.stopped}" if stats.stopped else "")
            + (f"; {stats.fp32_nodes} nodes left in FP32 by AutoCast" if stats.fp32_nodes else "")
        )
