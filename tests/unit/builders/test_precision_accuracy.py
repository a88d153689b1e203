"""The accuracy gate's metrics and verdicts."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import minimal_spec

from triton_repo.builders.precision.accuracy import measure
from triton_repo.core.spec import parse_spec


def _spec(tmp_path, metric, budget=None):
    data = minimal_spec()
    data["data"] |= {"eval": "eval.npz", "eval_labels": "labels.npz"}
    data["accuracy"] = {"metric": metric, "budget": budget}
    path = tmp_path / "toy" / "model.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    return parse_spec(data, path)


def test_cosine_min_takes_the_worst_row_and_reports_the_mean(tmp_path):
    reference = {"embedding": np.array([[1, 0, 0, 0], [0, 1, 0, 0]], np.float32)}
    variant = {"embedding": np.array([[1, 0, 0, 0], [0, 1, 1, 0]], np.float32)}  # row 2: cosine 0.7071
    result = measure(_spec(tmp_path, "cosine_min"), reference, variant, None)
    assert result.value == pytest.approx(2**-0.5)
    assert result.details["cosine_mean"] == pytest.approx((1 + 2**-0.5) / 2)
    assert not result.passed
    assert result.verdict == "min cosine 0.7071 < 0.99 (short by 0.283)"
    assert result.max_abs["embedding"] == pytest.approx(1.0)


def test_top1_drop_is_in_points_against_the_labels(tmp_path):
    reference = {"embedding": np.eye(4, dtype=np.float32)}  # predicts 0,1,2,3
    variant = {"embedding": np.eye(4, dtype=np.float32)[[0, 1, 2, 0]]}  # last row wrong
    labels = np.array([0, 1, 2, 3])
    result = measure(_spec(tmp_path, "top1_drop", budget=20), reference, variant, labels)
    assert result.value == pytest.approx(25.0)
    assert result.details["top1_fp32"] == 1.0 and result.details["top1_variant"] == 0.75
    assert not result.passed and "over by 5" in result.verdict
    # 25 points on 4 rows passes a budget of 25 only as a point: one row in four lost bounds at 64 points
    at_budget = measure(_spec(tmp_path, "top1_drop", budget=25), reference, variant, labels)
    assert at_budget.bound == pytest.approx(64.38, abs=0.01) and not at_budget.passed
    assert measure(_spec(tmp_path, "top1_drop", budget=65), reference, variant, labels).passed


def test_top1_agreement_ignores_labels_and_compares_argmax(tmp_path):
    reference = {"embedding": np.eye(4, dtype=np.float32)}
    variant = {"embedding": np.eye(4, dtype=np.float32)[[0, 1, 2, 0]]}
    result = measure(_spec(tmp_path, "top1_agreement"), reference, variant, None)
    assert result.value == 0.75 and not result.passed and result.budget == 0.95


def test_non_finite_outputs_never_pass(tmp_path):
    reference = {"embedding": np.ones((2, 4), np.float32)}
    variant = {"embedding": np.array([[1, 1, 1, 1], [np.inf, 1, 1, 1]], np.float32)}
    assert not measure(_spec(tmp_path, "top1_agreement", budget=0.0), reference, variant, None).passed


def test_cosine_min_counts_two_empty_rows_as_agreeing_and_one_empty_row_as_not(tmp_path):
    """A detector's map of an image without text is all zeros: rounding noise there must not decide."""
    reference = {"embedding": np.array([[1, 2, 0, 0], [0, 0, 0, 0], [1e-9, 0, 0, 0]], np.float32)}
    variant = {"embedding": np.array([[1, 2, 0, 0], [0, 1e-9, 0, 0], [0, 0, 0, 1e-9]], np.float32)}
    agreeing = measure(_spec(tmp_path, "cosine_min"), reference, variant, None)
    assert agreeing.value == pytest.approx(1.0) and agreeing.passed
    variant["embedding"][1] = [0, 0.5, 0, 0]  # an empty reference row, a variant that sees something
    refused = measure(_spec(tmp_path, "cosine_min"), reference, variant, None)
    assert refused.value == 0.0 and not refused.passed


def _agreeing(rows: int, disagreeing: int) -> tuple[dict, dict]:
    classes = np.arange(rows) % 4
    reference = {"embedding": np.eye(4, dtype=np.float32)[classes]}
    moved = classes.copy()
    moved[:disagreeing] = (moved[:disagreeing] + 1) % 4
    return reference, {"embedding": np.eye(4, dtype=np.float32)[moved]}


def test_a_variant_passing_by_a_hair_on_a_small_eval_set_is_refused_naming_the_margin(tmp_path):
    """96.9% agreement on 32 rows clears 0.95 as a point, not as a 95% lower bound (Wilson: 0.87)."""
    result = measure(_spec(tmp_path, "top1_agreement"), *_agreeing(32, 1), None)
    assert result.value == pytest.approx(31 / 32) and result.value >= 0.95
    assert result.bound == pytest.approx(0.8714, abs=1e-4) and result.rows == 32
    assert not result.passed
    assert "\n" not in result.verdict
    assert result.verdict.startswith(
        "top-1 agreement 0.9688 passes 0.95 on 32 eval rows, but its 95% lower bound 0.8"
    )
    assert "needs a margin of 0.0973 over the budget" in result.verdict and "has 0.0188" in result.verdict
    assert "a perfect agreement needs 52 rows to show 0.95" in result.verdict


