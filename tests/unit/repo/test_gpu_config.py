"""gpu target configs through Triton's protobuf schema, the preflight refusals, and staging without a GPU."""

from __future__ import annotations

import copy

import numpy as np
import onnx
import pytest
from conftest import minimal_spec, write_spec
from google.protobuf import text_format
from onnx import TensorProto, helper
from tritonclient.grpc import model_config_pb2 as mc

from tests.helpers import artifact_runtime, as_grpc_client_reads
from triton_repo.core.errors import PreflightError
from triton_repo.core.golden import GoldenCase
from triton_repo.core.releases import RELEASES
from triton_repo.core.spec import Tolerance, load_spec
from triton_repo.repo.config import parse_config, to_text
from triton_repo.repo.gpu_config import (
    onnx_gpu_model_config,
    preflight,
    trt_model_config,
    warmup_points,
)
from triton_repo.repo.gpu_writer import GPU_HOST_COMMANDS, stage_gpu_models
from triton_repo.repo.profiles import derive_profiles
from triton_repo.repo.staging import StagingRequest

RELEASE = RELEASES["25.06"]
TWO_PROFILES = [{"batch": {"min": 1, "opt": 1, "max": 2}}, {"batch": {"min": 3, "opt": 6, "max": 8}}]


def loaded_spec(tmp_path, **gpu):
    data = minimal_spec()
    data["gpu"] = gpu
    return load_spec(write_spec(tmp_path / "models", data))


def build_trt(loaded, plans=None):
    profiles = derive_profiles(loaded.spec)
    return trt_model_config(
        loaded, "toy_fp16_trt", profiles, warmup_points(loaded, profiles), plans or {}
    ), profiles


def round_trip(config: mc.ModelConfig) -> mc.ModelConfig:
    parsed = text_format.Parse(to_text(config), mc.ModelConfig())
    assert parsed == config
    return parsed


def engine(plan="model.sm86.plan", trt="10.11.0.33", capability="8.6", profiles=None, **extra):
    return {
        "plan": plan,
        "tensorrt_version": trt,
        "compute_capability": capability,
        "profiles": profiles,
        **extra,
    }


def test_trt_config_from_one_profile(tmp_path):
    loaded = loaded_spec(tmp_path)
    config, _ = build_trt(loaded, {"8.6": "model.sm86.plan", "9.0": "model.sm90.plan"})
    parsed = round_trip(config)
    assert parsed.platform == "tensorrt_plan" and not parsed.backend
    assert parsed.max_batch_size == 8
    assert list(parsed.dynamic_batching.preferred_batch_size) == [4]
    (group,) = parsed.instance_group
    assert group.kind == mc.ModelInstanceGroup.KIND_GPU and group.count == 1 and not group.profile
    assert dict(parsed.cc_model_filenames) == {"8.6": "model.sm86.plan", "9.0": "model.sm90.plan"}
    assert parsed.default_model_filename == "model.plan"
    assert [list(t.dims) for t in parsed.input] == [[-1], [-1]]
    warmup = {w.name: (w.batch_size, list(w.inputs["input_ids"].dims)) for w in parsed.model_warmup}
    assert warmup == {"profile0_min": (1, [2]), "profile0_opt": (4, [16]), "profile0_max": (8, [32])}
    assert parsed.model_warmup[0].inputs["input_ids"].input_data_file == "input_ids.seq2"


def test_every_gpu_warmup_carries_count_in_the_json_a_grpc_client_reads(tmp_path):
    loaded = loaded_spec(tmp_path, profiles=TWO_PROFILES)
    trt, profiles = build_trt(loaded)
    onnx_config = onnx_gpu_model_config(
        loaded, "toy_fp32_onnx", "fp32", profiles, warmup_points(loaded, profiles)
    )
    for config in (trt, onnx_config):
        warmups = as_grpc_client_reads(config)["model_warmup"]
        assert len(warmups) == 6 and [w["count"] for w in warmups] == [1] * 6, config.name


def test_trt_config_with_several_profiles(tmp_path):
    loaded = loaded_spec(tmp_path, profiles=TWO_PROFILES, instance_count=2)
    parsed = round_trip(build_trt(loaded)[0])
    assert parsed.max_batch_size == 8
    assert list(parsed.dynamic_batching.preferred_batch_size) == [1, 6]
    (group,) = parsed.instance_group
    assert list(group.profile) == ["0", "1"] and group.count == 2
    names = [w.name for w in parsed.model_warmup]
    assert names == [
        "profile0_min",
        "profile0_opt",
        "profile0_max",
        "profile1_min",
        "profile1_opt",
        "profile1_max",
    ]
    assert [w.batch_size for w in parsed.model_warmup] == [1, 1, 2, 3, 6, 8]


