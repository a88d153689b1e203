"""config.pbtxt through Triton's protobuf schema (tritonclient's model_config_pb2), never string templates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from triton_repo.spec import TRITON_DTYPES, LoadedSpec

ONNX_FILE = "model.onnx"
WARMUP_DIR = "warmup"


def data_type(dtype: str) -> int:
    return mc.DataType.Value(TRITON_DTYPES[dtype])


def new_config(loaded: LoadedSpec, name: str, max_batch_size: int | None = None, **fields) -> mc.ModelConfig:
    """A config with what every model of the spec shares: name, max_batch_size (default the spec's),
    and the version policy.

    Triton serves the latest `triton.keep_versions` version directories; publishing keeps that many on
    disk, so the previous one is there to roll back to.
    """
    if max_batch_size is None:
        max_batch_size = loaded.spec.effective_max_batch_size
    config = mc.ModelConfig(name=name, max_batch_size=max_batch_size, **fields)
    config.version_policy.latest.num_versions = loaded.spec.triton.keep_versions
    return config


def add_tensors(config: mc.ModelConfig, loaded: LoadedSpec) -> None:
    """The spec's inputs and outputs, with Triton dims (batch dropped when batched, dynamic axes -1)."""
    spec = loaded.spec
    for tensor in spec.inputs:
        config.input.add(name=tensor.name, data_type=data_type(tensor.dtype), dims=spec.triton_dims(tensor))
    for tensor in spec.outputs:
        config.output.add(name=tensor.name, data_type=data_type(tensor.dtype), dims=spec.triton_dims(tensor))


def add_dynamic_batching(config: mc.ModelConfig, loaded: LoadedSpec, preferred: list[int]) -> None:
    """The spec's dynamic batcher with `preferred` batch sizes, and its overload policy when set."""
    batching = loaded.spec.triton.dynamic_batching
    if config.max_batch_size == 0 or batching is None:
        return
    config.dynamic_batching.preferred_batch_size.extend(preferred)
    config.dynamic_batching.max_queue_delay_microseconds = batching.max_queue_delay_microseconds
    if batching.has_queue_policy:  # touching the field at all would add it to every config.pbtxt
        policy = config.dynamic_batching.default_queue_policy
        policy.max_queue_size = batching.max_queue_size
        policy.default_timeout_microseconds = batching.queue_timeout_microseconds
        policy.timeout_action = mc.ModelQueuePolicy.REJECT
        policy.allow_timeout_override = False


def add_warmup(
    config: mc.ModelConfig,
    loaded: LoadedSpec,
    name: str,
    batch_size: int,
    dims: dict[str, tuple[int, ...]],
    files: dict[str, str],
) -> None:
    """One warmup request: per input its dims (no batch dim) and its data file under warmup/."""
    entry = config.model_warmup.add(name=name, batch_size=batch_size)
    for tensor in loaded.spec.inputs:
        entry.inputs[tensor.name].data_type = data_type(tensor.dtype)
        entry.inputs[tensor.name].dims.extend(dims[tensor.name])
        entry.inputs[tensor.name].input_data_file = files[tensor.name]


def cpu_model_config(loaded: LoadedSpec, name: str, warmup: dict[str, np.ndarray]) -> mc.ModelConfig:
    """The cpu-target config: python backend running ONNX Runtime; dims and batching from the spec.

    `warmup` holds one sample (no batch dim) per input; Triton repeats it to each warmup batch size.
    """
    spec = loaded.spec
    config = new_config(loaded, name, backend="python")
    add_tensors(config, loaded)
    config.instance_group.add(kind=mc.ModelInstanceGroup.KIND_CPU, count=spec.triton.instance_count)
    batching = spec.triton.dynamic_batching
    add_dynamic_batching(config, loaded, batching.preferred_batch_sizes if batching else [])
    config.parameters["onnx_file"].string_value = ONNX_FILE
    config.parameters["intra_op_threads"].string_value = str(spec.triton.intra_op_threads)
    dims = {tensor.name: warmup[tensor.name].shape for tensor in spec.inputs}
    files = {tensor.name: tensor.name for tensor in spec.inputs}
    for batch_size in warmup_batch_sizes(loaded):
        add_warmup(config, loaded, f"golden_sample_batch_{batch_size}", batch_size, dims, files)
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
