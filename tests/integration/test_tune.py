"""`triton-repo tune` against the real tritonserver: candidates loaded beside the published model, measured,
unloaded; the winner applied through tuning.yaml and published by the next build."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.integration.conftest import build, run_cli, serve, write_tiny_model
from triton_repo.clients.tune.candidate import load_candidate, unload_candidate
from triton_repo.clients.tune.space import Batching, Candidate
from triton_repo.repo.config import parse_config
from triton_repo.repo.publish import read_manifest
from triton_repo.serve.model_control import ModelControl

pytestmark = pytest.mark.integration


def loaded_models(served) -> set[str]:
    """Every model the server has loaded (candidates loaded with a config override are not in the index)."""
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(f"127.0.0.1:{served.http_port}")
    try:
        return {m["name"] for m in client.get_inference_statistics()["model_stats"]}
    finally:
        client.close()


@pytest.fixture(scope="module")
def tiny_tuned(tmp_path_factory):
    """The tiny model built and served, then tuned with --apply for a few seconds."""
    base = tmp_path_factory.mktemp("tune")
    folder = write_tiny_model(base / "models")
    repository, work_dir = base / "model_repository", base / "build"
    build(folder, repository, work_dir)
    served = serve(repository, work_dir, extra=("--exit-timeout", "3"))
    common = [*served.common_args, *served.port_args, "--output", str(base / "results")]
    tuned = run_cli(
        "tune",
        "tiny",
        *common,
        "--slo-p99",
        "200",
        "--max-minutes",
        "0.15",
        "--max-concurrency",
        "2",
        "--apply",
    )
    yield folder, served, tuned, base
    run_cli("stop", "--work-dir", str(work_dir))


def test_tune_measures_candidates_beside_the_published_model_and_writes_the_winner(tiny_tuned):
    folder, served, tuned, base = tiny_tuned
    assert tuned.returncode == 0, tuned.stdout + tuned.stderr
    (results,) = list((base / "results").glob("*-tiny/results.json"))
    data = json.loads(results.read_text())
    assert data["winner"] and data["baseline"] and data["gain"] > 0
    assert len(data["candidates"]) >= 3 and {c["windows"] for c in data["candidates"]} == {"quick", "full"}
    assert all(c["instances"] * c["threads"] <= 2 for c in data["candidates"] if c["threads"])
    assert (results.parent / "pareto.png").stat().st_size > 1000 and (
        results.parent / "candidates.csv"
    ).is_file()
    assert "chosen: tiny_fp32" in tuned.stderr
    tuning = yaml.safe_load((folder / "tuning.yaml").read_text())
    assert tuning["triton"]["instance_count"] == data["winner"]["instances"]
    assert tuning["measured"]["winner"]["throughput_per_s"] == data["winner"]["throughput_per_s"]
    # no candidate is left behind on the server, and nothing was written into the repository
    assert loaded_models(served) == {"tiny_fp32"}
    assert sorted(p.name for p in served.repository.iterdir() if p.is_dir()) == ["tiny_fp32"]


def test_the_next_build_publishes_the_tuned_settings(tiny_tuned):
    folder, served, _, _ = tiny_tuned
    tuning = yaml.safe_load((folder / "tuning.yaml").read_text())["triton"]
    before = parse_config(served.repository / "tiny_fp32" / "config.pbtxt")
    committed = (before.instance_group[0].count, before.parameters["intra_op_threads"].string_value)
    result = build(folder, served.repository, served.work_dir)
    config = parse_config(served.repository / "tiny_fp32" / "config.pbtxt")
    assert config.instance_group[0].count == tuning["instance_count"]
    assert config.parameters["intra_op_threads"].string_value == str(tuning["intra_op_threads"])
    batching = tuning["dynamic_batching"]
    assert config.HasField("dynamic_batching") == (batching is not None)
    if batching is not None:
        assert (
            config.dynamic_batching.max_queue_delay_microseconds == batching["max_queue_delay_microseconds"]
        )
    changed = (tuning["instance_count"], str(tuning["intra_op_threads"])) != committed or config != before
    if changed:  # a config change: the next version alone, loaded by the running server
        assert "published tiny_fp32 version 2 (loaded by the running server" in result.stderr
        assert read_manifest(served.repository)["models"]["tiny_fp32"]["versions"] == [2]
    else:  # the committed settings won: nothing to publish
        assert "nothing changed: nothing published" in result.stderr


def test_a_candidate_the_server_refuses_is_skipped_with_its_reason(tiny_tuned):
    _, served, _, _ = tiny_tuned
    control = ModelControl(f"http://127.0.0.1:{served.http_port}", timeout=60)
    entry = read_manifest(served.repository)["models"]["tiny_fp32"]
    published = Path(served.repository) / "tiny_fp32"
    refused = Candidate("tiny_fp32", "fp32", 1, 1, Batching(100, (64,)))  # beyond max_batch_size 16
    reason = load_candidate(control, published, entry["version"], refused, "tiny_fp32__tune_bad")
    assert reason and "could not load 'tiny_fp32__tune_bad'" in reason
    good = Candidate("tiny_fp32", "fp32", 2, 1, Batching(None))
    assert load_candidate(control, published, entry["version"], good, "tiny_fp32__tune_good") is None
    assert loaded_models(served) == {"tiny_fp32", "tiny_fp32__tune_good"}  # beside, not in, the repository
    unload_candidate(control, "tiny_fp32__tune_good")
    assert loaded_models(served) == {"tiny_fp32"}


def test_an_slo_nothing_meets_is_one_line_with_the_best_p99_reached(tiny_tuned):
    _, served, _, base = tiny_tuned
    result = run_cli(
        "tune",
        "tiny",
        *served.common_args,
        *served.port_args,
        "--output",
        str(base / "results"),
        "--slo-p99",
        "0.001",
        "--max-minutes",
        "0.05",
        "--max-concurrency",
        "1",
    )
    assert result.returncode == 1
    line = result.stderr.strip().splitlines()[-1]
    assert "meets p99 <= 0.001 ms; the lowest p99 reached was" in line and "raise --slo-p99" in line


def test_bad_tune_options_are_one_line(tiny_tuned):
    _, served, _, _ = tiny_tuned
    unknown = run_cli("tune", "nope", *served.common_args, *served.port_args)
    assert (
        unknown.returncode == 2 and "'nope' is neither a published model nor a source model" in unknown.stderr
    )
    negative = run_cli("tune", "tiny", *served.common_args, *served.port_args, "--slo-p99", "-5")
    assert negative.returncode == 2 and "--slo-p99" in negative.stderr
