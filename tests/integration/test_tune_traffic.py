"""`triton-repo tune --traffic` on the served zoo: candidates called the way clients call the model on
their own inputs (texts through a fused-model candidate, photos through a candidate ensemble), measured
without a failed request, unloaded after, and the traffic named in the results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.conftest import run_cli
from tests.integration.test_tune import loaded_models

pytestmark = pytest.mark.integration

# The quickest tune: one variant (the FP32 reference, by a budget only it meets), one core (two threading
# options), a search out of time after its first candidate, two clients at most. Behaviour, not speed.
QUICK = ["--max-minutes", "0.05", "--max-concurrency", "2", "--cores", "1", "--slo-p99", "2000"]


def tune(served, output: Path, model: str, traffic: Path, *args: str):
    return run_cli(
        "tune",
        model,
        "--traffic",
        str(traffic),
        *QUICK,
        *args,
        "--output",
        str(output),
        *served.common_args,
        *served.port_args,
    )


def results_of(output: Path, model: str) -> dict:
    (results,) = output.glob(f"*-{model}/results.json")
    return json.loads(results.read_text())


def assert_measured_on_the_traffic(result, data: dict, suffix: str) -> None:
    assert result.returncode == 0, result.stdout + result.stderr
    assert data["candidates"] and data["winner"]
    for row in data["candidates"]:
        assert row["failure"] == "" and row["errors"] == 0 and row["throughput_per_s"] > 0, row
        assert row["model"].startswith(f"{row['variant']}__tune") and row["model"].endswith(suffix)
    # rich wraps long lines: compare the words
    assert " ".join(f"chosen on {data['traffic']['label']}".split()) in " ".join(result.stderr.split())


def test_tune_on_text_lines_measures_fused_candidates_running_each_variant(zoo_served, tmp_path):
    sentences = tmp_path / "sentences.txt"
    sentences.write_text(
        "\n".join(["A short one.", "Two words", "A longer sentence about serving models on CPUs."] * 3)
    )
    result = tune(
        zoo_served, tmp_path / "out", "minilm", sentences, "--batch", "2", "--min-accuracy", "0.999"
    )
    data = results_of(tmp_path / "out", "minilm")
    assert_measured_on_the_traffic(result, data, "_fused")
    assert data["traffic"]["label"].startswith("traffic=sentences.txt (9 rows")
    assert (data["traffic"]["rows"], data["traffic"]["batch"], data["traffic"]["sent_to"]) == (
        9,
        2,
        "fused model",
    )
    # the budget leaves the FP32 variant only: the fused model (published with another variant) ran it
    assert {row["variant"] for row in data["candidates"]} == {"minilm_fp32"}
    assert data["options"]["traffic"] == str(sentences)
    assert not any("__tune" in name for name in loaded_models(zoo_served))


def test_tune_on_photos_measures_candidate_ensembles_of_the_published_preprocessing(zoo_served, tmp_path):
    import skimage.data
    from PIL import Image

    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("chelsea", "coffee"):
        Image.fromarray(getattr(skimage.data, name)()).convert("RGB").save(photos / f"{name}.jpg")
    result = tune(zoo_served, tmp_path / "out", "mobilenet_v2", photos, "--min-accuracy", "-1")
    data = results_of(tmp_path / "out", "mobilenet_v2")
    assert_measured_on_the_traffic(result, data, "_ens")
    assert data["traffic"]["label"].startswith("traffic=photos (2 rows")
    assert data["traffic"]["sent_to"] == "ensemble"
    assert {row["variant"] for row in data["candidates"]} == {"mobilenet_v2_fp32"}
    assert not any("__tune" in name for name in loaded_models(zoo_served))


def test_text_for_the_image_model_is_refused_in_one_line_before_any_candidate(zoo_served, tmp_path):
    lines = tmp_path / "lines.txt"
    lines.write_text("a sentence, not a photo\n")
    result = tune(zoo_served, tmp_path / "out", "mobilenet_v2", lines)
    assert result.returncode == 2 and "takes images" in result.stderr, result.stdout + result.stderr
    assert "__tune" not in result.stderr and not (tmp_path / "out").exists()
