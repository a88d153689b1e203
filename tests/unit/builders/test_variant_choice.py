"""Every published variant earns its name: on the cpu target a lower precision no faster than the served
FP32 beyond the noise is measured and reported, not published (and not refused), unless the spec lists
it; and what the last build chose, read from its report, is kept within the noise."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import minimal_spec, write_spec

from triton_repo.builders.precision.accuracy import AccuracyResult
from triton_repo.builders.precision.artifacts import Artifact
from triton_repo.builders.precision.pairs import choose_cpu_variants, choose_gpu_variants
from triton_repo.builders.precision.results import PrecisionResult, VariantResult
from triton_repo.builders.precision.timing import Timing
from triton_repo.builders.report import REPORT_JSON, model_report, read_report, served_before
from triton_repo.builders.targets import CpuTarget, StageJob
from triton_repo.core.spec import load_spec
from triton_repo.runtimes.isolated import ORT, OV_BF16


def spec(tmp_path: Path, variants: list[str] | None = None):
    data = minimal_spec()
    data["accuracy"] = {"metric": "cosine_min"}
    data["data"].update(eval="eval.npz", calibration="calibration.npz")
    if variants is not None:
        data["precision"] = {"variants": variants}
    return load_spec(write_spec(tmp_path, data))


def measured(tmp_path: Path, throughput: dict[str, float]) -> dict[str, VariantResult]:
    """Pairs with their batch-8 throughput (1% noise), within budget; the reference (`fp32`) unmeasured."""
    variants = {}
    for pair, rate in throughput.items():
        kind, _, runner = pair.partition("@")
        path = tmp_path / f"model.{kind}.onnx"
        path.write_bytes(b"onnx")
        accuracy = None if pair == "fp32" else AccuracyResult("cosine_min", 0.999, 0.99, True, {}, {}, {})
        variants[pair] = VariantResult(
            Artifact(kind, path, 0, True, (), "k"),
            accuracy,
            Timing(0.1, rate, 8, 2, 10, 0.01),
            None,
            OV_BF16 if runner == OV_BF16.name else ORT,
        )
    return variants


def test_a_lower_precision_slower_than_fp32_is_reported_not_published_and_not_refused(tmp_path, capsys):
    loaded = spec(tmp_path)
    assert loaded.spec.precision.variants is None  # the default variants
    variants = measured(tmp_path, {"fp32": 1000.0, "fp16-cpu": 970.0})
    choices = choose_cpu_variants(["fp32", "fp16"], variants, {}, loaded.spec.precision.variants)
    fp16 = choices["fp16"]
    assert fp16.pair == "fp16-cpu" and not fp16.published and fp16.versus_fp32 == pytest.approx(0.97)

    result = PrecisionResult(variants, "now", False, {}, "ONNX Runtime")
    staged = CpuTarget().stage(StageJob(loaded, result, {"fp16": fp16}, tmp_path, tmp_path, None))
    assert staged.models == [] and staged.refused == [] and staged.pending == []
    assert capsys.readouterr().err.strip() == (
        "toy_fp16 not published: 0.97x the served FP32, noise 5% (fp16-cpu computes in FP32 with FP16 "
        "data); list fp16 in precision.variants to publish it anyway"
    )

    report = model_report(loaded, result, CpuTarget(), choices)
    row = next(r for r in report["variants"] if r["artifact"] == "fp16-cpu")
    assert row["triton_model"] is None
    assert row["status"].startswith("measured, not published: 0.97x the served FP32")
    assert "computes in FP32 with FP16 data" in row["status"]
    assert report["choices"]["fp16"]["published"] is False
    assert report["choices"]["fp16"]["why"].startswith("not published: 0.97x")


def test_a_lower_precision_within_the_noise_of_fp32_is_not_published_by_default(tmp_path):
    variants = measured(tmp_path, {"fp32": 1000.0, "int8-cpu": 1030.0})
    assert not choose_cpu_variants(["fp32", "int8"], variants, {}, None)["int8"].published


def test_a_lower_precision_faster_than_fp32_beyond_the_noise_is_published_by_default(tmp_path):
    variants = measured(tmp_path, {"fp32": 1000.0, "int8-cpu": 1300.0, "fp16-cpu": 970.0})
    choices = choose_cpu_variants(["fp32", "fp16", "int8"], variants, {}, None)
    assert choices["int8"].published and choices["fp32"].published
    assert not choices["fp16"].published


def test_a_spec_that_lists_fp16_gets_it_published_even_when_slower(tmp_path):
    loaded = spec(tmp_path, ["fp32", "fp16"])
    variants = measured(tmp_path, {"fp32": 1000.0, "fp16-cpu": 200.0})
    choices = choose_cpu_variants(loaded.spec.precisions, variants, {}, loaded.spec.precision.variants)
    assert choices["fp16"].pair == "fp16-cpu" and choices["fp16"].published
    report = model_report(loaded, PrecisionResult(variants, "now", False, {}, "ORT"), CpuTarget(), choices)
    row = next(r for r in report["variants"] if r["artifact"] == "fp16-cpu")
    assert row["status"] == "published" and row["triton_model"] == "toy_fp16"


def test_the_gpu_target_publishes_what_tensorrt_builds_whatever_its_speed_here(tmp_path):
    variants = measured(tmp_path, {"fp32": 1000.0, "fp16": 100.0})
    choices = choose_gpu_variants(["fp32", "fp16"], variants, {"fp16": "elsewhere"}, None)
    assert choices["fp16"].pair == "fp16" and choices["fp16"].published


def test_the_pairs_chosen_before_are_kept_by_the_next_build_within_the_noise(tmp_path):
    variants = measured(tmp_path, {"fp32": 1000.0, "int8-cpu": 3000.0, "int8-ov@ov-bf16": 3090.0})
    assert choose_cpu_variants(["fp32", "int8"], variants, {}, None)["int8"].pair == "int8-ov@ov-bf16"
    kept = choose_cpu_variants(["fp32", "int8"], variants, {"int8": "int8-cpu"}, None)["int8"]
    assert kept.pair == "int8-cpu" and kept.why.startswith("kept: within the noise of int8-ov@ov-bf16")


def report_file(tmp_path: Path, target: str = "cpu") -> Path:
    model = {
        "target": target,
        "choices": {
            "fp32": {"pair": "fp32", "why": ""},
            "fp16": {"pair": "fp16-cpu", "why": "", "published": False},
            "int8": {"pair": None, "why": ""},  # refused
        },
        "ensemble": {"triton_model": "toy", "variant": "toy_int8", "why": ""},
    }
    path = tmp_path / REPORT_JSON
    path.write_text(json.dumps({"format": 1, "models": {"toy": model}}))
    return path


def test_the_last_builds_choices_are_read_from_the_repositorys_report(tmp_path):
    report_file(tmp_path)
    pairs, ensemble = served_before(read_report(tmp_path), "toy", "cpu")
    assert pairs == {"fp32": "fp32", "fp16": "fp16-cpu"} and ensemble == "toy_int8"
    assert served_before(read_report(tmp_path), "other", "cpu") == ({}, None)


def test_choices_made_for_the_other_target_are_not_kept(tmp_path):
    report_file(tmp_path, target="gpu")
    assert served_before(read_report(tmp_path), "toy", "cpu") == ({}, None)


def test_a_missing_or_damaged_report_means_nothing_was_chosen_before(tmp_path):
    assert read_report(tmp_path) == {}
    (tmp_path / REPORT_JSON).write_text("{not json")
    assert read_report(tmp_path) == {}
