"""`triton-repo build`: export, verify and write the repository for every model spec."""

from __future__ import annotations

import json
from pathlib import Path

import click

from triton_repo.cli.option_groups import (
    BuildPace,
    StoreOptions,
    TargetChoice,
    option_group,
    store_option_group,
)
from triton_repo.cli.options import artifact_runtime, models_dir_option, serve_env_option, work_dir_option
from triton_repo.cli.store_options import store_repository_option
from triton_repo.core.targets import NAMES as TARGET_NAMES

BUILD_LOG = "build.log"  # in the work dir: every step, warning and unexpected traceback of the last build


@click.command()
@click.argument("models", nargs=-1, type=click.Path(path_type=Path))
@models_dir_option("Where model folders are found when no MODELS are given.")
@option_group(
    "targeting",
    TargetChoice,
    click.option(
        "--target",
        type=click.Choice(["auto", *TARGET_NAMES]),
        default="auto",
        show_default=True,
        envvar="TRITON_REPO_TARGET",
        show_envvar=True,
        help="cpu: python backend running ONNX Runtime. gpu: <name>_<prec>_trt (TensorRT plans, built only "
        "where an NVIDIA GPU and TensorRT are) and <name>_<prec>_onnx for the NGC tritonserver. "
        "auto: gpu when this machine has both, else cpu.",
    ),
    click.option(
        "--artifacts",
        type=click.Choice(["served", "all"]),
        default="served",
        show_default=True,
        envvar="TRITON_REPO_ARTIFACTS",
        show_envvar=True,
        help="served: build and measure only the (artifact, runtime) pairs the target serves, and the FP32 "
        "reference (on cpu, TensorRT's fp16, bf16 and int8 graphs are left out; on gpu, the cpu target's "
        "graphs and runtimes). all: every pair (the report then compares both targets' pairs).",
    ),
)
@option_group(
    "pace",
    BuildPace,
    click.option(
        "--speed-seconds",
        type=click.FloatRange(0.5, 600),
        default=12.0,
        show_default=True,
        envvar="TRITON_REPO_SPEED_SECONDS",
        show_envvar=True,
        help="Length of each model's interleaved in-process timing of its artifacts (the report's speed "
        "columns and the ensemble's `variant: auto` choice).",
    ),
    click.option(
        "-j",
        "--jobs",
        metavar="N",
        type=click.IntRange(min=1),
        default=1,
        show_default=True,
        envvar="TRITON_REPO_JOBS",
        show_envvar=True,
        help="Build up to N models at once, each in a worker process that loads its own PyTorch and ONNX "
        "Runtime (N times the memory); the publish stays one step. 1: every model in this process.",
    ),
)
@store_repository_option
@work_dir_option
@store_option_group
@serve_env_option("The serving environment: its ONNX Runtime runs every built artifact in the checks.")
def build(
    models: tuple[Path, ...],
    models_dir: Path,
    targeting: TargetChoice,
    pace: BuildPace,
    repository,
    work_dir: Path,
    store: StoreOptions,
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

    With -j N, up to N models build at once, each in a worker process (N times the memory); the publish
    stays one step, in this process, and the result is that of -j 1. The first model that fails, or
    whose worker dies, stops the others, and nothing is published.

    With --repository s3://..., the build publishes into object storage: each changed model's version is
    uploaded under a new number, read back and hashed, and only then named by its config.pbtxt; every
    --server (and `triton-repo serve` on that URL) then loads it in turn (see `triton-repo publish`).

    Exit codes: 0 all published, 1 a variant refused or a check failed, 2 a user error (the spec, a
    file, a port), 3 an unexpected failure: one line names the model and step, and the traceback goes
    to <work-dir>/build.log (which records every step of the last build).
    """
    from triton_repo.builders.pipeline import build as run_build
    from triton_repo.builders.targets import resolve_target
    from triton_repo.cli.build_output import print_result, refusals
    from triton_repo.cli.options import PROJECT_ROOT
    from triton_repo.cli.store_options import open_from_options
    from triton_repo.core.log import diagnostic, open_log
    from triton_repo.core.spec import discover_specs, load_spec

    open_log(work_dir / BUILD_LOG)
    # a bad pin fails before any work
    chosen = resolve_target(targeting.target, targeting.artifacts, PROJECT_ROOT / ".env")
    runtime = artifact_runtime(serve_env)
    specs = [load_spec(path) for path in list(models) or discover_specs(models_dir)]  # all valid first
    names = [loaded.spec.name for loaded in specs]
    if len(set(names)) != len(names):
        raise click.UsageError(f"a model is named twice: {names}")
    opened = open_from_options(repository, work_dir, store.aws_profile, store.servers, store.admin_header)
    result = run_build(specs, chosen, opened, work_dir, runtime, pace.speed_seconds, pace.jobs)
    work_dir.mkdir(parents=True, exist_ok=True)
    (work_dir / "build.json").write_text(json.dumps(result.to_json(str(repository)), indent=2))
    diagnostic("the results table", lambda: print_result(result, opened, chosen.note()), None)
    if result.refused:
        raise refusals(result, names)
