"""config.pbtxt for the cpu target: built through Triton's protobuf schema and parsed back unchanged."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import minimal_spec, write_spec
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from tests.helpers import as_grpc_client_reads
from triton_repo.core.spec import load_spec
from triton_repo.repo.config import (
    cpu_model_config,
    parse_config,
    to_text,
    warmup_batch_sizes,
    warmup_rows,
)
from triton_repo.repo.store.layout import pointer_config


def batched_spec(tmp_path, **changes):
    spec = minimal_spec()
    spec["inputs"].append({"name": "scale", "dtype": "float16", "dims": ["batch", 2]})
    spec["outputs"].append({"name": "valid", "dtype": "bool", "dims": ["batch", "seq"]})
    spec["triton"] = {
        "dynamic_batching": {"preferred_batch_sizes": [2, 4], "max_queue_delay_microseconds": 500},
        "instance_count": 2,
        "intra_op_threads": 3,
    }
    spec.update(changes)
    return load_spec(write_spec(tmp_path, spec))


def unbatched_spec(tmp_path):
    spec = minimal_spec()
    spec["axes"] = {"seq": {"min": 1, "opt": 8, "max": 16}}
    spec["inputs"] = [{"name": "input_ids", "dtype": "int32", "dims": [3, "seq"]}]
    spec["outputs"] = [{"name": "embedding", "dtype": "float64", "dims": [3, 4]}]
    return load_spec(write_spec(tmp_path, spec))


def batched_warmup(loaded):
    sample = {
        "input_ids": np.arange(32, dtype=np.int64).reshape(2, 16),
        "attention_mask": np.ones((2, 16), dtype=np.int64),
        "scale": np.ones((2, 2), dtype=np.float16),
    }
    return warmup_rows(loaded, sample)


@pytest.fixture
def config(tmp_path):
    loaded = batched_spec(tmp_path)
    return cpu_model_config(loaded, "toy_fp32", batched_warmup(loaded))


def test_config_text_parses_back_to_the_same_proto(config, tmp_path):
    path = tmp_path / "config.pbtxt"
    path.write_text(to_text(config))
    assert parse_config(path) == config


def test_config_name_backend_and_max_batch_size(config):
    assert config.name == "toy_fp32"
    assert config.backend == "python"
    assert config.max_batch_size == 8


def test_config_dims_drop_batch_and_use_minus_one_for_seq(config):
    assert {t.name: list(t.dims) for t in config.input} == {
        "input_ids": [-1],
        "attention_mask": [-1],
        "scale": [2],
    }
    assert {t.name: list(t.dims) for t in config.output} == {"embedding": [4], "valid": [-1]}


def test_config_data_types_follow_spec_dtypes(config):
    types = {t.name: mc.DataType.Name(t.data_type) for t in [*config.input, *config.output]}
    assert types == {
        "input_ids": "TYPE_INT64",
        "attention_mask": "TYPE_INT64",
        "scale": "TYPE_FP16",
        "embedding": "TYPE_FP32",
        "valid": "TYPE_BOOL",
    }


def test_config_dynamic_batching_preferred_sizes_and_delay(config):
    assert config.HasField("dynamic_batching")
    assert list(config.dynamic_batching.preferred_batch_size) == [2, 4]
    assert config.dynamic_batching.max_queue_delay_microseconds == 500


def test_config_has_no_queue_policy_when_queue_size_and_timeout_are_zero(config):
    assert not config.dynamic_batching.HasField("default_queue_policy")
    assert "default_queue_policy" not in to_text(config)


def queue_policy_config(tmp_path, **queue):
    batching = {"preferred_batch_sizes": [2, 4], "max_queue_delay_microseconds": 500, **queue}
    loaded = batched_spec(tmp_path, triton={"dynamic_batching": batching})
    return cpu_model_config(loaded, "toy_fp32", batched_warmup(loaded))


def test_config_queue_policy_rejects_beyond_queue_size_and_timeout(tmp_path):
    config = queue_policy_config(tmp_path, max_queue_size=64, queue_timeout_microseconds=250_000)
    policy = config.dynamic_batching.default_queue_policy
    assert config.dynamic_batching.HasField("default_queue_policy")
    assert policy.max_queue_size == 64
    assert policy.default_timeout_microseconds == 250_000
    assert policy.timeout_action == mc.ModelQueuePolicy.REJECT
    assert policy.allow_timeout_override is False


def test_config_queue_policy_parses_back_to_the_same_proto(tmp_path):
    config = queue_policy_config(tmp_path, max_queue_size=64, queue_timeout_microseconds=250_000)
    path = tmp_path / "config.pbtxt"
    path.write_text(to_text(config))
    parsed = parse_config(path)
    assert parsed == config
    assert parsed.dynamic_batching.default_queue_policy.max_queue_size == 64
    assert parsed.dynamic_batching.default_queue_policy.default_timeout_microseconds == 250_000


@pytest.mark.parametrize(
    ("queue", "size", "timeout"),
    [({"max_queue_size": 16}, 16, 0), ({"queue_timeout_microseconds": 1000}, 0, 1000)],
)
def test_config_queue_policy_when_only_one_value_is_set(tmp_path, queue, size, timeout):
    policy = queue_policy_config(tmp_path, **queue).dynamic_batching.default_queue_policy
    assert (policy.max_queue_size, policy.default_timeout_microseconds) == (size, timeout)
    assert policy.timeout_action == mc.ModelQueuePolicy.REJECT


def test_config_instance_group_count_and_cpu_kind(config):
    assert len(config.instance_group) == 1
    group = config.instance_group[0]
    assert group.kind == mc.ModelInstanceGroup.KIND_CPU
    assert group.count == 2


def test_config_parameters_name_onnx_file_and_threads(config):
    assert config.parameters["onnx_file"].string_value == "model.onnx"
    assert config.parameters["intra_op_threads"].string_value == "3"


def test_config_warmup_for_batch_one_and_opt_batch(config):
    assert [(w.name, w.batch_size) for w in config.model_warmup] == [
        ("golden_sample_batch_1", 1),
        ("golden_sample_batch_4", 4),
    ]
    for warmup in config.model_warmup:
        assert sorted(warmup.inputs) == ["attention_mask", "input_ids", "scale"]
        ids = warmup.inputs["input_ids"]
        assert list(ids.dims) == [16]
        assert ids.data_type == mc.TYPE_INT64
        assert ids.input_data_file == "input_ids"
        assert list(warmup.inputs["scale"].dims) == [2]
        assert warmup.inputs["scale"].data_type == mc.TYPE_FP16
        assert warmup.inputs["scale"].input_data_file == "scale"


def test_every_warmup_carries_count_in_the_json_a_grpc_client_reads(config):
    """Triton runs a sample once for count 0 as for 1, but the gRPC config read as JSON leaves a 0 out
    and PyTriton's ModelClient then fails on the model (KeyError: 'count')."""
    warmups = as_grpc_client_reads(config)["model_warmup"]
    assert [(w["name"], w["count"]) for w in warmups] == [
        ("golden_sample_batch_1", 1),
        ("golden_sample_batch_4", 1),
    ]
    zero = mc.ModelConfig()
    zero.CopyFrom(config)
    zero.model_warmup[0].count = 0
    assert "count" not in as_grpc_client_reads(zero)["model_warmup"][0]  # what the clients met before