def test_hardware_compatible_plan_is_the_default_file(tmp_path):
    loaded = loaded_spec(tmp_path, hardware_compatibility_level="ampere_plus")
    parsed = round_trip(build_trt(loaded, {"8.6": "model.sm86.plan"})[0])
    assert parsed.default_model_filename == "model.sm86.plan"


@pytest.mark.parametrize(("precision", "mode"), [("fp32", "FP32"), ("fp16", "FP16"), ("int8", "INT8")])
def test_onnx_config_with_tensorrt_accelerator(tmp_path, precision, mode):
    loaded = loaded_spec(tmp_path, profiles=TWO_PROFILES)
    profiles = derive_profiles(loaded.spec)
    config = onnx_gpu_model_config(
        loaded, f"toy_{precision}_onnx", precision, profiles, warmup_points(loaded, profiles)
    )
    parsed = round_trip(config)
    assert parsed.backend == "onnxruntime" and parsed.default_model_filename == "model.onnx"
    assert parsed.instance_group[0].kind == mc.ModelInstanceGroup.KIND_GPU
    (accelerator,) = parsed.optimization.execution_accelerators.gpu_execution_accelerator
    assert accelerator.name == "tensorrt"
    parameters = dict(accelerator.parameters)
    assert parameters["precision_mode"] == mode
    assert parameters["trt_engine_cache_enable"] == "true"
    assert parameters["trt_engine_cache_path"] == f"/trt-cache/toy_{precision}_onnx"
    assert parameters["trt_profile_min_shapes"] == "input_ids:1x2,attention_mask:1x2"
    assert parameters["trt_profile_max_shapes"] == "input_ids:8x32,attention_mask:8x32"


def test_onnx_config_without_accelerator(tmp_path):
    loaded = loaded_spec(tmp_path, onnx_trt_accelerator=False)
    profiles = derive_profiles(loaded.spec)
    parsed = round_trip(onnx_gpu_model_config(loaded, "toy_fp32_onnx", "fp32", profiles, []))
    assert not parsed.HasField("optimization")


def test_preflight_accepts_a_consistent_config(tmp_path):
    config, profiles = build_trt(loaded_spec(tmp_path), {"8.6": "model.sm86.plan"})
    shapes = [p.to_json() for p in profiles]
    preflight(config, shapes, [engine(profiles=shapes)], RELEASE, batched=True)


def refusal(config, shapes, engines=(), release=RELEASE, **options) -> str:
    with pytest.raises(PreflightError) as info:
        preflight(config, shapes, list(engines), release, batched=True, **options)
    message = str(info.value)
    assert "\n" not in message and message.startswith(config.name)
    return message


def test_preflight_refuses_a_plan_from_another_tensorrt(tmp_path):
    config, profiles = build_trt(loaded_spec(tmp_path), {"8.6": "model.sm86.plan"})
    shapes = [p.to_json() for p in profiles]
    message = refusal(config, shapes, [engine(trt="10.8.0.43", profiles=shapes)])
    assert (
        "built with TensorRT 10.8.0.43, the server runs 10.11.0.33" in message
        and "TRITON_RELEASE=25.06" in message
    )


def test_preflight_refuses_version_compatible_plans_without_the_server_flag(tmp_path):
    config, profiles = build_trt(loaded_spec(tmp_path), {"8.6": "model.sm86.plan"})
    shapes = [p.to_json() for p in profiles]
    old = engine(trt="10.8.0.43", profiles=shapes, version_compatible=True)
    assert "version-compatible=true" in refusal(config, shapes, [old])
    preflight(config, shapes, [old], RELEASE, batched=True, allow_version_compatible=True)


def test_preflight_refuses_engine_built_with_other_profiles(tmp_path):
    config, profiles = build_trt(loaded_spec(tmp_path), {"8.6": "model.sm86.plan"})
    shapes = [p.to_json() for p in profiles]
    other = copy.deepcopy(shapes)
    other[0]["input_ids"]["max"] = [4, 32]
    assert "built with other profiles" in refusal(config, shapes, [engine(profiles=other)])


