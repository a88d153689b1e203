"""config.pbtxt through Triton's protobuf schema (tritonclient's model_config_pb2), never string templates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from triton_repo.spec import TRITON_DTYPES, LoadedSpec

ONNX_FILE = "model.onnx"
WARMUP_DIR = "warmup"


def _data_type(dtype: str) -> int:
    return mc.DataType.Value(TRITON_DTYPES[dtype])


def new_config(loaded: LoadedSpec, name: str, **fields) -> mc.ModelConfig:
    """A config with what every model of the spec shares: name, max_batch_size, and the version policy.

    Triton serves the latest `triton.keep_versions` version directories; publishing keeps that many on
    disk, so the previous one is there to roll back to.
    """
    config = mc.ModelConfig(name=name, max_batch_size=loaded.spec.effective_max_batch_size, **fields)
    config.version_policy.latest.num_versions = loaded.spec.triton.keep_versions
    return config


def cpu_model_config(loaded: LoadedSpec, name: str, warmup: dict[str, np.ndarray]) -> mc.ModelConfig:
    """The cpu-target config: python backend running ONNX Runtime; dims and batching from the spec.

    `warmup` holds one sample (no batch dim) per input; Triton repeats it to each warmup batch size.
    """
    spec = loaded.spec
    config = new_config(loaded, name, backend="python")
    for tensor in spec.inputs:
        config.input.add(name=tensor.name, data_type=_data_type(tensor.dtype), dims=spec.triton_dims(tensor))
    for tensor in spec.outputs:
        config.output.add(name=tensor.name, data_type=_data_type(tensor.dtype), dims=spec.triton_dims(tensor))
    config.instance_group.add(kind=mc.ModelInstanceGroup.KIND_CPU, count=spec.triton.instance_count)
    batching = spec.triton.dynamic_batching
    if spec.batched and batching is not None:
        config.dynamic_batching.preferred_batch_size.extend(batching.preferred_batch_sizes)
        config.dynamic_batching.max_queue_delay_microseconds = batching.max_queue_delay_microseconds
        if batching.has_queue_policy:  # touching the field at all would add it to every config.pbtxt
            policy = config.dynamic_batching.default_queue_policy
            policy.max_queue_size = batching.max_queue_size
            policy.default_timeout_microseconds = batching.queue_timeout_microseconds
            policy.timeout_action = mc.ModelQueuePolicy.REJECT
            policy.allow_timeout_override = False
    config.parameters["onnx_file"].string_value = ONNX_FILE
    config.parameters["intra_op_threads"].string_value = str(spec.triton.intra_op_threads)
    for batch_size in warmup_batch_sizes(loaded):
        entry = config.model_warmup.add(name=f"golden_sample_batch_{batch_size}", batch_size=batch_size)
        for tensor in spec.inputs:
            sample = warmup[tensor.name]
            entry.inputs[tensor.name].data_type = _data_type(tensor.dtype)
            entry.inputs[tensor.name].dims.extend(sample.shape)
            entry.inputs[tensor.name].input_data_file = tensor.name
    return config


def warmup_batch_sizes(loaded: LoadedSpec) -> list[int]:
    """Batch 1 and the batch axis' opt size, so the first real requests do not pay for warm-up."""
    spec = loaded.spec
    if not spec.batched:
        return [1]
    opt = min(spec.axes["batch"].opt, spec.effective_max_batch_size)
    return sorted({1, opt})


def warmup_rows(loaded: LoadedSpec, sample: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The row written (as raw row-major bytes) to warmup/<input>: the first golden sample of each input (batch dim removed)."""
    rows = {}
    for tensor in loaded.spec.inputs:
        array = sample[tensor.name]
        row = array[0] if loaded.spec.batched else array
        rows[tensor.name] = np.ascontiguousarray(row, dtype=tensor.dtype)
    return rows


def to_text(config: mc.ModelConfig) -> str:
    return text_format.MessageToString(config)


def parse_config(path: Path) -> mc.ModelConfig:
    return text_format.Parse(path.read_text(), mc.ModelConfig())
