"""`triton-repo tune --traffic`: the models a candidate is called through on raw data (a fused-model
candidate, a candidate ensemble), what they are loaded with, and the traffic named in the results (the
server side is in tests/integration/test_tune_traffic.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tritonclient.grpc import model_config_pb2 as mc

from tests.unit.clients.test_tune import point
from triton_repo.clients.tune.candidate import (
    Form,
    deploy,
    ensemble_candidate_config,
    fused_candidate_config,
    fused_candidate_files,
)
from triton_repo.clients.tune.search import Measured
from triton_repo.clients.tune.space import Batching, Candidate
from triton_repo.core.errors import ServerError, TritonRepoError
from triton_repo.repo.config import to_text

STEP = json.dumps({"kind": "tokenize", "tokenizer_file": "tokenizer.json"})
CANDIDATE = Candidate("m_fp32", "fp32", 2, 1, Batching(2000, (4,)))


def _config(folder: Path, config: mc.ModelConfig) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.pbtxt").write_text(to_text(config))
    return folder


def _parameters(config: mc.ModelConfig, **values: str) -> None:
    for key, value in values.items():
        config.parameters[key].string_value = value


def fused_model(repository: Path) -> Path:
    """A published fused model `m` as the build writes it: the int8 variant's OpenVINO settings."""
    config = mc.ModelConfig(name="m", backend="python", max_batch_size=8)
    config.version_policy.latest.num_versions = 2
    config.input.add(name="TEXT", data_type=mc.TYPE_STRING, dims=[1])
    config.output.add(name="embedding", data_type=mc.TYPE_FP32, dims=[4], label_filename="labels.txt")
    config.instance_group.add(kind=mc.ModelInstanceGroup.KIND_CPU, count=1)
    config.dynamic_batching.max_queue_delay_microseconds = 500
    config.dynamic_batching.preferred_batch_size.extend([8])
    _parameters(
        config,
        onnx_file="model.onnx",
        runtime="openvino",
        inference_precision="bf16",
        intra_op_threads="2",
        step=STEP,
        pad_values='{"input_ids": 0}',
    )
    return _config(repository / "m", config)


def variant(repository: Path, name: str = "m_fp32", runtime: str = "onnxruntime") -> Path:
    """A published variant at version 3, served by ONNX Runtime (no inference precision)."""
    config = mc.ModelConfig(name=name, backend="python", max_batch_size=8)
    config.input.add(name="input_ids", data_type=mc.TYPE_INT64, dims=[-1])
    config.output.add(name="embedding", data_type=mc.TYPE_FP32, dims=[4])
    _parameters(config, onnx_file="graph.onnx", runtime=runtime, intra_op_threads="0", shape_ranges="{}")
    return _config(repository / name, config)


def test_a_fused_candidate_runs_the_candidate_variants_onnx_file_runtime_and_settings(tmp_path):
    fused, published = fused_model(tmp_path), variant(tmp_path)
    config = fused_candidate_config(fused, published, 3, CANDIDATE, "m_fp32__tune4_fused")
    assert config.name == "m_fp32__tune4_fused" and not config.HasField("version_policy")
    assert config.input[0].name == "TEXT" and config.output[0].label_filename == ""
    assert [(g.count, g.kind) for g in config.instance_group] == [(2, mc.ModelInstanceGroup.KIND_CPU)]
    assert config.dynamic_batching.max_queue_delay_microseconds == 2000
    assert list(config.dynamic_batching.preferred_batch_size) == [4]
    parameters = {k: v.string_value for k, v in config.parameters.items()}
    assert parameters == {
        "onnx_file": str((published / "3" / "graph.onnx").resolve()),
        "runtime": "onnxruntime",  # the variant's, not the fused model's openvino
        "intra_op_threads": "1",
        "step": STEP,
        "pad_values": '{"input_ids": 0}',
    }  # no inference_precision (the variant has none), no shape_ranges (the step fits them)
    off = fused_candidate_config(fused, published, 3, Candidate("m_fp32", "fp32", 1, 2, Batching(None)), "x")
    assert not off.HasField("dynamic_batching")