def test_the_store_pointer_of_a_config_keeps_every_warmup_count(config):
    pointer = text_format.Parse(pointer_config(to_text(config), [3, 4], 3), mc.ModelConfig())
    assert [w["count"] for w in as_grpc_client_reads(pointer)["model_warmup"]] == [1, 1]


def test_config_text_contains_warmup_file_names(config):
    text = to_text(config)
    assert 'input_data_file: "input_ids"' in text
    assert 'backend: "python"' in text


def test_config_without_dynamic_batching_section_when_disabled(tmp_path):
    loaded = batched_spec(tmp_path, triton={"dynamic_batching": None})
    config = cpu_model_config(loaded, "toy_fp32", batched_warmup(loaded))
    assert config.max_batch_size == 8
    assert not config.HasField("dynamic_batching")


def test_config_for_unbatched_spec_keeps_all_dims_and_has_no_dynamic_batching(tmp_path):
    loaded = unbatched_spec(tmp_path)
    sample = {"input_ids": np.zeros((3, 8), dtype=np.int32)}
    rows = warmup_rows(loaded, sample)
    config = cpu_model_config(loaded, "toy_fp32", rows)
    assert config.max_batch_size == 0
    assert not config.HasField("dynamic_batching")
    assert list(config.input[0].dims) == [3, -1]
    assert list(config.output[0].dims) == [3, 4]
    assert mc.DataType.Name(config.input[0].data_type) == "TYPE_INT32"
    assert mc.DataType.Name(config.output[0].data_type) == "TYPE_FP64"
    assert [(w.name, w.batch_size) for w in config.model_warmup] == [("golden_sample_batch_1", 1)]
    assert list(config.model_warmup[0].inputs["input_ids"].dims) == [3, 8]


def test_config_for_max_batch_size_zero_keeps_batch_dim(tmp_path):
    loaded = batched_spec(tmp_path, max_batch_size=0, triton={"dynamic_batching": None})
    config = cpu_model_config(loaded, "toy_fp32", batched_warmup(loaded))
    assert config.max_batch_size == 0
    assert not config.HasField("dynamic_batching")
    assert list(config.input[0].dims) == [-1, -1]


