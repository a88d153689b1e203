"""Quantization-aware distillation of the TensorRT INT8 artifact, end to end on a model with a planted PTQ
failure: a hidden channel 60x larger than the rest (the next layer's FP32 function unchanged) makes the
next Linear's per-tensor activation scale coarse for every other channel. ModelOpt, the exporter,
AutoCast and the serving environment's ONNX Runtime all run for real."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import onnx
import pytest

from tests.integration.conftest import run_cli
from triton_repo.builders.precision.qad import float32_compute_nodes, row_digests

pytestmark = pytest.mark.integration

OUTLIER_MODEL_PY = textwrap.dedent(
    """
    import numpy as np
    import torch
    from torch import nn


    class Outlier(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.l1 = nn.Linear(32, 64)
            self.l2 = nn.Linear(64, 16)
            with torch.no_grad():  # hidden channel 0 x60, l2 reads it /60: the same FP32 function
                self.l1.weight[0] *= 60
                self.l1.bias[0] = self.l1.bias[0].abs() * 60
                self.l2.weight[:, 0] /= 60

        def forward(self, x):
            return self.l2(torch.relu(self.l1(x)))


    def build():
        return Outlier().eval()


    def _rows(seed, count):
        return {"x": np.random.default_rng(seed).standard_normal((count, 32)).astype(np.float32)}


    def sample():
        return _rows(0, 4)


    def calibration():
        return _rows(1, 64)


    def train():
        return _rows(2, 256)


    def evaluation():
        return _rows(3, 128)


    def train_with_eval():  # a spec mistake the build must refuse
        rows = train()
        return {"x": np.concatenate([rows["x"], evaluation()["x"][:5]])}
    """
)

OUTLIER_SPEC = textwrap.dedent(
    """
    name: outlier
    source: {factory: "model:build"}
    axes:
      batch: {min: 1, opt: 8, max: 64}
    inputs:
      - {name: x, dtype: float32, dims: [batch, 32]}
    outputs:
      - {name: y, dtype: float32, dims: [batch, 16], tolerance: {atol: 1.0e-4, rtol: 1.0e-3}}
    data: {sample: "model:sample", calibration: "model:calibration", eval: "model:evaluation", train: "model:train"}
    accuracy: {metric: cosine_min, budget: 0.825}
    precision:
      variants: [fp32, int8]
      int8:
        recover: qad
        qad: {steps: 300, learning_rate: 1.0e-3, batch_size: 16}
    triton: {instance_count: 1, intra_op_threads: 1}
    """
)


def _model(models_dir, name="outlier", spec=OUTLIER_SPEC):
    folder = models_dir / name
    folder.mkdir(parents=True)
    (folder / "model.py").write_text(OUTLIER_MODEL_PY)
    (folder / "model.yaml").write_text(spec.replace("name: outlier", f"name: {name}"))
    return folder


@pytest.fixture(scope="module")
def distilled(tmp_path_factory):
    """`triton-repo qad` on the outlier model: with 0 steps (PyTorch PTQ, the same quantizers), then with
    the spec's 300 (beside ModelOpt's ONNX PTQ)."""
    root = tmp_path_factory.mktemp("qad")
    folder = _model(root / "models")
    ptq = run_cli("qad", str(folder), "--steps", "0", "--no-ptq", "--work-dir", str(root / "build"))
    ptq_report = json.loads((root / "build" / "outlier" / "qad.json").read_text())
    result = run_cli("qad", str(folder), "--work-dir", str(root / "build"))
    return root, folder, result, (ptq, ptq_report)


def test_qad_recovers_a_planted_ptq_failure(distilled):
    root, _, result, (ptq_run, ptq_report) = distilled
    assert ptq_run.returncode == 1 and "outside the budget" in ptq_run.stderr  # the planted failure
    ptq = ptq_report["methods"]["QAD"]
    assert not ptq["passed"] and ptq_report["qad"]["steps"] == 0
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((root / "build" / "outlier" / "qad.json").read_text())
    qad = report["methods"]["QAD"]
    assert qad["passed"], qad
    assert qad["accuracy"]["value"] > ptq["accuracy"]["value"] + 0.03
    stats = report["qad"]
    assert stats["steps"] == 300 and stats["last_loss"] < stats["first_loss"]
    assert stats["quantized_modules"] == 2 and stats["kept_modules"] == []
    assert stats["training_rows"] == 64 + 256  # calibration and train, no eval row
    assert qad["int8_matrix_flops"] == pytest.approx(1.0)  # both Linears run INT8
    assert "QAD step 300/300" in result.stderr  # progress while training
    # ModelOpt's ONNX PTQ leaves this model's Gemms unquantized (its GEMV rule: the batch axis is
    # dynamic); the comparison says so instead of calling it an INT8 artifact
    onnx_ptq = report["methods"]["ONNX PTQ"]
    assert onnx_ptq["int8_matrix_flops"] == 0.0 and onnx_ptq["passed"]
    assert "PTQ vs QAD" in result.stdout


def test_qad_graph_is_strongly_typed(distilled):
    """Every tensor one dtype; Q/DQ carry INT8; every float op other than the I/O casts computes FP16."""
    root = distilled[0]
    model = onnx.load(str(root / "build" / "outlier" / "model.int8.onnx"))  # the build's, as spec'd
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    types = {v.name: v.type.tensor_type.elem_type for v in inferred.graph.value_info}
    types.update({t.name: t.data_type for t in model.graph.initializer})
    quantize = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert len(quantize) == 4  # input and weight of each Linear
    assert all(types[n.output[0]] == onnx.TensorProto.INT8 for n in quantize)
    fp16 = onnx.TensorProto.FLOAT16
    assert all(types[n.input[0]] == fp16 for n in quantize)  # quantized from FP16, as TensorRT runs it
    assert float32_compute_nodes(model) == []
    io = {t.name: t.type.tensor_type.elem_type for t in [*model.graph.input, *model.graph.output]}
    assert io == {"x": onnx.TensorProto.FLOAT, "y": onnx.TensorProto.FLOAT}


def test_qad_round_trips_through_the_build_gate(distilled, tmp_path):
    """The build makes the same artifact (cached under its key), gates it and reports PTQ-free facts."""
    root, folder = distilled[0], distilled[1]
    common = ["--repository", str(tmp_path / "repo"), "--work-dir", str(root / "build")]
    # every artifact: the cpu target alone would leave TensorRT's int8 graph out of the report
    result = run_cli("build", str(folder), *common, "--artifacts", "all", check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "repo" / "BUILD_REPORT.json").read_text())
    row = next(r for r in report["models"]["outlier"]["variants"] if r["artifact"] == "int8")
    assert row["within_budget"] and row["qad"]["steps"] == 300
    assert row["role"].startswith("ModelOpt QAD")
    assert row["int8_matrix_flops"] == pytest.approx(1.0)
    markdown = (tmp_path / "repo" / "BUILD_REPORT.md").read_text()
    assert "distilled (QAD) 300 steps" in markdown
    assert "QAD step" not in result.stderr  # the artifact `qad` built is the build's, reused by its key
    # The cpu target: the same student, exported with FP32 high precision, is a third candidate for
    # outlier_int8 (OpenVINO) beside the two post-training quantizers; the fastest within budget serves.
    rows = {r["artifact"]: r for r in report["models"]["outlier"]["variants"]}
    student = rows["int8-qad"]
    assert student["runtime"] == "ov-bf16" and student["candidate_for"] == "int8"
    assert student["qad"]["steps"] == 300  # the TensorRT artifact's training, not a second one
    assert student["role"] == "ModelOpt QAD Q/DQ INT8, FP32 elsewhere (OpenVINO, cpu serving)"
    assert student["int8_matrix_flops"] == pytest.approx(1.0)
    # one student: FP32 instead of FP16 around the same INT8 arithmetic moves the accuracy very little
    assert student["accuracy"]["value"] == pytest.approx(row["accuracy"]["value"], abs=0.02)
    candidates = [rows[kind] for kind in ("int8-cpu", "int8-ov", "int8-qad") if rows[kind]["within_budget"]]
    served = [r for r in candidates if r["status"] == "published"]
    assert len(served) == 1
    pair = served[0]["artifact"] + ("" if served[0]["runtime"] == "ort" else "@" + served[0]["runtime"])
    why = report["models"]["outlier"]["choices"]["int8"]["why"]
    fastest = max(candidates, key=lambda r: r["throughput_per_s"])
    # the fastest serves, or one within the noise of it that is more accurate (ties go to accuracy)
    assert served[0] is fastest or "within the noise" in why, why
    for other in candidates:
        if other is not served[0]:
            assert other["status"] in (
                f"measured: within budget, {pair} is faster",
                f"measured: within budget, {pair} chosen (this one is faster within the noise)",
            ), other["status"]


def test_the_cpu_qad_artifact_is_the_students_q_dq_graph_in_fp32(distilled):
    """model.int8-qad.onnx: the same quantizers as the TensorRT artifact, and no FP16 anywhere."""
    root = distilled[0]
    model = onnx.load(str(root / "build" / "outlier" / "model.int8-qad.onnx"))
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    types = {v.name: v.type.tensor_type.elem_type for v in inferred.graph.value_info}
    types.update({t.name: t.data_type for t in model.graph.initializer})
    types.update({v.name: v.type.tensor_type.elem_type for v in model.graph.input})
    quantize = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert len(quantize) == 4 and all(types[n.output[0]] == onnx.TensorProto.INT8 for n in quantize)
    assert onnx.TensorProto.FLOAT16 not in types.values()
    assert all(types[n.input[0]] == onnx.TensorProto.FLOAT for n in quantize)


def test_eval_rows_never_enter_training(tmp_path):
    folder = _model(
        tmp_path / "models",
        "leaky",
        OUTLIER_SPEC.replace('train: "model:train"', 'train: "model:train_with_eval"'),
    )
    result = run_cli("qad", str(folder), "--no-ptq", "--steps", "1", "--work-dir", str(tmp_path / "build"))
    assert result.returncode != 0
    assert "data.train shares 5 row(s) with data.eval" in result.stderr
    assert not (tmp_path / "build" / "leaky" / "precision-trials" / "model.int8.qad.onnx").exists()


def test_row_digests_ignore_padding_only():
    ids = np.array([[5, 6, 0, 0], [5, 6, 7, 0]], dtype=np.int64)
    padded = np.array([[5, 6, 0, 0, 0, 0]], dtype=np.int64)
    assert row_digests({"ids": ids})[0] == row_digests({"ids": padded})[0]
    assert row_digests({"ids": ids})[0] != row_digests({"ids": ids})[1]
