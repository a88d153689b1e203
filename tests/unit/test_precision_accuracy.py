"""The accuracy gate's metrics and verdicts."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import minimal_spec

from builders.precision.accuracy import measure
from triton_repo.spec import parse_spec


def _spec(tmp_path, metric, budget=None):
    data = minimal_spec()
    data["data"] |= {"eval": "eval.npz", "eval_labels": "labels.npz"}
    data["accuracy"] = {"metric": metric, "budget": budget}
    path = tmp_path / "toy" / "model.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    return parse_spec(data, path).spec


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
    assert measure(_spec(tmp_path, "top1_drop", budget=25), reference, variant, labels).passed


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
