"""Which (artifact, runtime) pair serves each precision: the fastest within budget, measured, not assumed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.helpers import artifact_runtime
from triton_repo.builders.data import DataSet
from triton_repo.builders.precision.accuracy import AccuracyResult
from triton_repo.builders.precision.artifacts import Artifact, ArtifactBuilder, ArtifactRequest, make_artifact
from triton_repo.builders.precision.kinds import kinds_for, pair_id, split_pair
from triton_repo.builders.precision.node_choices import ArtifactChoices, KeptNode, PrecisionChoices
from triton_repo.builders.precision.pairs import choose_cpu, choose_gpu
from triton_repo.builders.precision.results import VariantResult
from triton_repo.builders.precision.timing import Timing
from triton_repo.core.errors import TritonRepoError
from triton_repo.core.spec import Int8Settings
from triton_repo.runtimes.isolated import ORT, OV_BF16, OV_F32, IsolatedSession


def variant(
    kind: str,
    runner,
    throughput: float,
    passed: bool = True,
    golden_ok: bool = True,
    bound: float | None = None,
    noise: float = 0.0,
) -> VariantResult:
    """A measured pair: min cosine 0.999 (0.9 when not `passed`) with its lower `bound`, and a timing."""
    accuracy = AccuracyResult("cosine_min", 0.999 if passed else 0.9, 0.99, passed, {}, {}, {}, bound=bound)
    timing = Timing(1.0, throughput, 8, 2, 10, noise)
    return VariantResult(
        Artifact(kind, Path(f"model.{kind}.onnx"), 0, True, (), "k"),
        accuracy,
        timing,
        None,
        runner,
        golden_ok,
    )


def test_pair_ids_name_the_engine_unless_it_is_onnx_runtime():
    assert pair_id("int8-cpu", ORT) == "int8-cpu" and pair_id("int8-ov", OV_BF16) == "int8-ov@ov-bf16"
    assert split_pair("fp32@ov-f32") == ("fp32", "ov-f32") and split_pair("fp32") == ("fp32", "ort")


def test_the_fastest_candidate_within_budget_serves_the_precision():
    variants = {
        "int8-cpu": variant("int8-cpu", ORT, 200.0),
        "int8-ov@ov-bf16": variant("int8-ov", OV_BF16, 350.0),
    }
    choice = choose_cpu("int8", variants)
    assert choice.pair == "int8-ov@ov-bf16" and "350" in choice.why and "int8-cpu 200" in choice.why


def test_a_faster_candidate_outside_its_budget_is_passed_over_and_said_so():
    variants = {
        "int8-cpu": variant("int8-cpu", ORT, 200.0),
        "int8-ov@ov-bf16": variant("int8-ov", OV_BF16, 350.0, passed=False),
    }
    choice = choose_cpu("int8", variants)
    assert choice.pair == "int8-cpu" and "int8-ov@ov-bf16 outside budget" in choice.why
    assert [pair for pair, _ in choice.refused] == ["int8-ov@ov-bf16"]


def test_no_candidate_within_budget_refuses_the_precision_with_every_verdict():
    variants = {"int8-cpu": variant("int8-cpu", ORT, 2.0, passed=False)}
    choice = choose_cpu("int8", variants)
    assert choice.pair is None and choice.refused == (("int8-cpu", "min cosine 0.9 < 0.99 (short by 0.09)"),)


def test_the_qad_student_competes_for_the_cpu_int8_only_when_the_spec_distils():
    assert kinds_for(["fp32", "int8"]) == ["fp32", "int8", "int8-cpu", "int8-ov"]
    kinds = kinds_for(["fp32", "int8"], "qad")
    assert kinds[-1] == "int8-qad" and kinds.index("int8") < kinds.index("int8-qad")  # int8 writes it
    variants = {
        "int8-cpu": variant("int8-cpu", ORT, 200.0),
        "int8-ov@ov-bf16": variant("int8-ov", OV_BF16, 350.0, passed=False),
        "int8-qad@ov-bf16": variant("int8-qad", OV_BF16, 300.0),
    }
    choice = choose_cpu("int8", variants)
    assert choice.pair == "int8-qad@ov-bf16" and "int8-cpu 200" in choice.why
    choices = PrecisionChoices(int8=ArtifactChoices(keep=[KeptNode(node="/l/MatMul", op_type="MatMul")]))
    assert choices.for_artifact("int8-qad") == choices.for_artifact("int8")  # one student, one node set


def test_the_int8_qad_artifact_needs_the_spec_to_distil(tmp_path):
    with pytest.raises(TritonRepoError, match="needs precision.int8.recover: qad"):
        make_artifact(
            ArtifactRequest(
                "int8-qad", tmp_path / "model.onnx", "0" * 64, tmp_path, Int8Settings(), (), None
            ),
            None,
        )


def test_an_fp32_pair_that_differs_from_pytorch_never_serves_as_fp32():
    variants = {
        "fp32": variant("fp32", ORT, 100.0),
        "fp32@ov-f32": variant("fp32", OV_F32, 150.0, golden_ok=False),
    }
    assert choose_cpu("fp32", variants).pair == "fp32"


def test_a_pair_within_the_noise_of_the_fastest_loses_to_the_more_accurate_one():
    variants = {
        "int8-cpu": variant("int8-cpu", ORT, 300.0, bound=0.998),
        "int8-ov@ov-bf16": variant("int8-ov", OV_BF16, 310.0, bound=0.995),  # 3% faster: within the floor
    }
    choice = choose_cpu("int8", variants)
    assert choice.pair == "int8-cpu"
    assert choice.why.startswith("the most accurate within the noise of the fastest, int8-ov@ov-bf16")


def test_a_pair_faster_beyond_the_noise_serves_even_when_less_accurate():
    variants = {
        "int8-cpu": variant("int8-cpu", ORT, 300.0, bound=0.998),
        "int8-ov@ov-bf16": variant("int8-ov", OV_BF16, 360.0, bound=0.995),  # 20% faster
    }
    assert choose_cpu("int8", variants).pair == "int8-ov@ov-bf16"


def test_a_pairs_own_measured_noise_widens_the_tie_beyond_the_floor():
    variants = {
        "int8-cpu": variant("int8-cpu", ORT, 300.0, bound=0.998),
        "int8-ov@ov-bf16": variant("int8-ov", OV_BF16, 360.0, bound=0.995, noise=0.25),
    }
    choice = choose_cpu("int8", variants)
    assert choice.pair == "int8-cpu" and "noise 25%" in choice.why


def test_a_tie_on_a_lower_is_better_metric_goes_to_the_smaller_drop():
    def drop(kind, runner, throughput, upper_bound):
        accuracy = AccuracyResult("top1_drop", 0.0, 1.0, True, {}, {}, {}, bound=upper_bound)
        return VariantResult(
            Artifact(kind, Path(f"model.{kind}.onnx"), 0, True, (), "k"),
            accuracy,
            Timing(1.0, throughput, 8, 2, 10),
            None,
            runner,
        )

    variants = {
        "int8-cpu": drop("int8-cpu", ORT, 310.0, upper_bound=0.9),
        "int8-ov@ov-bf16": drop("int8-ov", OV_BF16, 300.0, upper_bound=0.4),
    }
    assert choose_cpu("int8", variants).pair == "int8-ov@ov-bf16"


def test_the_fp32_reference_wins_a_tie_with_another_fp32_pair():
    reference = VariantResult(
        Artifact("fp32", Path("model.onnx"), 0, True, (), "k"), None, Timing(1.0, 100.0, 8, 2, 10), None
    )
    variants = {"fp32": reference, "fp32@ov-f32": variant("fp32", OV_F32, 104.0, bound=0.9999)}
    assert choose_cpu("fp32", variants).pair == "fp32"
    variants["fp32@ov-f32"] = variant("fp32", OV_F32, 130.0, bound=0.9999)
    assert choose_cpu("fp32", variants).pair == "fp32@ov-f32"


def test_the_pair_served_before_is_kept_while_the_new_fastest_is_within_the_noise():
    variants = {
        "int8-cpu": variant("int8-cpu", ORT, 300.0, bound=0.995),
        "int8-ov@ov-bf16": variant("int8-ov", OV_BF16, 307.0, bound=0.998),  # faster and more accurate
    }
    choice = choose_cpu("int8", variants, previous="int8-cpu")
    assert choice.pair == "int8-cpu"
    assert choice.why == (
        "kept: within the noise of int8-ov@ov-bf16 (300 vs 307 inf/s at batch 8, noise 5%), served before"
    )


def test_the_pair_served_before_is_kept_even_when_it_is_the_fastest_but_less_accurate():
    variants = {
        "int8-cpu": variant("int8-cpu", ORT, 307.0, bound=0.995),
        "int8-ov@ov-bf16": variant("int8-ov", OV_BF16, 300.0, bound=0.998),
    }
    assert choose_cpu("int8", variants).pair == "int8-ov@ov-bf16"  # a first build: the more accurate
    assert choose_cpu("int8", variants, previous="int8-cpu").pair == "int8-cpu"


def test_the_pair_served_before_is_replaced_when_beaten_beyond_the_noise():
    variants = {
        "int8-cpu": variant("int8-cpu", ORT, 300.0),
        "int8-ov@ov-bf16": variant("int8-ov", OV_BF16, 336.0),
    }
    choice = choose_cpu("int8", variants, previous="int8-cpu")
    assert choice.pair == "int8-ov@ov-bf16"
    assert choice.why.endswith(
        "; replaces int8-cpu, served before: int8-ov@ov-bf16 is faster by 12% (noise 5%)"
    )


def test_a_pair_served_before_that_is_now_outside_its_budget_is_not_kept():
    variants = {
        "int8-cpu": variant("int8-cpu", ORT, 300.0, passed=False),
        "int8-ov@ov-bf16": variant("int8-ov", OV_BF16, 290.0),
    }
    assert choose_cpu("int8", variants, previous="int8-cpu").pair == "int8-ov@ov-bf16"


def test_the_gpu_target_serves_the_artifact_tensorrt_builds():
    assert choose_gpu("bf16", {"bf16@ov-f32": variant("bf16", OV_F32, 1.0)}).pair == "bf16@ov-f32"
    assert choose_gpu("bf16", {}).pair is None


def two_matmuls(path: Path) -> Path:
    """x @ W1 -> y @ W2: two quantizable MatMuls named first and second."""
    rng = np.random.default_rng(0)
    weights = [
        numpy_helper.from_array(rng.standard_normal((16, 16)).astype(np.float32), f"w{i}") for i in (1, 2)
    ]
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"], name="first"),
        helper.make_node("MatMul", ["h", "w2"], ["y"], name="second"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 16])],
        weights,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def _fed_by_dequantize(path: Path) -> set[str]:
    graph = onnx.load(str(path)).graph
    dequantized = {out for n in graph.node if n.op_type == "DequantizeLinear" for out in n.output}
    return {n.name for n in graph.node if n.op_type == "MatMul" and any(i in dequantized for i in n.input)}


@pytest.fixture(scope="module")
def builder():
    with ArtifactBuilder() as artifacts:
        yield artifacts


def test_nncf_ignored_scope_is_the_chosen_kept_nodes_and_openvino_runs_the_result(tmp_path, builder):
    fp32 = two_matmuls(tmp_path / "model.onnx")
    calibration = DataSet.of({"x": np.random.default_rng(1).standard_normal((32, 16)).astype(np.float32)})
    everything = make_artifact(
        ArtifactRequest("int8-ov", fp32, "sha", tmp_path, Int8Settings(), (), calibration), builder
    )
    assert _fed_by_dequantize(everything.path) == {"first", "second"}
    keep = PrecisionChoices().with_artifact("int8-ov", ArtifactChoices(keep=[KeptNode(node="second")]))
    (tmp_path / "kept").mkdir()
    request = ArtifactRequest(
        "int8-ov",
        fp32,
        "sha",
        tmp_path / "kept",
        Int8Settings(),
        keep.for_artifact("int8-ov").node_names,
        calibration,
    )
    kept = make_artifact(request, builder)
    assert kept.kept == ("second",) and _fed_by_dequantize(kept.path) == {"first"}
    x = calibration.arrays["x"][:4]
    with IsolatedSession(artifact_runtime(), kept.path, 1, OV_BF16) as session:
        assert session.run({"x": x})["y"].shape == (4, 16)
