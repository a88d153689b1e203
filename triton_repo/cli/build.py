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
    staged beside the repository, validated, and only then moved into place. If any model fails,
    nothing is published.
    """
    from builders.export import export
    from builders.repository.writer import publish, stage_cpu_model, staging_root
    from builders.verify import verify
    from triton_repo.log import info, out, step
    from triton_repo.spec import discover_specs, load_spec

    paths = list(models) or discover_specs(models_dir)
    specs = [load_spec(path) for path in paths]  # every spec is valid before anything is written
    names = [loaded.spec.name for loaded in specs]
    if len(set(names)) != len(names):
        raise click.UsageError(f"a model is named twice: {names}")

    staging = staging_root(repository)
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    rows, staged = [], []
    try:
        for loaded in specs:
            name = loaded.spec.name
            model_work = work_dir / name
            with step(f"{name}: export to ONNX and golden data"):
                exported = export(loaded, model_work)
            with step(f"{name}: verify ONNX Runtime vs PyTorch at {exported.cases - 1} shapes + the sample"):
                verified = verify(loaded, exported.onnx_path, exported.golden_path)
            with step(f"{name}: stage {name}_fp32 ({target})"):
                staged.append(stage_cpu_model(loaded, exported.onnx_path, exported.golden_path, staging))
            rows.append(
                {
                    "model": name,
                    "triton_model": f"{name}_fp32",
                    "export_seconds": round(exported.seconds, 2),
                    "export_cached": exported.cached,
                    "verified_cases": exported.cases,
                    "max_abs_diff": verified.worst_abs,
                    "onnx_mb": round(exported.onnx_path.stat().st_size / 1e6, 2),
                }
            )
        with step(f"publish into {repository}"):
            published = publish(staged, repository, _tool_versions())
        for row in rows:
            row["published"] = row["triton_model"] in published
    finally:
        shutil.rmtree(staging, ignore_errors=True)

    _print_table(rows, out)
    work_dir.mkdir(parents=True, exist_ok=True)
    (work_dir / "build.json").write_text(
        json.dumps({"repository": str(repository), "models": rows}, indent=2)
    )
    info(f"repository: {repository}   results: {work_dir / 'build.json'}")


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

    table = Table(title="Built models")
    for column in (
        "model",
        "Triton model",
        "verified shapes",
        "max abs diff vs PyTorch",
        "ONNX MB",
        "export",
        "repository",
    ):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["model"],
            row["triton_model"],
            str(row["verified_cases"]),
            f"{row['max_abs_diff']:.2e}",
            f"{row['onnx_mb']:.1f}",
            "cached" if row["export_cached"] else f"{row['export_seconds']:.1f} s",
            "published" if row["published"] else "unchanged",
        )
    console.print(table)
