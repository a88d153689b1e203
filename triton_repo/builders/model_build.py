"""One model's build: export, verify, precision, the target's choice and staging, its report section and
table rows. The pipeline runs it for every spec, in its own process or (`build -j N`) in worker
processes (workers.py); either way the result is one small record, merged in the specs' order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from triton_repo.builders.data import ModelData
from triton_repo.builders.export import export
from triton_repo.builders.precision.artifacts import ArtifactBuilder
from triton_repo.builders.precision.stage import run_precision
from triton_repo.builders.report import model_report
from triton_repo.builders.targets import StageJob, Target
from triton_repo.builders.verify import verify
from triton_repo.core.golden_streams import sequence_line
from triton_repo.core.log import failing_as, info, step, warn
from triton_repo.core.spec import LoadedSpec
from triton_repo.repo.config import parse_config
from triton_repo.repo.ensemble import (
    EnsembleData,
    raw_samples,
    stage_ensemble,
    step_tensors,
    tokenizer_path,
)
from triton_repo.repo.fused import is_fused
from triton_repo.repo.variant_choice import choose_variant
from triton_repo.repo.writer import StagedModel
from triton_repo.runtimes.isolated import Runtime


@dataclass(frozen=True)
class ModelJob:
    """Everything one model's build needs (picklable: a worker process gets it)."""

    loaded: LoadedSpec
    target: Target
    staging: Path  # the staging area beside the repository, shared: each model writes its own folders
    work_dir: Path  # the build's work dir; the model works in work_dir/<name>
    runtime: Runtime
    speed_seconds: float
    pairs_before: dict[str, str]  # the pair each precision served after the last build (report.served_before)
    ensemble_before: str | None  # the variant the last build's ensemble called

    @property
    def name(self) -> str:
        return self.loaded.spec.name


@dataclass(frozen=True)
class ModelBuilt:
    """What one model's build gives the publish and the report."""

    name: str
    staged: tuple[StagedModel, ...]
    refused: tuple[tuple[str, str], ...]  # (Triton model(s), one-line reason)
    pending: tuple[str, ...]  # _trt models staged without a plan
    report: dict  # BUILD_REPORT's section
    rows: tuple[dict, ...]  # one per artifact (the CLI's table and build.json)


def build_model(job: ModelJob, builder: ArtifactBuilder) -> ModelBuilt:
    """Export, verify, make and measure the precisions, choose and stage the served variants (and the
    ensemble) of one model. `builder`: the quantizers' child processes, shared by the models built here."""
    loaded, target, name = job.loaded, job.target, job.name
    model_work = job.work_dir / name
    with failing_as(f"{name}: build"):  # names the model if anything outside a step fails
        if loaded.spec.sequence is not None:
            info(f"{name}: {sequence_line(loaded)}")
        with step(f"{name}: export to ONNX and golden data"):
            exported = export(loaded, model_work)
        reference = "PyTorch" if loaded.spec.source.factory else "the source ONNX"
        streamed = " and its golden streams" if loaded.spec.sequence is not None else ""
        with step(
            f"{name}: verify ONNX Runtime vs {reference} at {exported.cases - 1} shapes + the sample{streamed}"
        ):
            verified = verify(loaded, exported.onnx_path, exported.golden_path)
        data = ModelData(loaded, model_work, exported.fingerprint)
        result = run_precision(
            loaded, exported, model_work, job.runtime, job.speed_seconds, builder, target.pairs, data
        )
        choices = target.choose(loaded, result, job.pairs_before)
        stage_job = StageJob(loaded, result, choices, job.staging, job.work_dir, job.runtime)
        done = target.stage(stage_job)
        staged = list(done.models)
        report = model_report(loaded, result, target, choices)
        if loaded.spec.ensemble is not None and target.no_ensemble:
            warn(f"{name}: {target.no_ensemble}")
        elif loaded.spec.ensemble is not None:
            staged += _stage_ensemble(stage_job, report, staged, data, job.ensemble_before)
        rows = _rows(name, exported, verified, report, reference)
    return ModelBuilt(name, tuple(staged), tuple(done.refused), tuple(done.pending), report, tuple(rows))


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
    fused = is_fused(loaded, parse_config(mine[variant].path / "config.pbtxt"))
    report["ensemble"] = {
        "triton_model": name,
        "variant": variant,
        "why": why,
        "form": "fused" if fused else "steps",
    }
    steps = f"{name}_preprocess, {variant}"
    if fused:
        steps = f"one model: pre-processing and {variant}'s ONNX"
    if loaded.spec.ensemble.postprocess is not None:  # the raw head decoded into labelled boxes
        report["ensemble"]["postprocess"] = f"{name}_postprocess"
        steps += f", then {name}_postprocess"
    with step(f"{name}: stage ensemble {name} (raw input, {steps}: {why})"):
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
