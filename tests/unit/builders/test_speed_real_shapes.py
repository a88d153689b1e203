"""Speed at real shapes: the eval set's batches, each cut to its own length on every dynamic axis but
batch, are timed in the same interleaved run as the opt shapes, and the report shows both."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import minimal_spec, write_spec

from triton_repo.builders.precision.accuracy import AccuracyResult
from triton_repo.builders.precision.artifacts import Artifact
from triton_repo.builders.precision.pairs import choose_cpu_variants
from triton_repo.builders.precision.real_shapes import (
    SAME_AS_OPT,
    not_timed,
    real_shape_groups,
    shape_summary,
)
from triton_repo.builders.precision.results import PrecisionResult, VariantResult
from triton_repo.builders.precision.timing import Timing, measure_speed
from triton_repo.builders.report import model_report, render_markdown
from triton_repo.builders.targets import CpuTarget
from triton_repo.core.spec import load_spec
from triton_repo.runtimes.isolated import ORT, OV_BF16


def text_spec(tmp_path: Path, **changes):
    """A token model (input_ids and attention_mask over batch and seq, batch max 8) with an eval set."""
    data = minimal_spec()
    data["data"]["eval"] = "eval.npz"
    data.update(changes)
    return load_spec(write_spec(tmp_path, data))


def padded_eval(lengths: list[int], width: int = 12, pad_id: int = 0) -> dict[str, np.ndarray]:
    """Rows of the given real lengths, all padded to `width` (as one tokenizer call pads a whole set)."""
    mask = np.array([[1] * n + [0] * (width - n) for n in lengths], dtype=np.int64)
    ids = np.where(mask == 1, np.arange(1, width + 1) + 100 * np.arange(len(lengths))[:, None], pad_id)
    return {"input_ids": ids.astype(np.int64), "attention_mask": mask}


def test_each_batch_is_cut_after_its_longest_row_by_the_attention_mask(tmp_path):
    loaded = text_spec(tmp_path)
    lengths = [3, 5, 4, 2, 3, 3, 4, 5] + [9, 2, 2, 3, 7, 2, 2, 2] + [12, 12, 12]
    # a pad id that is not 0: only the mask tells the padding apart
    rows = padded_eval(lengths, pad_id=1)
    groups = real_shape_groups(loaded, rows, 8).groups
    assert [g["input_ids"].shape for g in groups] == [(8, 5), (8, 9)]  # the last 3 rows make no batch
    assert [g["attention_mask"].shape for g in groups] == [(8, 5), (8, 9)]
    np.testing.assert_array_equal(groups[1]["input_ids"], rows["input_ids"][8:16, :9])
    np.testing.assert_array_equal(groups[1]["attention_mask"], rows["attention_mask"][8:16, :9])
    assert shape_summary(loaded.spec, groups) == {"seq": [5, 7, 9]}


def test_without_a_mask_trailing_positions_zero_in_every_row_are_padding(tmp_path):
    data = minimal_spec()
    data["inputs"] = [{"name": "input_ids", "dtype": "int64", "dims": ["batch", "seq"]}]
    loaded = load_spec(write_spec(tmp_path, data | {"data": {"sample": "sample.npz", "eval": "e.npz"}}))
    ids = padded_eval([3, 6, 2, 1, 1, 1, 1, 1])["input_ids"]
    ids[0, 1] = 0  # a zero inside a row is kept
    groups = real_shape_groups(loaded, {"input_ids": ids}, 8).groups
    assert [g["input_ids"].shape for g in groups] == [(8, 6)]
    np.testing.assert_array_equal(groups[0]["input_ids"], ids[:, :6])


def test_a_batch_is_never_cut_below_the_axis_min_or_off_its_multiple(tmp_path):
    loaded = text_spec(
        tmp_path, axes={"batch": {"min": 1, "opt": 4, "max": 8}, "seq": {"min": 2, "opt": 16, "max": 32}}
    )
    assert real_shape_groups(loaded, padded_eval([1] * 8), 8).groups[0]["input_ids"].shape == (8, 2)
    stepped = text_spec(
        tmp_path / "stepped",
        axes={
            "batch": {"min": 1, "opt": 4, "max": 8},
            "seq": {"min": 4, "opt": 8, "max": 32, "multiple_of": 4},
        },
    )
    assert real_shape_groups(stepped, padded_eval([5] * 8), 8).groups[0]["input_ids"].shape == (8, 8)


def test_an_eval_set_smaller_than_a_batch_is_repeated_to_a_full_batch(tmp_path):
    loaded = text_spec(tmp_path)
    rows = padded_eval([2, 4, 3])
    groups = real_shape_groups(loaded, rows, 8).groups
    assert len(groups) == 1 and groups[0]["input_ids"].shape == (8, 4)
    np.testing.assert_array_equal(groups[0]["input_ids"][3:6], rows["input_ids"][:3, :4])


def test_at_most_eight_batches_spread_over_the_whole_eval_set(tmp_path):
    loaded = text_spec(tmp_path)
    rows = padded_eval([2] * 100)
    groups = real_shape_groups(loaded, rows, 8).groups
    firsts = [int(g["input_ids"][0, 0]) // 100 for g in groups]  # the eval row each batch starts at
    assert len(groups) == 8 and firsts[0] == 0 and firsts[-1] == 88
    assert firsts == sorted(set(firsts)) and all(f % 8 == 0 for f in firsts)


def test_a_model_whose_only_dynamic_axis_is_batch_times_nothing_more(tmp_path):
    fixed = text_spec(
        tmp_path, axes={"batch": {"min": 1, "opt": 4, "max": 8}, "seq": {"min": 16, "opt": 16, "max": 16}}
    )
    assert not_timed(fixed.spec) == SAME_AS_OPT
    assert real_shape_groups(fixed, padded_eval([2] * 16, width=16), 8).groups == []
    no_eval = load_spec(write_spec(tmp_path / "no_eval", minimal_spec()))
    assert not_timed(no_eval.spec).startswith("not measured: the spec has no eval set")
    assert not_timed(text_spec(tmp_path / "text").spec) == ""


class FakeSession:
    """A worker whose runs take 1 ms per position of the stored feed's seq axis."""

    def __init__(self) -> None:
        self.feeds: dict[str, dict[str, np.ndarray]] = {}
        self.timed: list[str] = []

    def store(self, name: str, inputs: dict[str, np.ndarray]) -> None:
        self.feeds[name] = inputs

    def time(self, feed: str, runs: int) -> list[float]:
        self.timed += [feed] * runs
        return [self.feeds[feed]["input_ids"].shape[1] / 1000] * runs