def test_the_same_agreement_on_enough_rows_passes_with_its_bound_in_the_verdict(tmp_path):
    result = measure(_spec(tmp_path, "top1_agreement", budget=0.9), *_agreeing(400, 12), None)
    assert result.value == pytest.approx(0.97) and result.passed
    assert 0.95 < result.bound < 0.97
    assert result.verdict == f"top-1 agreement 0.97 (95% lower bound {result.bound:.4g}, 400 rows) >= 0.9"


def test_perfect_agreement_needs_52_rows_to_show_095(tmp_path):
    assert not measure(_spec(tmp_path, "top1_agreement"), *_agreeing(51, 0), None).passed
    assert measure(_spec(tmp_path, "top1_agreement"), *_agreeing(52, 0), None).passed


def test_cosine_min_is_held_to_its_estimated_floor(tmp_path):
    """min 0.991 with the next row at 0.998: the floor (0.991 - 0.007 = 0.984) says unseen rows go lower."""
    angles = np.arccos(np.array([0.991, 0.998] + [0.9995] * 30))
    reference = {"embedding": np.tile(np.array([[1.0, 0.0]], np.float32), (32, 1))}
    variant = {"embedding": np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)}
    outlier = measure(_spec(tmp_path, "cosine_min"), reference, variant, None)
    assert outlier.value == pytest.approx(0.991, abs=1e-6) and outlier.bound == pytest.approx(0.984, abs=1e-5)
    assert not outlier.passed and "estimated floor 0.984 < 0.99" in outlier.verdict
    angles[0] = np.arccos(0.9975)  # the worst row close to the rest: the floor is near the minimum
    steady = measure(
        _spec(tmp_path, "cosine_min"),
        reference,
        {"embedding": np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)},
        None,
    )
    assert steady.passed and steady.bound == pytest.approx(0.997, abs=1e-5)


def test_labels_with_unknown_rows_give_top1_on_the_labelled_rows_only(tmp_path):
    reference, variant = _agreeing(8, 1)  # row 0 moved to another class
    labels = np.array([0, -1, -1, -1, -1, -1, -1, 3])
    result = measure(_spec(tmp_path, "top1_agreement"), reference, variant, labels)
    assert result.details["labelled_rows"] == 2
    assert result.details["top1_fp32"] == 1.0 and result.details["top1_variant"] == 0.5


def test_the_bounds_are_wilsons_at_95_percent():
    from triton_repo.builders.precision.accuracy import drop_upper, wilson_lower

    assert wilson_lower(97, 100) == pytest.approx(0.9273, abs=1e-4)  # z = 1.645
    assert wilson_lower(0, 10) == 0.0 and wilson_lower(10, 10) == pytest.approx(
        10 / (10 + 1.6449**2), abs=1e-4
    )
    # no row lost on 400 rows still bounds the drop at 0.67 points; one lost, at 1.11
    assert drop_upper(0, 0, 400) == pytest.approx(0.672, abs=1e-3)
    assert drop_upper(1, 0, 400) == pytest.approx(1.113, abs=1e-3)
    assert drop_upper(1, 1, 400) == pytest.approx(1.113 - 0.25, abs=1e-3)  # a row gained offsets one lost


def test_top1_drop_counts_only_labelled_rows_and_bounds_a_perfect_score(tmp_path):
    reference, variant = _agreeing(300, 100)  # the variant moves rows 0..99, none of them labelled
    labels = np.full(300, -1)
    labels[150:] = np.arange(300)[150:] % 4  # 150 labelled rows, FP32 and the variant right on all
    result = measure(_spec(tmp_path, "top1_drop", budget=2.0), reference, variant, labels)
    assert result.value == 0 and result.rows == result.details["labelled_rows"] == 150
    assert result.bound == pytest.approx(100 * 2.7057 / (150 + 2.7057), abs=0.01) and result.passed
    assert result.details["top1_agreement"] == pytest.approx(2 / 3)
    assert not measure(_spec(tmp_path, "top1_drop", budget=1.0), reference, variant, labels).passed


def test_a_runtime_failing_on_a_model_without_an_accuracy_gate_is_refused_with_its_reason(tmp_path):
    """An fp32-only spec still measures the FP32 graph in other runtimes (OpenVINO f32); one that fails
    there (Silero VAD's If nodes) is refused with the runtime's line, not a crash."""
    from triton_repo.builders.precision.accuracy import AccuracyResult

    spec = parse_spec(minimal_spec(), tmp_path / "toy" / "model.yaml").spec
    assert spec.accuracy is None
    result = AccuracyResult.not_run(spec, "toy fp32@ov-f32: OpenVINO failed: RuntimeError: ...")
    assert not result.passed and result.verdict == "toy fp32@ov-f32: OpenVINO failed: RuntimeError: ..."
