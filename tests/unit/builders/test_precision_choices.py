"""precision.yaml: round trip, clear errors, and node names checked against the FP32 graph."""

from __future__ import annotations

import pytest

from triton_repo.builders.precision.node_choices import (
    CHOICES_FILE,
    ArtifactChoices,
    KeptNode,
    PrecisionChoices,
    SearchResult,
    check_nodes,
    load_choices,
    save_choices,
)
from triton_repo.core.errors import SpecError


def _choices() -> PrecisionChoices:
    kept = ArtifactChoices(
        keep=[KeptNode(node="/encoder/layer.5/output/dense/MatMul", op_type="MatMul", why="rank 1")],
        result=SearchResult(metric="cosine_min", value=0.993, budget=0.99, default_value=0.47, trials=5),
    )
    return (
        PrecisionChoices()
        .with_artifact("int8-cpu", kept)
        .with_artifact("fp16", ArtifactChoices(keep=[KeptNode(node="/Softmax")]))
    )


def test_choices_round_trip_through_yaml(tmp_path):
    path = save_choices(_choices(), tmp_path)
    assert path == tmp_path / CHOICES_FILE
    text = path.read_text()
    assert text.startswith("# Node-level precision choices")
    assert "int8-cpu:" in text and "int8:" not in text.replace("int8-cpu:", "")  # empty artifacts left out
    loaded = load_choices(tmp_path)
    assert loaded == _choices()
    assert loaded.for_artifact("int8-cpu").node_names == ("/encoder/layer.5/output/dense/MatMul",)
    assert loaded.for_artifact("int8").node_names == ()
    assert not list(tmp_path.glob("*.tmp"))


def test_missing_precision_yaml_is_empty_choices(tmp_path):
    assert load_choices(tmp_path) == PrecisionChoices()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("int9: {}\n", "int9"),
        ("int8: {keep: [{nod: x}]}\n", "int8.keep.0"),
        ("- a\n- b\n", "expected a mapping"),
        ("int8: {keep: [\n", "malformed YAML"),
    ],
)
def test_bad_precision_yaml_is_a_one_line_error_naming_the_file(tmp_path, text, message):
    (tmp_path / CHOICES_FILE).write_text(text)
    with pytest.raises(SpecError) as error:
        load_choices(tmp_path)
    assert message in str(error.value) and CHOICES_FILE in str(error.value)
    assert "\n" not in str(error.value)


def test_a_node_missing_from_the_graph_is_refused(tmp_path):
    with pytest.raises(SpecError, match="not in the FP32 ONNX graph"):
        check_nodes(_choices(), {"/Softmax"}, tmp_path / CHOICES_FILE)
    check_nodes(_choices(), {"/Softmax", "/encoder/layer.5/output/dense/MatMul"}, tmp_path / CHOICES_FILE)


def test_kept_node_names_are_matched_exactly_by_modelopt():
    import re

    from triton_repo.builders.precision.artifacts import exact_names

    patterns = exact_names(("/layer.1/MatMul", "a[0]+b"))
    nodes = ["/layer.1/MatMul", "/layer.1/MatMul_1", "/layerX1/MatMul", "a[0]+b"]
    assert [n for n in nodes if any(re.match(p, n) for p in patterns)] == ["/layer.1/MatMul", "a[0]+b"]
    assert exact_names(()) is None


def test_fp16_keeps_recurrent_ops_and_fp16_cpu_also_what_the_runtime_has_no_kernel_for():
    from triton_repo.builders.precision.artifacts import fp16_op_rule

    graph = {"GRU", "MatMul", "Transpose", "Cast", "Gather"}
    kernels = frozenset({"Transpose", "Gather", "Cast"})
    assert fp16_op_rule("fp16", graph, kernels, "ORT 1").op_types == ("GRU",)
    rule = fp16_op_rule("fp16-cpu", graph, kernels, "ORT 1")
    assert rule.op_types == ("GRU", "MatMul")
    assert rule.because == "recurrent ops stay FP32; ORT 1 has no CPU FP16 kernel for MatMul"
    assert fp16_op_rule("int8", graph, kernels, "ORT 1").op_types == ()