def test_warmup_rows_drop_batch_dim_and_cast_to_spec_dtype(tmp_path):
    loaded = batched_spec(tmp_path)
    sample = {
        "input_ids": np.arange(10, dtype=np.int32).reshape(2, 5),
        "attention_mask": np.ones((2, 5), dtype=np.int64),
        "scale": np.ones((2, 2), dtype=np.float32),
    }
    rows = warmup_rows(loaded, sample)
    np.testing.assert_array_equal(rows["input_ids"], [0, 1, 2, 3, 4])
    assert rows["input_ids"].dtype == np.int64 and rows["scale"].dtype == np.float16


def test_warmup_rows_keep_whole_array_when_unbatched(tmp_path):
    rows = warmup_rows(unbatched_spec(tmp_path), {"input_ids": np.zeros((3, 8), dtype=np.int32)})
    assert rows["input_ids"].shape == (3, 8)


@pytest.mark.parametrize(
    ("batch_axis", "max_batch_size", "expected"),
    [
        ({"min": 1, "opt": 4, "max": 8}, None, [1, 4]),
        ({"min": 1, "opt": 1, "max": 8}, None, [1]),
        ({"min": 1, "opt": 16, "max": 32}, 8, [1, 8]),
    ],
)
def test_warmup_batch_sizes_are_one_and_opt_clamped_to_max(tmp_path, batch_axis, max_batch_size, expected):
    spec = minimal_spec()
    spec["axes"]["batch"] = batch_axis
    spec["max_batch_size"] = max_batch_size
    assert warmup_batch_sizes(load_spec(write_spec(tmp_path, spec))) == expected


def test_warmup_batch_sizes_is_one_when_unbatched(tmp_path):
    assert warmup_batch_sizes(unbatched_spec(tmp_path)) == [1]


def test_an_image_input_declares_its_layout_and_a_labelled_output_its_labels_file(tmp_path):
    spec = minimal_spec()
    spec["axes"] = {"batch": {"min": 1, "opt": 2, "max": 4}}
    spec["inputs"] = [{"name": "image", "dtype": "float32", "dims": ["batch", 3, 8, 8], "format": "NHWC"}]
    spec["outputs"] = [
        {"name": "logits", "dtype": "float32", "dims": ["batch", 3], "labels": "labels.txt"},
        {"name": "score", "dtype": "float32", "dims": ["batch"]},
    ]
    loaded = load_spec(write_spec(tmp_path, spec))
    config = cpu_model_config(loaded, "toy_fp32", {"image": np.zeros((3, 8, 8), np.float32)})
    assert config.input[0].format == mc.ModelInput.FORMAT_NHWC
    assert config.output[0].label_filename == "labels.txt" and config.output[1].label_filename == ""
    # [batch]: Triton needs a dim, so dims [1] with an empty reshape (clients see [batch, 1])
    assert list(config.output[1].dims) == [1] and config.output[1].HasField("reshape")
    assert list(config.output[1].reshape.shape) == []
    assert parse_config_text(to_text(config)) == config


def parse_config_text(text: str):
    from google.protobuf import text_format

    return text_format.Parse(text, mc.ModelConfig())


def test_shape_ranges_name_each_dynamic_dim_of_each_input_with_the_batch_capped(config, tmp_path):
    import json

    ranges = json.loads(config.parameters["shape_ranges"].string_value)
    assert ranges["input_ids"] == [["batch", 1, 8], ["seq", 2, 32]]
    assert ranges["scale"] == [["batch", 1, 8], None]
    capped = batched_spec(tmp_path / "capped", max_batch_size=4)
    config = cpu_model_config(capped, "toy_fp32", batched_warmup(capped))
    assert json.loads(config.parameters["shape_ranges"].string_value)["input_ids"][0] == ["batch", 1, 4]


def test_shape_ranges_carry_an_axis_multiple_of_for_the_served_model_to_refuse_other_sizes(tmp_path):
    import json

    stepped = batched_spec(
        tmp_path / "stepped",
        axes={
            "batch": {"min": 1, "opt": 4, "max": 8},
            "seq": {"min": 8, "opt": 16, "max": 32, "multiple_of": 8},
        },
    )
    config = cpu_model_config(stepped, "toy_fp32", batched_warmup(stepped))
    assert json.loads(config.parameters["shape_ranges"].string_value)["input_ids"] == [
        ["batch", 1, 8],
        ["seq", 8, 32, 8],
    ]


def test_the_runtime_that_serves_a_variant_is_in_its_config_and_parses_back(tmp_path):
    from triton_repo.runtimes.isolated import OV_BF16

    loaded = batched_spec(tmp_path)
    config = cpu_model_config(loaded, "toy_bf16", batched_warmup(loaded), OV_BF16.parameters)
    assert config.parameters["runtime"].string_value == "openvino"
    assert config.parameters["inference_precision"].string_value == "bf16"
    assert parse_config_text(to_text(config)) == config
    default = cpu_model_config(loaded, "toy_fp32", batched_warmup(loaded))
    assert default.parameters["runtime"].string_value == "onnxruntime"
    assert "inference_precision" not in default.parameters
