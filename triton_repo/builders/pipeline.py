"""The build pipeline: every model through export, verify and precision, staged for its target
(model_build.py, one model; in this process, or with `-j N` in worker processes: workers.py), then
published as one step. It owns the repository lock and staging area, the retirement of models no longer
built, the publish and the report; the CLI (and any other command) only chooses what to build and prints.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from triton_repo.builders.model_build import ModelBuilt, ModelJob, build_model
from triton_repo.builders.precision.artifacts import ArtifactBuilder
from triton_repo.builders.precision.timing import SPEED_SECONDS
from triton_repo.builders.report import read_report, served_before, write_report
from triton_repo.builders.targets import Target
from triton_repo.builders.workers import build_in_workers, worker_count
from triton_repo.core.fingerprint import package_version
from triton_repo.core.locks import repository_lock
from triton_repo.core.log import step
from triton_repo.core.references import refuse_placeholder_eval
from triton_repo.core.spec import PRECISIONS, LoadedSpec
from triton_repo.core.targets import every_variant_name
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
    jobs: int = 1,
) -> BuildResult:
    """Build every spec and publish the result into `repository` (loaded by the servers reading it).

    `repository` is a local folder or object storage (repo.repository.open_repository); its access is
    checked before anything is built. Nothing is published unless every model exported and verified;
    refused variants are left out (and retired if an earlier build published them), and listed in the
    result. `jobs` > 1 builds up to that many models at once, each in a worker process (workers.py);
    the publish stays one step here, and the result is the same as with 1, which builds in this process.
    """
    workers = worker_count(jobs, len(specs))
    for loaded in specs:
        refuse_placeholder_eval(loaded)  # a gate on random data: refused before any work
    repository.check_access()  # wrong credentials or a missing bucket fail before any work
    local = repository.stand_in
    staging = staging_root(local)
    # held to the end: the staging area is this build's alone
    with repository_lock(local):
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        before = read_report(repository)  # what the last build chose: kept unless beaten beyond the noise
        try:
            built = _build_models(
                [_job(loaded, target, staging, work_dir, runtime, speed_seconds, before) for loaded in specs],
                workers,
            )
            staged = [model for one in built for model in one.staged]
            staged_names = {model.name for model in staged}
            # Variants refused now, or no longer asked for, must not stay served from an earlier build.
            # So are the other target's models: one repository serves one target.
            retire = tuple(
                model
                for loaded in specs
                for model in _model_names(loaded.spec.name)
                if model not in staged_names
            )
            reports = {one.name: one.report for one in built}
            with step(repository.publish_step()):
                published = repository.publish(staged, _tool_versions(runtime), retire)
                write_report(repository, reports)
            served = repository.served_models()
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    rows = [dict(row) for one in built for row in one.rows]
    for row in rows:
        row["published"] = published.versions.get(row["triton_model"])
    refused = [entry for one in built for entry in one.refused]
    pending = [model for one in built for model in one.pending]
    return BuildResult(target.name, rows, reports, published, refused, pending, served)


def _job(loaded, target, staging, work_dir, runtime, speed_seconds, before) -> ModelJob:
    pairs_before, ensemble_before = served_before(before, loaded.spec.name, target.name)
    return ModelJob(loaded, target, staging, work_dir, runtime, speed_seconds, pairs_before, ensemble_before)


def _build_models(model_jobs: list[ModelJob], workers: int) -> list[ModelBuilt]:
    """Every model's record, in the specs' order: built one after the other in this process (the
    quantizers' child processes serve every model: importing ModelOpt or NNCF costs seconds), or in
    `workers` worker processes."""
    if workers > 1:
        return build_in_workers(model_jobs, workers)
    with ArtifactBuilder() as builder:
        return [build_model(job, builder) for job in model_jobs]


def _model_names(name: str) -> list[str]:
    """Every Triton model a spec can produce, on either target."""
    return [*every_variant_name(name, PRECISIONS), name, f"{name}_preprocess", f"{name}_postprocess"]


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