def test_preflight_refuses_cc_filenames_without_engines(tmp_path):
    config, profiles = build_trt(loaded_spec(tmp_path), {"8.6": "model.sm86.plan"})
    assert "cc_model_filenames[8.6] names model.sm86.plan, which no engine built" in refusal(
        config, [p.to_json() for p in profiles]
    )


def test_preflight_refuses_max_batch_size_beyond_the_profiles(tmp_path):
    config, profiles = build_trt(loaded_spec(tmp_path))
    config.max_batch_size = 16
    assert "max_batch_size 16 but the engine's profiles stop at batch 8" in refusal(
        config, [p.to_json() for p in profiles]
    )


def test_preflight_refuses_a_batch_gap_between_profiles(tmp_path):
    config, profiles = build_trt(loaded_spec(tmp_path, profiles=TWO_PROFILES))
    shapes = [p.to_json() for p in profiles]
    for name in shapes[1]:
        shapes[1][name]["min"][0] = 4  # batch 3 now fits neither 1..2 nor 4..8
    assert "batch 3 (<= max_batch_size 8) fits no engine profile (batch ranges 1..2, 4..8)" in refusal(
        config, shapes
    )


def test_preflight_refuses_a_fixed_dim_the_engine_leaves_dynamic(tmp_path):
    config, profiles = build_trt(loaded_spec(tmp_path))
    config.input[0].dims[0] = 16
    assert "input 'input_ids' dim 1 is 16 in the config but 2..32 in engine profile 0" in refusal(
        config, [p.to_json() for p in profiles]
    )


def test_preflight_refuses_profiles_the_instances_cannot_use(tmp_path):
    config, profiles = build_trt(loaded_spec(tmp_path, profiles=TWO_PROFILES))
    shapes = [p.to_json() for p in profiles]
    del config.instance_group[0].profile[:]
    assert "Triton would use profile 0 only" in refusal(config, shapes)
    config.instance_group[0].profile.extend(["0", "2"])
    assert "instance_group profile '2' but the engine has 2 profile(s)" in refusal(config, shapes)


def test_preflight_refuses_warmup_outside_every_profile(tmp_path):
    config, profiles = build_trt(loaded_spec(tmp_path))
    config.model_warmup[0].inputs["input_ids"].dims[0] = 64
    assert "warmup 'profile0_min'" in refusal(config, [p.to_json() for p in profiles])


def test_preflight_refuses_mismatched_inputs(tmp_path):
    config, profiles = build_trt(loaded_spec(tmp_path))
    shapes = [p.to_json() for p in profiles]
    del shapes[0]["attention_mask"]
    assert "engine profile 0 has ['input_ids']" in refusal(config, shapes)


# ---- staging without a GPU -------------------------------------------------------------------------------

SPEC = {
    "name": "tiny",
    "source": {"onnx": "model.onnx"},
    "axes": {"batch": {"min": 1, "opt": 2, "max": 4}},
    "inputs": [{"name": "x", "dtype": "float32", "dims": ["batch", 4]}],
    "outputs": [{"name": "y", "dtype": "float32", "dims": ["batch", 4]}],
    "data": {"sample": "sample.npz"},
}


def tiny_onnx(path):
    """y = x * 2, x float32 [batch, 4]."""
    two = helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "two"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        initializer=[two],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)


def test_stage_without_gpu_writes_configs_and_no_plan(tmp_path):
    loaded = load_spec(write_spec(tmp_path / "models", SPEC))
    onnx_path = tmp_path / "model.onnx"
    tiny_onnx(onnx_path)
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    sample = GoldenCase("sample", {"x": x}, {"y": x * 2})
    staged = stage_gpu_models(
        StagingRequest(
            loaded, "fp32", onnx_path, sample, {"y": Tolerance()}, tmp_path / "staging", artifact_runtime()
        ),
        RELEASE,
        None,
        tmp_path / "engines",
    )
    trt, ort = staged
    assert (trt.name, ort.name) == ("tiny_fp32_trt", "tiny_fp32_onnx")
    assert not list(trt.path.rglob("*.plan")) and not (tmp_path / "engines").exists()
    assert trt.manifest_entry["engine_pending"] is True and trt.manifest_entry["engines"] == []
    assert trt.manifest_entry["release"] == "25.06" and trt.manifest_entry["target"] == "gpu"
    trt_config = parse_config(trt.path / "config.pbtxt")
    assert trt_config.platform == "tensorrt_plan" and not trt_config.cc_model_filenames
    assert sorted(p.name for p in (trt.path / "warmup").iterdir()) == ["x.static"]
    assert (trt.path / "warmup" / "x.static").stat().st_size == 16
    assert [w.batch_size for w in trt_config.model_warmup] == [1, 2, 4]
    assert (ort.path / "1" / "model.onnx").is_file() and (ort.path / "1" / "golden.npz").is_file()
    assert parse_config(ort.path / "config.pbtxt").backend == "onnxruntime"
    assert trt_config.version_policy.latest.num_versions == loaded.spec.triton.keep_versions
    assert set(ort.manifest_entry["files"]) >= {
        "config.pbtxt",
        "1/model.onnx",
        "1/golden.npz",
        "warmup/x.static",
    }
    assert GPU_HOST_COMMANDS[0] == "make engines"


