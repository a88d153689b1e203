"""The build pipeline: every model through export, verify and precision, staged for its target, then
published as one step. It owns the stage order, staging per target, ensembles, retirement of models no
longer built and the report; the CLI (and any other command) only chooses what to build and prints.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from triton_repo.builders.data import ModelData
from triton_repo.builders.export import export
from triton_repo.builders.precision.artifacts import ArtifactBuilder
from triton_repo.builders.precision.stage import run_precision
from triton_repo.builders.precision.timing import SPEED_SECONDS
from triton_repo.builders.report import model_report, read_report, served_before, write_report
from triton_repo.builders.targets import StageJob, Target
from triton_repo.builders.verify import verify
from triton_repo.core.fingerprint import package_version
from triton_repo.core.golden_streams import sequence_line
from triton_repo.core.locks import repository_lock
from triton_repo.core.log import failing_as, info, step, warn
from triton_repo.core.spec import PRECISIONS, LoadedSpec
from triton_repo.core.targets import every_variant_name
from triton_repo.repo.ensemble import (
    EnsembleData,
    choose_variant,
    raw_samples,
    stage_ensemble,
    step_tensors,
    tokenizer_path,
)
from triton_repo.repo.publish import Published
from triton_repo.repo.repository import Repository
from triton_repo.repo.writer import staging_root
from triton_repo.runtimes.isolated import Runtime


@dataclass
class BuildResult:
    target: str
    rows: list[dict]  # one per artifact of every model (the CLI's table and build.json)
    reports: dict[str, dict]  # per model: BUILD_REPORT's section
    published: Published
    refused: list[tuple[str, str]] = field(default_factory=list)  # (Triton model(s), one-line reason)
    pending: list[str] = field(default_factory=list)  # _trt models published without a plan
    served: list[str] = field(default_factory=list)  # every model in the repository afterwards

    def to_json(self, repository: Path | str) -> dict:
        return {
            "repository": str(repository),
            "target": self.target,
            "models": self.rows,
            "reports": self.reports,
        }


def build(
    specs: list[LoadedSpec],
    target: Target,
    repository: Repository,
    work_dir: Path,
    runtime: Runtime,
    speed_seconds: float = SPEED_SECONDS,
) -> BuildResult:
    """Build every spec and publish the result into `repository` (loaded by the servers reading it).

    `repository` is a local folder or object storage (repo.repository.open_repository); its access is
    checked before anything is built. Nothing is published unless every model exported and verified;
    refused variants are left out (and retired if an earlier build published them), and listed in the
    result.
    """
    repository.check_access()  # wrong credentials or a missing bucket fail before any work
    local = repository.stand_in
    staging = staging_root(local)
    # held to the end: the staging area is this build's alone; the quantizers' child processes serve
    # every model (importing ModelOpt or NNCF costs seconds)
    with repository_lock(local), ArtifactBuilder() as builder:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        rows, staged, reports, refused, pending = [], [], {}, [], []
        before = read_report(repository)  # what the last build chose: kept unless beaten beyond the noise
        try:
            for loaded in specs:
                name = loaded.spec.name
                model_work = work_dir / name
                with failing_as(f"{name}: build"):  # names the model if anything outside a step fails
                    if loaded.spec.sequence is not None:
                        info(f"{name}: {sequence_line(loaded)}")
                    with step(f"{name}: export to ONNX and golden data"):
                        exported = export(loaded, model_work)
                    reference = "PyTorch" if loaded.spec.source.factory else "the source ONNX"
                    streamed = " and its golden streams" if loaded.spec.sequence is not None else ""
                    with step(
                        f"{name}: verify ONNX Runtime vs {reference} at {exported.cases - 1} shapes + the "
                        f"sample{streamed}"
                    ):
                        verified = verify(loaded, exported.onnx_path, exported.golden_path)
                    data = ModelData(loaded, model_work, exported.fingerprint)
                    result = run_precision(
                        loaded, exported, model_work, runtime, speed_seconds, builder, target.pairs, data
                    )
                    pairs_before, ensemble_before = served_before(before, name, target.name)
                    choices = target.choose(loaded, result, pairs_before)
                    job = StageJob(loaded, result, choices, staging, work_dir, runtime)
                    done = target.stage(job)
                    staged += done.models
                    refused += done.refused
                    pending += done.pending
                    reports[name] = model_report(loaded, result, target, choices)
                    if loaded.spec.ensemble is not None and target.no_ensemble:
                        warn(f"{name}: {target.no_ensemble}")
                    elif loaded.spec.ensemble is not None:
                        staged += _stage_ensemble(job, reports[name], staged, data, ensemble_before)
                    rows += _rows(name, exported, verified, reports[name], reference)
            staged_names = {model.name for model in staged}
            # Variants refused now, or no longer asked for, must not stay served from an earlier build.
            # So are the other target's models: one repository serves one target.
            retire = tuple(
                model
                for loaded in specs
                for model in _model_names(loaded.spec.name)
                if model not in staged_names
            )
            with step(repository.publish_step()):
                published = repository.publish(staged, _tool_versions(runtime), retire)
                write_report(repository, reports)
            served = repository.served_models()
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    for row in rows:
        row["published"] = published.versions.get(row["triton_model"])
    return BuildResult(target.name, rows, reports, published, refused, pending, served)


def _model_names(name: str) -> list[str]:
    """Every Triton model a spec can produce, on either target."""
    return [*every_variant_name(name, PRECISIONS), name, f"{name}_preprocess", f"{name}_postprocess"]


def _stage_ensemble(job: StageJob, report: dict, staged: list, data: ModelData, before: str | None) -> list:
    """The ensemble `<name>` and its pre-processing step, calling the chosen published variant (`before`:
    the one the last build's ensemble called)."""
    loaded = job.loaded
    name = loaded.spec.name
    mine = {model.name: model for model in staged if model.source_model == name}
    if not mine:
        return []
    variant, why = choose_variant(loaded, report, list(mine), before)
    precision = mine[variant].precision
    report["ensemble"] = {"triton_model": name, "variant": variant, "why": why}
    post = ""
    if loaded.spec.ensemble.postprocess is not None:  # the raw head decoded into labelled boxes
        report["ensemble"]["postprocess"] = f"{name}_postprocess"
        post = f", then {name}_postprocess"
    with step(f"{name}: stage ensemble {name} (raw input, {name}_preprocess, {variant}: {why}{post})"):
        return stage_ensemble(
            job.request(precision),
            mine[variant].path,
            lambda: EnsembleData(  # what the spec's functions give, remembered: they may import torch
                data.remember("ensemble.samples", lambda: raw_samples(loaded, step_tensors(loaded)[0])),
                data.remember_file("ensemble.preprocess.tokenizer", lambda: tokenizer_path(loaded)),
            ),
        )


def _rows(name: str, exported, verified, report: dict, reference: str) -> list[dict]:
    """Table rows: one per artifact, the export facts on the FP32 row."""
    rows = []
    for variant in report["variants"]:
        fp32 = variant["artifact"] == "fp32" and variant["runtime"] == "ort"  # the verified reference
        rows.append(
            {
                "model": name,
                "artifact": variant["artifact"],
                "runtime": variant["runtime"],
                "triton_model": variant["triton_model"],
                "candidate_for": f"{name}_{variant['candidate_for']}" if variant["candidate_for"] else None,
                "check": variant["verdict"],
                "verified_cases": exported.cases if fp32 else None,
                "reference": reference,
                "max_abs_diff": verified.worst_abs if fp32 else None,
                "within_budget": variant["within_budget"],
                "mb": variant["size_mb"],
                "b1_ms": variant["latency_ms_batch1"],
                "b8": variant["throughput_per_s"],
                "speedup": variant["speedup_vs_fp32"],
                "kept": len(variant["kept_nodes"]) + len(variant.get("rule_kept_nodes", [])),
                "status": variant["status"],
                "export": ("cached" if exported.cached else f"{exported.seconds:.1f} s") if fp32 else "",
            }
        )
    return rows


def _tool_versions(runtime: Runtime) -> dict[str, str]:
    from triton_repo import __version__

    versions = {  # from the installed packages' metadata: importing torch costs seconds
        "triton-repo": __version__,
        "torch": package_version("torch"),
        "onnx": package_version("onnx"),
        "onnxruntime": package_version("onnxruntime-gpu", "onnxruntime"),
    }
    served = {f"{name} (serving)": version for name, version in runtime.versions().items() if version}
    return versions | served
