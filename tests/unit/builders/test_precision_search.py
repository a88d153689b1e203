"""The mixed-precision search on a synthetic model: only keeping the truly sensitive nodes passes."""

from __future__ import annotations

import numpy as np
import pytest

from triton_repo.builders.precision.accuracy import AccuracyResult
from triton_repo.builders.precision.debug import LayerwiseReport, NodeError
from triton_repo.builders.precision.search import candidates, search


def _result(value: float) -> AccuracyResult:
    return AccuracyResult("cosine_min", value, 0.99, value >= 0.99, {}, {}, {})


def _model(sensitive: set[str]):
    """Each sensitive node left quantized costs 0.2 cosine; others cost 0.001 each."""
    calls = []

    def evaluate(kept):
        calls.append(kept)
        value = 1.0 - sum(0.2 if n in sensitive else 0.001 for n in "ABCDEFGH" if n not in kept)
        return _result(value)

    return evaluate, calls


def test_search_keeps_exactly_the_sensitive_nodes():
    evaluate, calls = _model({"B", "E"})
    outcome = search("int8-cpu", evaluate, ranked=list("EBACDFGH"))
    assert not outcome.default.passed
    assert sorted(outcome.found) == ["B", "E"]
    assert outcome.accuracy.passed
    assert "quantizing it too gives" in outcome.why["B"]
    assert len(calls) == len(outcome.trials) <= 24


def test_a_default_that_passes_keeps_nothing():
    evaluate, calls = _model(set())
    outcome = search("int8", evaluate, ranked=list("ABC"))
    assert outcome.found == () and len(calls) == 1


def test_search_stops_at_the_trial_bound_and_reports_why():
    evaluate, _ = _model({"H"})  # ranked last: doubling needs 4 trials to reach it
    outcome = search("int8", evaluate, ranked=list("ABCDEFGH"), max_trials=3)
    assert outcome.found is None and outcome.stopped_early == "3 trials"


def test_search_gives_up_when_keeping_every_candidate_is_not_enough():
    outcome = search("int8", lambda kept: _result(0.5), ranked=list("AB"))
    assert outcome.found is None and "still outside budget" in outcome.stopped_early


def test_candidates_are_the_changed_nodes_by_rank_and_any_node_for_fp16():
    nodes = [
        NodeError(0, "/mm1", "MatMul", "a", 0.1, 0.1, 0.99, 0.1),
        NodeError(1, "/softmax", "Softmax", "b", 0.9, 0.1, 0.9, 0.8),
        NodeError(2, "/mm2", "MatMul", "c", 0.95, 0.1, 0.9, 0.05),
        NodeError(3, "/add", "Add", "d", 0.95, 0.1, 0.9, 0.0),
    ]
    report = LayerwiseReport(nodes=nodes, matched=4, fp32_tensors=4, outputs={"d": 0.95})
    assert candidates(report, {"/mm1", "/mm2", "/gather"}) == ["/mm1", "/mm2", "/gather"]
    assert candidates(report, None) == ["/softmax", "/mm1", "/mm2", "/add"]


@pytest.mark.parametrize(
    ("metric", "budget", "searched"), [("cosine_min", 0.99, 0.991), ("top1_drop", 1.0, 0.999)]
)
def test_search_margin_makes_the_budget_stricter_in_the_metrics_direction(tmp_path, metric, budget, searched):
    from conftest import minimal_spec

    from triton_repo.builders.precision.node_search import with_margin
    from triton_repo.core.spec import parse_spec

    data = minimal_spec()
    data["data"] |= {"eval": "eval.npz", "eval_labels": "labels.npz"}
    data["accuracy"] = {"metric": metric, "budget": budget}
    path = tmp_path / "toy" / "model.yaml"
    path.parent.mkdir(parents=True)
    loaded = parse_spec(data, path)
    assert with_margin(loaded, 0.001).spec.accuracy.budget == pytest.approx(searched)
    assert with_margin(loaded, 0.0) is loaded


def test_the_layers_are_ranked_on_the_rows_the_task_metric_finds_worst():
    """As NNCF ranks quantizers on the items whose metric drops most: the search's Polygraphy comparison
    runs on the eval rows farthest from FP32 by the task metric, not on the first rows."""
    from types import SimpleNamespace

    from triton_repo.builders.precision.node_search import worst_inputs

    rows = np.arange(40, dtype=np.float32)[:, None] * np.ones((1, 3), np.float32)
    bench = SimpleNamespace(
        eval_inputs={"x": rows, "sr": np.array(16000)},
        loaded=SimpleNamespace(spec=SimpleNamespace(sequence=None)),
    )
    default = AccuracyResult(
        "embedding", 0.8, 0.9, False, {}, {}, {}, worst_rows=(31, 7, 22, 3), label="recall@10"
    )
    picked, which = worst_inputs(bench, default, 3)
    assert picked["x"][:, 0].tolist() == [31, 7, 22] and picked["sr"].ndim == 0
    assert which == "the 3 eval rows farthest from FP32 by recall@10"
    unranked = AccuracyResult("embedding", 0.8, 0.9, False, {}, {}, {})
    assert worst_inputs(bench, unranked, 3)[1] == "the first 3 eval rows"