def test_the_speed_run_times_every_real_batch_in_its_minimum_rounds(tmp_path):
    loaded = text_spec(tmp_path)
    groups = real_shape_groups(loaded, padded_eval([(i % 10) + 1 for i in range(64)]), 8).groups
    sessions = {"fp32": FakeSession(), "int8-cpu": FakeSession()}
    batch = padded_eval([12] * 8)
    timings, failed = measure_speed(sessions, batch, batch, 2, seconds=0.0, min_rounds=3, real=groups)
    assert failed == {} and len(groups) == 8
    for session in sessions.values():
        assert {f"r{i}" for i in range(8)} <= set(session.timed)
    lengths = [g["input_ids"].shape[1] for g in groups]
    expected = 8 * len(groups) / (sum(lengths) / 1000)  # every batch once, at its median time
    assert timings["fp32"].throughput_real == pytest.approx(expected)
    assert timings["fp32"].throughput_b8 == pytest.approx(8 / 0.012)
    assert timings["fp32"].noise_real == 0.0


def test_without_real_batches_the_speed_run_measures_opt_only(tmp_path):
    session = FakeSession()
    batch = padded_eval([12] * 8)
    timings, _ = measure_speed({"fp32": session}, batch, batch, 2, seconds=0.0)
    assert timings["fp32"].throughput_real is None
    assert set(session.timed) == {"b1", "b8"}


