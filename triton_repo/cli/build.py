"""`triton-repo build`: export, verify and write the repository for every model spec."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import click

from triton_repo.cli.options import repository_option, work_dir_option


@click.command()
@click.argument("models", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--models-dir",
    type=click.Path(path_type=Path),
    default=Path("models"),
    show_default=True,
    help="Where model folders are found when no MODELS are given.",
)
@click.option(
    "--target",
    type=click.Choice(["cpu"]),
    default="cpu",
    show_default=True,
    help="cpu: python backend running ONNX Runtime (the gpu target comes with TensorRT engines).",
)
@repository_option
@work_dir_option
def build(models: tuple[Path, ...], models_dir: Path, target: str, repository: Path, work_dir: Path) -> None:
    """Build MODELS (folders holding model.yaml; default: every folder under models/) into the repository.

    Each model is exported to ONNX, checked against PyTorch at the min/opt/max of every dynamic axis,
    made in FP16 and INT8 (applying the model's precision.yaml), each variant measured against FP32 on
    the eval set, then staged beside the repository, validated, and only then moved into place. If a
    model fails to export or verify, nothing is published. A variant outside its accuracy budget is not
    published (and removed if an earlier build published it); the others are, and the build exits 1.
    The report goes to <repository>/BUILD_REPORT.md and .json.
    """
    from builders.export import export
    from builders.precision.artifacts import CPU_SERVED
    from builders.precision.stage import run_precision
    from builders.report import model_report, write_report
    from builders.repository.writer import (
        publish,
        read_manifest,
        served_tolerances,
        stage_cpu_model,
        staging_root,
    )
    from builders.verify import verify
    from triton_repo.log import info, out, step
    from triton_repo.spec import PRECISIONS, discover_specs, load_spec

    paths = list(models) or discover_specs(models_dir)
    specs = [load_spec(path) for path in paths]  # every spec is valid before anything is written
    names = [loaded.spec.name for loaded in specs]
    if len(set(names)) != len(names):
        raise click.UsageError(f"a model is named twice: {names}")

    staging = staging_root(repository)
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    rows, staged, refused, reports = [], [], [], {}
    try:
        for loaded in specs:
            spec = loaded.spec
            name = spec.name
            model_work = work_dir / name
            with step(f"{name}: export to ONNX and golden data"):
                exported = export(loaded, model_work)
            with step(f"{name}: verify ONNX Runtime vs PyTorch at {exported.cases - 1} shapes + the sample"):
                verified = verify(loaded, exported.onnx_path, exported.golden_path)
            result = run_precision(loaded, exported, model_work)
            for precision in spec.precisions:
                variant = result.variants[CPU_SERVED[precision]]
                if not variant.passed:
                    refused.append((f"{name}_{precision}", variant))
                    continue
                with step(f"{name}: stage {name}_{precision} ({target})"):
                    staged.append(
                        stage_cpu_model(
                            loaded,
                            precision,
                            variant.artifact.path,
                            variant.sample,
                            served_tolerances(loaded, precision),
                            staging,
                        )
                    )
            reports[name] = model_report(loaded, result, target)
            if spec.ensemble is not None:
                staged += _stage_ensemble(loaded, result, reports[name], staged, staging)
            rows += _rows(name, exported, verified, reports[name])
        staged_names = {model.name for model in staged}
        # Variants refused now, or no longer asked for, must not stay served from an earlier build.
        retire = tuple(
            model
            for loaded in specs
            for model in [f"{loaded.spec.name}_{p}" for p in PRECISIONS]
            + [loaded.spec.name, f"{loaded.spec.name}_preprocess"]
            if model not in staged_names
        )
        with step(f"publish into {repository}"):
            published = publish(staged, repository, _tool_versions(), retire=retire)
            write_report(repository, reports)
    finally:
        shutil.rmtree(staging, ignore_errors=True)

    for row in rows:
        row["published"] = row["triton_model"] in published
    _print_table(rows, out)
    work_dir.mkdir(parents=True, exist_ok=True)
    (work_dir / "build.json").write_text(
        json.dumps({"repository": str(repository), "models": rows, "reports": reports}, indent=2)
    )
    info(f"repository: {repository}   report: {repository / 'BUILD_REPORT.md'}")
    served = sorted(read_manifest(repository)["models"])
    info(f"served models: {', '.join(served)}")
    if refused:
        from triton_repo.errors import CheckFailed

        details = "; ".join(f"{model}: {variant.accuracy.verdict}" for model, variant in refused)
        raise CheckFailed(
            f"{len(refused)} variant(s) outside the accuracy budget, not published ({details}); "
            "see BUILD_REPORT.md, `triton-repo debug-int8 MODEL` and `triton-repo search-precision MODEL`"
        )


def _stage_ensemble(loaded, result, report: dict, staged: list, staging: Path) -> list:
    """The ensemble `<name>` and its pre-processing step, calling the chosen published variant."""
    from builders.precision.artifacts import CPU_SERVED
    from builders.repository.ensemble import choose_variant, stage_ensemble
    from builders.repository.writer import served_tolerances
    from triton_repo.log import step

    name = loaded.spec.name
    mine = {model.name: model for model in staged if model.source_model == name}
    if not mine:
        return []
    variant, why = choose_variant(loaded, report, list(mine))
    precision = mine[variant].precision
    report["ensemble"] = {"triton_model": name, "variant": variant, "why": why}
    with step(f"{name}: stage ensemble {name} (raw input, {name}_preprocess, {variant}: {why})"):
        return stage_ensemble(
            loaded,
            mine[variant].path,
            result.variants[CPU_SERVED[precision]].artifact.path,
            served_tolerances(loaded, precision),
            staging,
        )


def _rows(name: str, exported, verified, report: dict) -> list[dict]:
    """Table rows: one per artifact, the export facts on the FP32 row."""
    rows = []
    for variant in report["variants"]:
        fp32 = variant["artifact"] == "fp32"
        rows.append(
            {
                "model": name,
                "artifact": variant["artifact"],
                "triton_model": variant["triton_model"],
                "check": variant["verdict"],
                "verified_cases": exported.cases if fp32 else None,
                "max_abs_diff": verified.worst_abs if fp32 else None,
                "within_budget": variant["within_budget"],
                "mb": variant["size_mb"],
                "b1_ms": variant["latency_ms_batch1"],
                "b8": variant["throughput_per_s"],
                "kept": len(variant["kept_nodes"]),
                "status": variant["status"],
                "export": ("cached" if exported.cached else f"{exported.seconds:.1f} s") if fp32 else "",
            }
        )
    return rows


def _tool_versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import torch

    from triton_repo import __version__

    return {
        "triton-repo": __version__,
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
    }


def _print_table(rows: list[dict], console) -> None:
    from rich.table import Table

    table = Table(title="Built models (accuracy vs FP32 on the eval set; speed in-process, ONNX Runtime CPU)")
    for column in (
        "model",
        "artifact",
        "Triton model",
        "check",
        "MB",
        "b1 ms",
        "b8 inf/s",
        "kept",
        "repository",
    ):
        table.add_column(column)
    for row in rows:
        if row["triton_model"] is None:
            status = "[dim]not served (cpu)[/dim]"
        elif not row["within_budget"]:
            status = "[bold red]REFUSED[/bold red]"
        else:
            status = "published" if row["published"] else "unchanged"
        if row["verified_cases"] is not None:
            check = f"vs PyTorch: {row['verified_cases']} shapes, max abs {row['max_abs_diff']:.1e}; export {row['export']}"
        else:
            check = row["check"] if row["within_budget"] else f"[red]{row['check']}[/red]"
        table.add_row(
            row["model"],
            row["artifact"],
            row["triton_model"] or "—",
            check,
            f"{row['mb']:.1f}",
            f"{row['b1_ms']:.2f}",
            f"{row['b8']:.0f}",
            str(row["kept"]),
            status,
        )
    console.print(table)
