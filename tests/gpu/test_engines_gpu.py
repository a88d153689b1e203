"""On a GPU host: every zoo variant becomes a strongly typed TensorRT plan that matches golden, and the
compose deployment serves the built repository correctly over gRPC and HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import artifact_runtime

pytestmark = pytest.mark.gpu

ROOT = Path(__file__).resolve().parents[2]
ZOO = sorted(path.parent.name for path in (ROOT / "models").glob("*/model.yaml"))


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("gpu-work")


@pytest.mark.parametrize("model", ZOO)
def test_zoo_engines_match_golden(model, gpu, pinned_release, work):
    """Export, precision artifacts, then one plan per served precision, checked with TrtRunner against the
    artifact's outputs at the sample and at every profile's min/opt/max (build_engine raises otherwise)."""
    from triton_repo.builders.engines import build_plan
    from triton_repo.builders.export import export
    from triton_repo.builders.precision.pairs import choose_gpu
    from triton_repo.builders.precision.stage import run_precision
    from triton_repo.core.spec import load_spec
    from triton_repo.repo.gpu_writer import stage_gpu_models
    from triton_repo.repo.staging import StagingRequest
    from triton_repo.repo.writer import served_tolerances

    loaded = load_spec(ROOT / "models" / model / "model.yaml")
    exported = export(loaded, work / model)
    result = run_precision(loaded, exported, work / model, artifact_runtime())
    built = 0
    for precision in loaded.spec.precisions:
        choice = choose_gpu(precision, result.variants)
        if choice.pair is None:
            continue
        variant = result.variants[choice.pair]
        request = StagingRequest(
            loaded,
            precision,
            variant.artifact.path,
            variant.sample,
            served_tolerances(loaded, precision),
            work / "staging",
            artifact_runtime(),
            variant.runner,
            streams=variant.streams,
        )
        engines_dir = work / model / "engines" / precision
        engine = build_plan(request, pinned_release, gpu, engines_dir, work / "timing-cache")
        trt, _ = stage_gpu_models(request, pinned_release, engine, engines_dir)
        (summary,) = trt.manifest_entry["engines"]
        assert summary["tensorrt_version"] == pinned_release.tensorrt
        assert summary["compute_capability"] == gpu.compute_capability
        assert (trt.path / "1" / summary["plan"]).is_file()
        manifest = json.loads((work / model / "engines" / precision / "engine.json").read_text())
        assert manifest["check"] and all(row["passed"] for row in manifest["check"])
        assert manifest["timing_cache_sha256"] and manifest["strongly_typed"] is True
        built += 1
    assert built >= 1


def test_reproduce_script_rebuilds_a_loadable_plan(gpu, pinned_release, work):
    """reproduce.sh (polygraphy convert) rebuilds digits fp32 by hand into a plan TensorRT can load."""
    engines = work / "digits" / "engines" / "fp32"
    script = engines / "reproduce.sh"
    if not script.is_file():
        pytest.skip("digits fp32 engine not built by test_zoo_engines_match_golden in this session")
    plan = next(engines.glob("*.plan"))
    plan.unlink()
    subprocess.run(["bash", str(script)], check=True, cwd=ROOT)
    import tensorrt as trt

    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    assert runtime.deserialize_cuda_engine(plan.read_bytes()) is not None


def _ready(url: str) -> bool:
    try:
        return urllib.request.urlopen(url, timeout=2).status == 200
    except OSError:
        return False


def test_compose_deployment_serves_the_gpu_repository(gpu, compose_available, tmp_path):
    """build --target gpu, `docker compose up triton` on that repository, then `triton-repo infer`."""
    repository = tmp_path / "repository"
    cli = [str(Path(sys.executable).parent / "triton-repo")]
    subprocess.run(
        [
            *cli,
            "build",
            "models/digits",
            "--target",
            "gpu",
            "--repository",
            str(repository),
            "--work-dir",
            str(tmp_path / "build"),
        ],
        check=True,
        cwd=ROOT,
    )
    env = {**os.environ, "TRITON_REPO_DIR": str(repository)}
    subprocess.run(["docker", "compose", "up", "-d", "triton"], check=True, cwd=ROOT, env=env)
    try:
        deadline = time.monotonic() + 300
        while not _ready("http://127.0.0.1:8000/v2/health/ready"):
            assert time.monotonic() < deadline, (
                "tritonserver not ready within 300 s (docker compose logs triton)"
            )
            time.sleep(2)
        subprocess.run([*cli, "infer", "--repository", str(repository)], check=True, cwd=ROOT)
    finally:
        subprocess.run(["docker", "compose", "down"], cwd=ROOT, env=env)


def test_qad_int8_plan_is_built_checked_and_timed_against_fp16(gpu, pinned_release, work):
    """MiniLM's distilled INT8 artifact (precision.int8.recover: qad, FP16 elsewhere) becomes a strongly
    typed plan that matches its artifact; its speed and the FP16 plan's, measured interleaved, are written
    to qad-speed.json and printed (a report, not an assertion: speed is benchmarked, not tested)."""
    from polygraphy.backend.trt import EngineFromBytes, TrtRunner

    from triton_repo.builders.engines import build_plan
    from triton_repo.builders.export import export
    from triton_repo.builders.precision.results import speed_inputs
    from triton_repo.builders.precision.stage import run_precision
    from triton_repo.core.golden import load_golden, sample_case
    from triton_repo.core.spec import load_spec
    from triton_repo.repo.gpu_writer import stage_gpu_models
    from triton_repo.repo.staging import StagingRequest
    from triton_repo.repo.writer import served_tolerances

    loaded = load_spec(ROOT / "models" / "minilm" / "model.yaml")
    assert loaded.spec.precision.int8.recover == "qad"
    exported = export(loaded, work / "minilm-qad")
    result = run_precision(loaded, exported, work / "minilm-qad", artifact_runtime())
    plans = {}
    for precision, pair in (("int8", "int8"), ("fp16", "fp16")):
        variant = result.variants[pair]
        assert variant.passed, variant.verdict
        request = StagingRequest(
            loaded,
            precision,
            variant.artifact.path,
            variant.sample,
            served_tolerances(loaded, precision),
            work / "staging-qad",
            artifact_runtime(),
            variant.runner,
            streams=variant.streams,
        )
        engines_dir = work / "minilm-qad" / "engines" / precision
        engine = build_plan(request, pinned_release, gpu, engines_dir, work / "timing-cache")
        trt, _ = stage_gpu_models(request, pinned_release, engine, engines_dir)
        (summary,) = trt.manifest_entry["engines"]
        plans[precision] = trt.path / "1" / summary["plan"]
        manifest = json.loads((work / "minilm-qad" / "engines" / precision / "engine.json").read_text())
        assert manifest["strongly_typed"] is True and all(row["passed"] for row in manifest["check"])
    feed = speed_inputs(loaded, sample_case(load_golden(exported.golden_path)).inputs, 8)
    runners = {p: TrtRunner(EngineFromBytes(path.read_bytes())) for p, path in plans.items()}
    seconds = {p: 0.0 for p in runners}
    for runner in runners.values():
        runner.activate()
    try:
        for runner in runners.values():
            for _ in range(20):
                runner.infer(feed)
        for _ in range(10):  # interleaved rounds
            for precision, runner in runners.items():
                start = time.perf_counter()
                for _ in range(20):
                    runner.infer(feed)
                seconds[precision] += time.perf_counter() - start
    finally:
        for runner in runners.values():
            runner.deactivate()
    rates = {p: 200 * 8 / s for p, s in seconds.items()}
    (work / "qad-speed.json").write_text(json.dumps({"gpu": gpu.name, "inferences_per_s": rates}, indent=2))
    print(
        f"\nminilm on {gpu.name}, batch 8: QAD INT8 {rates['int8']:.0f} inf/s, FP16 {rates['fp16']:.0f} inf/s"
    )