def pairs(tmp_path: Path, speeds: dict[str, tuple[float, float | None]]) -> dict[str, VariantResult]:
    """Pairs within budget with their (opt, real-shape) throughput at batch 8."""
    variants = {}
    for pair, (opt, real) in speeds.items():
        kind, _, runner = pair.partition("@")
        path = tmp_path / f"model.{kind}.onnx"
        path.write_bytes(b"onnx")
        accuracy = None if pair == "fp32" else AccuracyResult("cosine_min", 0.999, 0.99, True, {}, {}, {})
        shapes = {"seq": [14, 27, 40]} if real else None
        timing = Timing(0.1, opt, 8, 2, 10, 0.02, real, 0.03, shapes, 8 if real else 0)
        variants[pair] = VariantResult(
            Artifact(kind, path, 0, True, (), "k"),
            accuracy,
            timing,
            None,
            OV_BF16 if runner == OV_BF16.name else ORT,
        )
    return variants


def report_of(tmp_path: Path, loaded, variants) -> dict:
    choices = choose_cpu_variants(["fp32", "bf16"], variants, {}, None)
    result = PrecisionResult(variants, "now", False, {}, "ONNX Runtime")
    return model_report(loaded, result, CpuTarget(), choices)


def test_the_report_gives_each_pair_its_speed_at_real_shapes_beside_opt(tmp_path):
    loaded = text_spec(tmp_path)
    variants = pairs(tmp_path, {"fp32": (100.0, 400.0), "fp32@ov-bf16": (470.0, 960.0)})
    model = report_of(tmp_path, loaded, variants)
    row = next(r for r in model["variants"] if r["runtime"] == "ov-bf16")
    assert row["throughput_per_s"] == 470.0 and row["speedup_vs_fp32"] == 4.7
    assert row["throughput_real_per_s"] == 960.0 and row["speedup_real_vs_fp32"] == 2.4
    assert row["throughput_real_noise"] == 0.03 and row["real_shapes"] == {"seq": [14, 27, 40]}
    assert model["speed_real_shapes"] == (
        "8 eval batches of 8 rows, each cut to its longest row: seq 14-40 (median 27)"
    )
    markdown = render_markdown({"models": {"toy": model}})
    assert "| x FP32 | real inf/s | x FP32 real |" in markdown
    assert "| 470 | 4.70 | 960 | 2.40 |" in markdown
    assert "Speed at real shapes: 8 eval batches of 8 rows" in markdown


def test_a_model_without_a_dynamic_axis_but_batch_reports_real_shapes_as_opt(tmp_path):
    loaded = text_spec(
        tmp_path, axes={"batch": {"min": 1, "opt": 4, "max": 8}, "seq": {"min": 16, "opt": 16, "max": 16}}
    )
    variants = pairs(tmp_path, {"fp32": (100.0, None), "fp32@ov-bf16": (250.0, None)})
    model = report_of(tmp_path, loaded, variants)
    row = next(r for r in model["variants"] if r["runtime"] == "ov-bf16")
    # its opt shapes are its real shapes: the same measurement under the real-shape name
    assert row["throughput_real_per_s"] == 250.0 and row["speedup_real_vs_fp32"] == 2.5
    assert row["throughput_real_noise"] == 0.02 and row["real_shapes"] is None
    assert model["speed_real_shapes"] == SAME_AS_OPT
    markdown = render_markdown({"models": {"toy": model}})
    assert (
        "Speed at real shapes: same as opt." in markdown and "real inf/s" not in markdown.split("## toy")[1]
    )


def test_a_pair_not_timed_at_real_shapes_shows_no_number(tmp_path):
    loaded = text_spec(tmp_path)
    variants = pairs(tmp_path, {"fp32": (100.0, 400.0), "fp32@ov-bf16": (250.0, None)})
    model = report_of(tmp_path, loaded, variants)
    row = next(r for r in model["variants"] if r["runtime"] == "ov-bf16")
    assert row["throughput_real_per_s"] is None and row["speedup_real_vs_fp32"] is None
    assert "| 250 | 2.50 | — | — |" in render_markdown({"models": {"toy": model}})


def test_eval_batches_at_the_opt_shapes_are_recognised_as_the_batch_8_run_itself():
    from triton_repo.builders.precision.measure import _same_shapes

    batch8 = {"images": np.zeros((8, 3, 128, 128), np.float32)}
    assert _same_shapes({"images": np.ones((8, 3, 128, 128), np.float32)}, batch8)
    assert not _same_shapes({"images": np.ones((8, 3, 96, 128), np.float32)}, batch8)
    assert not _same_shapes({"other": np.ones((8, 3, 128, 128), np.float32)}, batch8)
