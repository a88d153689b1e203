"""Which files and settings the in-process floor runs: a variant's config, or an ensemble's step then the
model it calls (one fused model, or the step model and the variant)."""

from __future__ import annotations

import json
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as mc

from triton_repo.clients.bench.floor import ensemble_floor_plan, floor_plan
from triton_repo.repo.config import to_text

STEP = json.dumps({"kind": "tokenize", "tokenizer_file": "tokenizer.json", "ids": "ids", "mask": "mask"})


def served(repository: Path, name: str, version: int, **parameters: str) -> None:
    config = mc.ModelConfig(name=name, backend="python")
    for key, value in parameters.items():
        config.parameters[key].string_value = value
    (repository / name / str(version)).mkdir(parents=True)
    (repository / name / "config.pbtxt").write_text(to_text(config))
    if "onnx_file" in parameters:
        (repository / name / str(version) / parameters["onnx_file"]).write_bytes(b"onnx")


def runs_onnx(onnx_file: str = "model.onnx") -> dict:
    return {
        "onnx_file": onnx_file,
        "runtime": "openvino",
        "inference_precision": "bf16",
        "intra_op_threads": "2",
    }


def test_a_fused_ensemble_runs_its_own_step_and_onnx_file(tmp_path):
    served(tmp_path, "text", 3, step=STEP, **runs_onnx())
    plan = ensemble_floor_plan(
        tmp_path, {"text": {"kind": "ensemble", "form": "fused", "version": 3}}, "text"
    )
    assert plan.onnx == tmp_path / "text" / "3" / "model.onnx" and plan.step_dir == tmp_path / "text" / "3"
    assert (plan.runtime, plan.precision, plan.threads, json.loads(plan.step)) == (
        "openvino",
        "bf16",
        2,
        json.loads(STEP),
    )


def test_an_ensemble_of_steps_runs_the_step_models_code_then_the_variants_onnx_file(tmp_path):
    served(tmp_path, "img_preprocess", 1, step=STEP)
    served(tmp_path, "img_int8", 4, **runs_onnx("int8.onnx"))
    served(tmp_path, "img", 1)
    manifest = {
        "img": {"kind": "ensemble", "steps": ["img_preprocess", "img_int8"], "version": 1},
        "img_preprocess": {"kind": "preprocess", "version": 1},
        "img_int8": {"kind": "model", "version": 4},
    }
    plan = ensemble_floor_plan(tmp_path, manifest, "img")
    assert plan.onnx == tmp_path / "img_int8" / "4" / "int8.onnx"
    assert plan.step_dir == tmp_path / "img_preprocess" / "1" and plan.step == STEP
    assert plan.onnx.parent != plan.step_dir


def test_no_pipeline_floor_for_an_ensemble_with_a_postprocess_step_or_a_variant_without_onnx(tmp_path):
    steps = ["det_preprocess", "det_fp32", "det_postprocess"]
    assert ensemble_floor_plan(tmp_path, {"det": {"kind": "ensemble", "steps": steps}}, "det") is None
    served(tmp_path, "x", 1)  # no onnx_file: not a python-backend ONNX model
    assert floor_plan(tmp_path / "x" / "config.pbtxt", tmp_path / "x" / "1") is None