def test_a_fused_candidate_is_sent_the_fused_code_and_the_candidate_variants_runtime_files(tmp_path):
    fused_version, variant_version = tmp_path / "m" / "7", tmp_path / "m_fp32" / "3"
    (fused_version / "__pycache__").mkdir(parents=True)
    variant_version.mkdir(parents=True)
    for name in ("model.py", "onnx_model.py", "preprocessing.py", "tokenizer.json", "registry.py"):
        (fused_version / name).write_text(f"fused {name}")
    for name in ("openvino_cpu.py", "model.onnx", "model.onnx.data", "golden.npz"):
        (fused_version / name).write_text("not sent")
    for name in ("model.py", "registry.py", "onnxruntime_cpu.py", "model.onnx"):
        (variant_version / name).write_text(f"variant {name}")
    files = fused_candidate_files(fused_version, variant_version, "onnxruntime")
    assert {path: content.decode() for path, content in files.items()} == {
        "1/model.py": "fused model.py",
        "1/onnx_model.py": "fused onnx_model.py",
        "1/preprocessing.py": "fused preprocessing.py",
        "1/tokenizer.json": "fused tokenizer.json",
        "1/registry.py": "variant registry.py",
        "1/onnxruntime_cpu.py": "variant onnxruntime_cpu.py",
    }


def steps_ensemble(repository: Path) -> Path:
    config = mc.ModelConfig(name="img", platform="ensemble", max_batch_size=8)
    config.version_policy.latest.num_versions = 2
    config.input.add(name="IMAGE", data_type=mc.TYPE_STRING, dims=[1])
    config.output.add(name="logits", data_type=mc.TYPE_FP32, dims=[10], label_filename="labels.txt")
    first = config.ensemble_scheduling.step.add(model_name="img_preprocess", model_version=-1)
    first.input_map["IMAGE"], first.output_map["image"] = "IMAGE", "image"
    second = config.ensemble_scheduling.step.add(model_name="img_int8", model_version=2)
    second.input_map["image"], second.output_map["logits"] = "image", "logits"
    return _config(repository / "img", config)


def test_a_candidate_ensemble_is_the_published_pre_processing_then_the_candidate(tmp_path):
    config = ensemble_candidate_config(steps_ensemble(tmp_path), "img_int8", "img_fp32__tune2", "ens")
    assert config.name == "ens" and config.platform == "ensemble" and not config.HasField("version_policy")
    assert config.output[0].label_filename == ""  # a config-only model has no labels file
    steps = [(s.model_name, s.model_version) for s in config.ensemble_scheduling.step]
    assert steps == [("img_preprocess", -1), ("img_fp32__tune2", -1)]
    assert dict(config.ensemble_scheduling.step[1].output_map) == {"logits": "logits"}
    with pytest.raises(TritonRepoError, match="no step calls img_bf16"):
        ensemble_candidate_config(tmp_path / "img", "img_bf16", "x", "y")


class Control:
    """Model control that records loads and unloads, refusing the models named in `refuse`."""

    http_url = "http://127.0.0.1:9"  # nothing answers: a refused ensemble is never found ready
    headers: dict = {}

    def __init__(self, refuse: tuple[str, ...] = ()) -> None:
        self.refuse, self.calls = refuse, []

    def load(self, name: str, config: str, files: dict) -> None:
        self.calls.append(("load", name, json.loads(config), sorted(files)))
        if name in self.refuse:
            raise ServerError(f"could not load '{name}': failed to poll from model repository")

    def unload(self, name: str) -> None:
        self.calls.append(("unload", name))


