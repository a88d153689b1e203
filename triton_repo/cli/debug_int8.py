"""`triton-repo debug-int8 MODEL`: which ONNX nodes add the error when a model is quantized to INT8."""

from __future__ import annotations

import json
from pathlib import Path

import click

from triton_repo.builders.precision.kinds import BY_NAME, SEARCHABLE
from triton_repo.cli.options import artifact_runtime, model_argument, serve_env_option, work_dir_option


@click.command("debug-int8")
@model_argument
@click.option(
    "--artifact",
    type=click.Choice(SEARCHABLE),
    default="int8",
    show_default=True,
    help="; ".join(f"{k}: {BY_NAME[k].role}" for k in SEARCHABLE)
    + ". The layer-wise comparison runs both graphs in ONNX Runtime (whose CPU has no BF16 kernels: the "
    "bf16 artifact cannot be compared this way).",
)
@click.option(
    "--apply-plan",
    "apply_choices",
    is_flag=True,
    help="Keep the nodes the model's precision.yaml names (what the build makes); default: quantize every node.",
)
@click.option("--rows", default=16, show_default=True, type=click.IntRange(1), help="Eval rows to compare.")
@click.option("--top", default=15, show_default=True, type=click.IntRange(1), help="Ranked nodes to print.")
@work_dir_option
@serve_env_option("The serving environment whose runtime measures the artifact on the eval set.")
def debug_int8(
    model: Path,
    artifact: str,
    apply_choices: bool,
    rows: int,
    top: int,
    work_dir: Path,
    serve_env: Path | None,
) -> None:
    """Compare every tensor of the FP32 and quantized graphs of MODEL (a name under models/, or a folder holding model.yaml).

    Runs both graphs with ONNX Runtime on the same eval rows with every tensor marked as an output
    (Polygraphy), matches tensors by name and ranks nodes by the error they add on top of their inputs.
    Writes layerwise.json and layerwise.png under <work-dir>/<model>/debug-<artifact>/.
    """
    from triton_repo.builders.precision.artifacts import ArtifactBuilder
    from triton_repo.core.spec import find_model

    loaded = find_model(model)
    with ArtifactBuilder() as builder:
        _debug(loaded, artifact, apply_choices, rows, top, work_dir, artifact_runtime(serve_env), builder)


def _debug(loaded, artifact: str, apply_choices: bool, rows: int, top: int, work_dir: Path, runtime, builder):
    from triton_repo.builders.precision.debug import isolated_layerwise_errors, write_chart
    from triton_repo.builders.precision.search import eval_feeds
    from triton_repo.builders.precision.workbench import open_workbench
    from triton_repo.core.log import info, out, step

    name = loaded.spec.name
    bench = open_workbench(loaded, work_dir, artifact, runtime, builder)
    chosen = bench.choices.for_artifact(artifact).node_names
    kept = chosen if apply_choices else ()
    if chosen and not apply_choices:
        info(
            f"{artifact} with every node quantized; --apply-plan keeps the {len(chosen)} nodes of precision.yaml"
        )
    quantized = bench.scratch(artifact, "debug")
    with step(f"{name}: build {artifact} ({len(kept)} nodes kept) and measure it on the eval set"):
        accuracy = bench.evaluate(artifact, kept, quantized)
    feeds = eval_feeds(bench.eval_inputs, bench.batch, rows)
    with step(f"{name}: every tensor of FP32 vs {artifact} on {rows} eval rows (Polygraphy, ONNX Runtime)"):
        report = isolated_layerwise_errors(name, artifact, bench.fp32, quantized, feeds)
    folder = work_dir / name / f"debug-{artifact}"
    folder.mkdir(parents=True, exist_ok=True)
    data = {
        "model": name,
        "artifact": artifact,
        "kept": list(kept),
        "accuracy": accuracy.verdict,
        **report.to_json(),
    }
    (folder / "layerwise.json").write_text(json.dumps(data, indent=2))
    write_chart(
        report, folder / "layerwise.png", f"{name}: FP32 vs {artifact}, error per node in graph order"
    )
    _print(report, top, out)
    jump = report.first_jump()
    status = "[green]within budget[/green]" if accuracy.passed else "[red]outside budget[/red]"
    info(f"{name} {artifact}: {accuracy.verdict} — {status}")
    info(f"tensors matched by name: {report.matched} of {report.fp32_tensors} FP32 tensors")
    if jump is not None:
        info(f"first node where the error jumps: {jump.node} ({jump.op_type}), adds {jump.added:.3g}")
    info(f"written: {folder / 'layerwise.json'}, {folder / 'layerwise.png'}")
    quantized.unlink(missing_ok=True)


def _print(report, top: int, console) -> None:
    from rich.table import Table

    table = Table(title=f"Nodes ranked by the error they add (top {top} of {len(report.nodes)})")
    for column in ("rank", "graph #", "node", "op", "adds", "error", "cosine", "max abs"):
        table.add_column(column, justify="right" if column not in ("node", "op") else "left")
    for rank, node in enumerate(report.ranked(top), 1):
        table.add_row(
            str(rank),
            str(node.index),
            node.node,
            node.op_type,
            f"{node.added:.3g}",
            f"{node.error:.3g}",
            f"{node.cosine:.4f}",
            f"{node.max_abs:.3g}",
        )
    console.print(table)
