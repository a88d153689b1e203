"""`triton-repo qad MODEL`: quantization-aware distillation of the TensorRT INT8 artifact, against PTQ."""

from __future__ import annotations

from pathlib import Path

import click

from triton_repo.cli.options import artifact_runtime, model_argument, serve_env_option, work_dir_option


@click.command("qad")
@model_argument
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
    from triton_repo.builders.precision.qad_compare import compare_qad
    from triton_repo.core.errors import CheckFailed
    from triton_repo.core.log import info
    from triton_repo.core.spec import find_model

    loaded = find_model(model)
    overrides = {
        key: value
        for key, value in (("steps", steps), ("max_minutes", max_minutes), ("learning_rate", learning_rate))
        if value is not None
    }
    compared = compare_qad(loaded, work_dir, artifact_runtime(serve_env), overrides, ptq=not no_ptq)
    _print(loaded.spec.name, compared.rows, compared.kept, compared.stats, compared.shares)
    if compared.the_builds:
        info(f"{compared.artifact} is the build's int8 artifact (precision.int8.recover: qad)")
    else:
        info(
            f"trial artifact: {compared.artifact}; set precision.int8.recover: qad (and these settings) to "
            "build with it"
        )
    distilled = compared.distilled
    if not distilled.passed:
        raise CheckFailed(
            f"{loaded.spec.name}: the distilled INT8 artifact is outside the budget ({distilled.verdict}); try "
            "more --steps, more data.train, or `triton-repo search-precision --artifact int8` for nodes to keep"
        )


def _print(name: str, rows, kept, stats, shares) -> None:
    from rich.table import Table

    from triton_repo.core.log import out

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
