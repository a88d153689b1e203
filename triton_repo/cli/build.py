"""`triton-repo build`: export, verify and write the repository for every model spec."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import click

from triton_repo.cli.options import artifact_runtime, repository_option, serve_env_option, work_dir_option


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
    type=click.Choice(["auto", "cpu", "gpu"]),
    default="auto",
    show_default=True,
    envvar="TRITON_REPO_TARGET",
    show_envvar=True,
    help="cpu: python backend running ONNX Runtime. gpu: <name>_<prec>_trt (TensorRT plans, built only "
    "where an NVIDIA GPU and TensorRT are) and <name>_<prec>_onnx for the NGC tritonserver. "
    "auto: gpu when this machine has both, else cpu.",
)
@click.option(
    "--speed-seconds",
    type=click.FloatRange(0.5, 600),
    default=12.0,
    show_default=True,
    envvar="TRITON_REPO_SPEED_SECONDS",
    show_envvar=True,
    help="Length of each model's interleaved in-process timing of its artifacts (the report's speed "
    "columns and the ensemble's `variant: auto` choice).",
)
@repository_option
@work_dir_option
@serve_env_option("The serving environment: its ONNX Runtime runs every built artifact in the checks.")
def build(
    models: tuple[Path, ...],
    models_dir: Path,
    target: str,
    speed_seconds: float,
    repository: Path,
    work_dir: Path,
    serve_env: Path | None,
) -> None:
    """Build MODELS (folders holding model.yaml; default: every folder under models/) into the repository.

    Each model is exported to ONNX, checked against PyTorch at the min/opt/max of every dynamic axis,
    made in FP16 and INT8 (applying the model's precision.yaml), each variant measured against FP32 on
    the eval set, then staged beside the repository, validated, and only then moved into place. If a
    model fails to export or verify, nothing is published. Every built artifact runs in a worker process
    of the serving environment's ONNX Runtime, so a runtime crash refuses that variant with one line
    instead of ending the build. A variant outside its accuracy budget, or one the runtime crashed or
    failed on, is not published (and removed if an earlier build published it); the others are, and the
    build exits 1. The report goes to <repository>/BUILD_REPORT.md and .json.

    A changed model is published as its next version, and loaded by `triton-repo serve` when it runs
    on this repository (the previous version serves until the new one is READY; a load the server
    refuses puts every model back). With nothing changed, nothing is published.
    """
    from builders.engines import gpu_available
    from builders.export import export
    from builders.precision.stage import run_precision
    from builders.report import model_report, write_report
    from builders.repository.publish import publish, read_manifest
    from builders.repository.writer import staging_root
    from builders.verify import verify
    from triton_repo import server
    from triton_repo.locks import repository_lock
    from triton_repo.log import info, out, step, warn
    from triton_repo.spec import discover_specs, load_spec

    gpu = gpu_available() if target != "cpu" else None
    if target == "auto":
        target = "gpu" if gpu.available else "cpu"
    release = None
    if target == "gpu":
        from triton_repo.cli.options import PROJECT_ROOT
        from triton_repo.releases import read_pinned_release

        release = read_pinned_release(PROJECT_ROOT / ".env")  # a bad pin fails before any work
    runtime = artifact_runtime(serve_env)
    paths = list(models) or discover_specs(models_dir)
    specs = [load_spec(path) for path in paths]  # every spec is valid before anything is written
    names = [loaded.spec.name for loaded in specs]
    if len(set(names)) != len(names):
        raise click.UsageError(f"a model is named twice: {names}")

    staging = staging_root(repository)
    with repository_lock(repository):  # held to the end: the staging area is this build's alone
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        rows, staged, refused, reports, pending = [], [], [], {}, []
        try:
            for loaded in specs:
                spec = loaded.spec
                name = spec.name
                model_work = work_dir / name
                with step(f"{name}: export to ONNX and golden data"):
                    exported = export(loaded, model_work)
                with step(
                    f"{name}: verify ONNX Runtime vs {_reference(loaded)} at {exported.cases - 1} shapes + the sample"
                ):
                    verified = verify(loaded, exported.onnx_path, exported.golden_path)
                result = run_precision(loaded, exported, model_work, runtime, speed_seconds)
                if target == "gpu":
                    staged += _stage_gpu(
                        loaded, result, staging, work_dir, release, gpu, refused, pending, runtime
                    )
                else:
                    staged += _stage_cpu(loaded, result, staging, refused, runtime)
                reports[name] = model_report(loaded, result, target)
                if spec.ensemble is not None and target == "gpu":
                    warn(
                        f"{name}: the ensemble is not built on the gpu target (its pre-processing "
                        "needs packages the NGC tritonserver image lacks); clients call the variants"
                    )
                elif spec.ensemble is not None:
                    staged += _stage_ensemble(loaded, result, reports[name], staged, staging, runtime)
                rows += _rows(name, exported, verified, reports[name], _reference(loaded))
            staged_names = {model.name for model in staged}
            # Variants refused now, or no longer asked for, must not stay served from an earlier build.
            # So are the other target's models: one repository serves one target.
            retire = tuple(
                model
                for loaded in specs
                for model in _model_names(loaded.spec.name)
                if model not in staged_names
            )
            control = server.model_control(work_dir / "server", repository)
            where = f" and load into the server at {control.http_url}" if control else ""
            with step(f"publish into {repository}{where}"):
                published = publish(staged, repository, _tool_versions(), retire=retire, control=control)
                write_report(repository, reports)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    for row in rows:
        row["published"] = published.versions.get(row["triton_model"])
    _print_table(rows, out, target)
    work_dir.mkdir(parents=True, exist_ok=True)
    (work_dir / "build.json").write_text(
        json.dumps(
            {"repository": str(repository), "target": target, "models": rows, "reports": reports}, indent=2
        )
    )
    _print_publish(published, info)
    if pending:
        from builders.repository.gpu_writer import GPU_HOST_COMMANDS

        info(
            f"TensorRT plans not built here ({gpu.reason}); {len(pending)} _trt model(s) published "
            f"without a plan: {', '.join(pending)}"
        )
        info(f"On a GPU host, in this checkout: {' && '.join(GPU_HOST_COMMANDS)}")
    info(f"repository: {repository}   report: {repository / 'BUILD_REPORT.md'}")
    served = sorted(read_manifest(repository)["models"])
    info(f"served models: {', '.join(served)}")
    if refused:
        from triton_repo.errors import CheckFailed

        # "gru_tagger_fp16: fp16-cpu: ONNX Runtime ... crashed ...": the Triton model, then the refusal
        # line without its model name (it starts with the artifact), or the accuracy verdict
        details = "; ".join(f"{model}: {_without_name(why, names)}" for model, why in refused)
        raise CheckFailed(
            f"{len(refused)} variant(s) refused, not published ({details}); see BUILD_REPORT.md, "
            "`triton-repo debug-int8 MODEL` and `triton-repo search-precision MODEL`"
        )


def _without_name(why: str, names: list[str]) -> str:
    first, _, rest = why.partition(" ")
    return rest if first in names and rest else why


def _model_names(name: str) -> list[str]:
    """Every Triton model a spec can produce, on either target."""
    from triton_repo.spec import PRECISIONS

    variants = [f"{name}_{p}{suffix}" for p in PRECISIONS for suffix in ("", "_trt", "_onnx")]
    return [*variants, name, f"{name}_preprocess"]


def _stage_cpu(loaded, result, staging: Path, refused: list, runtime) -> list:
    """`<name>_<prec>` for every variant within its budget (python backend running ONNX Runtime)."""
    from builders.precision.artifacts import CPU_SERVED
    from builders.precision.stage import refusal
    from builders.repository.writer import served_tolerances, stage_cpu_model
    from builders.runtime.isolated import ArtifactRunFailed
    from triton_repo.log import step, warn

    name = loaded.spec.name
    staged = []
    for precision in loaded.spec.precisions:
        kind = CPU_SERVED[precision]
        variant = result.variants[kind]
        if not variant.passed:
            refused.append((f"{name}_{precision}", variant.verdict))
            continue
        try:
            with step(f"{name}: stage {name}_{precision} (cpu)"):
                staged.append(
                    stage_cpu_model(
                        loaded,
                        precision,
                        variant.artifact.path,
                        variant.sample,
                        served_tolerances(loaded, precision),
                        staging,
                        runtime,
                    )
                )
        except ArtifactRunFailed as error:
            line = refusal(name, kind, variant.artifact.path, error)
            warn(f"refused {line}")
            refused.append((f"{name}_{precision}", line))
    return staged


def _stage_gpu(
    loaded, result, staging: Path, work_dir: Path, release, gpu, refused: list, pending: list, runtime
):
    """`<name>_<prec>_trt` (only with a built plan; else listed in `pending`) and `<name>_<prec>_onnx`."""
    from builders.precision.artifacts import GPU_SERVED
    from builders.repository.gpu_writer import stage_gpu_models
    from builders.repository.writer import served_tolerances
    from triton_repo.log import step

    name = loaded.spec.name
    staged = []
    for precision in loaded.spec.precisions:
        variant = result.variants[GPU_SERVED[precision]]
        if not variant.passed:
            refused.append((f"{name}_{precision}_trt and _onnx", variant.verdict))
            continue
        plan = "build and check the TensorRT plan" if gpu.available else "no GPU: configs only"
        with step(f"{name}: stage {name}_{precision}_trt and _onnx (gpu; {plan})"):
            trt, onnx = stage_gpu_models(
                loaded,
                precision,
                variant.artifact.path,
                variant.sample,
                served_tolerances(loaded, precision),
                staging,
                release=release,
                gpu=gpu,
                engines_dir=work_dir / name / "engines" / precision,
                timing_cache_dir=work_dir / "timing-cache",
                runtime=runtime,
            )
        staged += [trt, onnx]
        if trt.manifest_entry["engine_pending"]:
            pending.append(trt.name)  # published with its config and no plan; the manifest says so
    return staged


def _print_publish(published, info) -> None:
    """What changed in the repository: new versions (and those kept for rollback), retired models."""
    if not published.versions and not published.retired:
        info("nothing changed: nothing published")
        return
    for name, version in sorted(published.versions.items()):
        kept = [v for v in published.kept[name] if v != version]
        also = f"; kept for rollback: {', '.join(map(str, kept))}" if kept else ""
        served = "loaded by the running server" if published.loaded else "served from the next start"
        info(f"published {name} version {version} ({served}{also})")
    for name in published.retired:
        info(f"retired {name} (removed{' and unloaded' if published.loaded else ''})")


def _stage_ensemble(loaded, result, report: dict, staged: list, staging: Path, runtime) -> list:
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
            runtime,
        )


def _reference(loaded) -> str:
    """What the FP32 export is verified against: PyTorch, or for an ONNX source the file as given."""
    return "PyTorch" if loaded.spec.source.factory else "the source ONNX"


def _rows(name: str, exported, verified, report: dict, reference: str) -> list[dict]:
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
                "reference": reference,
                "max_abs_diff": verified.worst_abs if fp32 else None,
                "within_budget": variant["within_budget"],
                "mb": variant["size_mb"],
                "b1_ms": variant["latency_ms_batch1"],
                "b8": variant["throughput_per_s"],
                "kept": len(variant["kept_nodes"]) + len(variant.get("rule_kept_nodes", [])),
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


def _print_table(rows: list[dict], console, target: str) -> None:
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
            status = f"[dim]not served ({target})[/dim]"
        elif not row["within_budget"]:
            status = "[bold red]REFUSED[/bold red]"
        else:
            status = f"published v{row['published']}" if row["published"] else "unchanged"
        if row["verified_cases"] is not None:
            check = (
                f"vs {row['reference']}: {row['verified_cases']} shapes, max abs {row['max_abs_diff']:.1e}; "
                f"export {row['export']}"
            )
        else:
            check = row["check"] if row["within_budget"] else f"[red]{row['check']}[/red]"
        table.add_row(
            row["model"],
            row["artifact"],
            row["triton_model"] or "—",
            check,
            "—" if row["mb"] is None else f"{row['mb']:.1f}",
            "—" if row["b1_ms"] is None else f"{row['b1_ms']:.2f}",
            "—" if row["b8"] is None else f"{row['b8']:.0f}",
            str(row["kept"]),
            status,
        )
    console.print(table)