def test_a_steps_candidate_loads_the_variant_then_its_ensemble_and_is_called_through_it(tmp_path):
    published, ensemble = variant(tmp_path, "img_fp32"), steps_ensemble(tmp_path)
    (published / "3").mkdir()
    (published / "3" / "model.py").write_text("template")
    control = Control()
    candidate = Candidate("img_fp32", "fp32", 1, 2, Batching(None))
    deployed = deploy(control, Form("steps", ensemble, "img_int8"), published, 3, candidate, 5)
    assert deployed.called == "img_fp32__tune5_ens" and not deployed.failure
    assert deployed.loaded == ("img_fp32__tune5_ens", "img_fp32__tune5")  # unloaded in this order
    (variant_load, ensemble_load) = control.calls
    assert variant_load[1] == "img_fp32__tune5" and variant_load[3] == ["1/model.py"]
    assert ensemble_load[1] == "img_fp32__tune5_ens" and ensemble_load[2]["platform"] == "ensemble"
    assert ensemble_load[2]["ensemble_scheduling"]["step"][1]["model_name"] == "img_fp32__tune5"


def test_a_refused_candidate_ensemble_unloads_the_variant_loaded_for_it(tmp_path):
    published, ensemble = variant(tmp_path, "img_fp32"), steps_ensemble(tmp_path)
    (published / "3").mkdir()
    (published / "3" / "model.py").write_text("template")
    control = Control(refuse=("img_fp32__tune1_ens",))
    candidate = Candidate("img_fp32", "fp32", 1, 2, Batching(None))
    deployed = deploy(control, Form("steps", ensemble, "img_int8"), published, 3, candidate, 1)
    assert "failed to poll" in deployed.failure and deployed.loaded == ()
    assert control.calls[-1] == ("unload", "img_fp32__tune1")


def test_a_fused_candidate_is_one_model_loaded_with_its_files(tmp_path):
    fused, published = fused_model(tmp_path), variant(tmp_path)
    (fused / "7").mkdir()
    (fused / "7" / "model.py").write_text("fused template")
    (published / "3").mkdir()
    for name in ("registry.py", "onnxruntime_cpu.py"):
        (published / "3" / name).write_text(name)
    control = Control()
    deployed = deploy(control, Form("fused", fused, "m_int8"), published, 3, CANDIDATE, 2)
    assert deployed.called == "m_fp32__tune2_fused" and not deployed.failure
    assert deployed.loaded == ("m_fp32__tune2_fused",)
    ((_, name, config, files),) = control.calls
    assert name == "m_fp32__tune2_fused" and config["parameters"]["runtime"]["string_value"] == "onnxruntime"
    assert files == ["1/model.py", "1/onnxruntime_cpu.py", "1/registry.py"]
    (published / "3" / "registry.py").unlink()  # a variant missing its runtime files: refused, not loaded
    missing = deploy(Control(), Form("fused", fused, "m_int8"), published, 3, CANDIDATE, 3)
    assert "registry.py" in missing.failure and missing.loaded == ()


def test_the_results_and_tuning_yaml_name_the_traffic_the_winner_was_chosen_on(tmp_path):
    from triton_repo.clients.tune.results import chosen_line, tuning_measured, write_results
    from triton_repo.clients.tune.session import TuneResult

    winner = Measured(CANDIDATE, "full", points=[point(2, 150.0, 20.0)])
    winner.best = winner.points[0]
    traffic = {
        "file": "lines.txt",
        "rows": 9,
        "label": "traffic=lines.txt (9 rows)",
        "sent_to": "fused model",
    }
    accuracy = {"m_fp32": {"metric": "cosine", "value": None, "verdict": "reference"}}
    result = TuneResult("m", [winner], accuracy, winner, winner, 12.0, False, 24, traffic)
    assert chosen_line(result).endswith("chosen on traffic=lines.txt (9 rows), sent to the fused model")
    options = {"slo_p99_ms": 100.0, "objective": "throughput", "protocol": "grpc", "search": "quick"}
    assert tuning_measured(result, options)["traffic"] == "traffic=lines.txt (9 rows)"
    folder = write_results(result, options | {"traffic": "lines.txt", "batch": 1}, tmp_path / "out")
    assert json.loads((folder / "results.json").read_text())["traffic"] == traffic
    golden = TuneResult("m", [winner], accuracy, winner, winner, 12.0, False, 24)
    assert "chosen on" not in chosen_line(golden) and "traffic" not in tuning_measured(golden, options)