def _scalar_model(tmp_path, batched: bool):
    """x [rows, 4] * rate (a 0-d float input) -> y [rows, 4]; unbatched also total = sum(y) (0-d)."""
    rows = "batch" if batched else "n"
    data = minimal_spec("scalars")
    data["source"] = {"onnx": "model.onnx"}
    data["axes"] = {rows: {"min": 1, "opt": 2, "max": 4}}
    if not batched:
        data["max_batch_size"] = 0
    data["inputs"] = [
        {"name": "input:0", "dtype": "float32", "dims": [rows, 4]},
        {"name": "rate", "dtype": "float32", "dims": []},
    ]
    data["outputs"] = [{"name": "y", "dtype": "float32", "dims": [rows, 4]}]
    nodes = [helper.make_node("Mul", ["input:0", "rate"], ["y"])]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [rows, 4])]
    if not batched:
        data["outputs"].append({"name": "total", "dtype": "float32", "dims": []})
        nodes.append(helper.make_node("ReduceSum", ["y"], ["total"], keepdims=0))
        outputs.append(helper.make_tensor_value_info("total", TensorProto.FLOAT, []))
    graph = helper.make_graph(
        nodes,
        "scalars",
        [
            helper.make_tensor_value_info("input:0", TensorProto.FLOAT, [rows, 4]),
            helper.make_tensor_value_info("rate", TensorProto.FLOAT, []),
        ],
        outputs,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = write_spec(tmp_path / "models", data)
    onnx.save(model, str(path.parent / "model.onnx"))
    loaded = load_spec(path)
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    outputs = {"y": x * 1.5} | ({} if batched else {"total": np.array((x * 1.5).sum(), np.float32)})
    sample = GoldenCase("sample", {"input:0": x, "rate": np.array(1.5, np.float32)}, outputs)
    return loaded, path.parent / "model.onnx", sample


@pytest.mark.parametrize("batched", [True, False], ids=["per-request", "unbatched"])
def test_scalars_reach_tritons_own_backends_through_an_adapted_graph(tmp_path, batched):
    """Triton has no scalars in an unbatched model and hands a per-request one over as [rows]: the gpu
    models serve a graph with an adapter, checked against the golden sample without a GPU."""
    loaded, onnx_path, sample = _scalar_model(tmp_path, batched)
    staged = stage_gpu_models(
        StagingRequest(
            loaded,
            "fp32",
            onnx_path,
            sample,
            {"y": Tolerance(), "total": Tolerance()},
            tmp_path / "staging",
            artifact_runtime(),
        ),
        RELEASE,
        None,
        tmp_path / "engines",
    )  # the _onnx model's staged graph reproduced the golden sample through the adapter
    for model in staged:
        config = round_trip(parse_config(model.path / "config.pbtxt"))
        rate = next(t for t in config.input if t.name == "rate")
        assert list(rate.dims) == [1] and rate.HasField("reshape") == batched
        assert not config.HasField("dynamic_batching")  # batched: values never mixed; unbatched: none
        files = [d.input_data_file for w in config.model_warmup for d in w.inputs.values()]
        assert files and all(":" not in f and "/" not in f for f in files)
    served = onnx.load(str(staged[1].path / "1" / "model.onnx")).graph
    assert [
        tuple(d.dim_value or d.dim_param for d in i.type.tensor_type.shape.dim) for i in served.input
    ] == [
        ("batch" if batched else "n", 4),
        ("batch",) if batched else (1,),
    ]
