"""config.pbtxt through Triton's protobuf schema (tritonclient's model_config_pb2), never string templates."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from triton_repo.core.spec import TRITON_DTYPES, LoadedSpec

ONNX_FILE = "model.onnx"
WARMUP_DIR = "warmup"
LABELS_FILE = "labels.txt"


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


def labels_files(loaded: LoadedSpec) -> dict[str, str]:
    """Output -> the name of its labels file in the model directory: labels.txt when one output has
    labels, else <output>.labels.txt."""
    spec = loaded.spec
    labelled = [o.name for o in spec.outputs if spec.labels_file(o.name)]
    if len(labelled) == 1:
        return {labelled[0]: LABELS_FILE}
    return {name: f"{name}.labels.txt" for name in labelled}


def write_labels(loaded: LoadedSpec, model_dir: Path) -> dict[str, str]:
    """Copy each labelled output's labels beside config.pbtxt, checking there is one per class."""
    from triton_repo.core.errors import SpecError

    spec = loaded.spec
    written = {}
    for output, filename in labels_files(loaded).items():
        source = spec.labels_file(output)
        field = (
            "ensemble.labels" if source == (spec.ensemble and spec.ensemble.labels) else "outputs[].labels"
        )
        labels = loaded.resolve_file(source, field).read_text(encoding="utf-8").splitlines()
        tensor = next(o for o in spec.outputs if o.name == output)
        classes = next(d for d in spec.triton_dims(tensor) if d != 1)
        if len(labels) != classes:
            raise SpecError(
                f"{loaded.path}: {field}: {source} has {len(labels)} lines, but output '{output}' has "
                f"{classes} classes (one label per line, in class order)"
            )
        (model_dir / filename).write_text("\n".join(labels) + "\n", encoding="utf-8")
        written[output] = filename
    return written


def add_tensors(config: mc.ModelConfig, loaded: LoadedSpec) -> None:
    """The spec's inputs and outputs, with Triton dims (batch dropped when batched, dynamic axes -1),
    image layouts (format) and labels files (label_filename, for the classification extension)."""
    spec = loaded.spec
    labels = labels_files(loaded)
    for tensor in spec.served_inputs:  # a state input or output is the server's, never a client's
        added = config.input.add(name=tensor.name, data_type=data_type(tensor.dtype))
        _set_dims(added, spec.triton_dims(tensor), spec.batched)
        if tensor.format is not None:
            added.format = mc.ModelInput.Format.Value(f"FORMAT_{tensor.format}")
    for tensor in spec.served_outputs:
        added = config.output.add(name=tensor.name, data_type=data_type(tensor.dtype))
        _set_dims(added, spec.triton_dims(tensor), spec.batched)
        if tensor.name in labels:
            added.label_filename = labels[tensor.name]


def _set_dims(tensor, dims: list[int], batched: bool) -> None:
    """Triton needs at least one dim: a batched tensor of shape [batch] (or a per-request scalar) is dims
    [1] with reshape [], so clients send and receive [batch, 1] and the model sees [batch] (Triton's own
    convention). Triton refuses an empty reshape in an unbatched model ("scalar tensors are not
    supported"): there a scalar is dims [1], and the model takes it as [1] (the python backend's template
    reshapes it for the graph; the gpu target's graph gets an adapter, see triton_repo.repo.scalars)."""
    if dims:
        tensor.dims.extend(dims)
        return
    tensor.dims.append(1)
    if batched:
        tensor.reshape.SetInParent()


def scalar_tensors(loaded: LoadedSpec) -> list[str]:
    """The 0-d inputs and outputs of an unbatched model: served as [1], the graph's are []."""
    spec = loaded.spec
    if spec.batched:
        return []
    return [t.name for t in [*spec.inputs, *spec.outputs] if t.scalar]


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


def add_sequence_batching(config: mc.ModelConfig, loaded: LoadedSpec) -> None:
    """Triton's sequence batcher for a stateful model: its strategy, the idle timeout after which a
    sequence is dropped, and (oldest) how many live sequences it batches from."""
    sequence = loaded.spec.sequence
    batching = config.sequence_batching
    batching.max_sequence_idle_microseconds = sequence.idle_timeout_ms * 1000
    if sequence.strategy == "direct":
        batching.direct.SetInParent()
        return
    batching.oldest.max_candidate_sequences = sequence.max_candidate_sequences
    dynamic = loaded.spec.triton.dynamic_batching
    if dynamic is not None and config.max_batch_size > 0:
        batching.oldest.preferred_batch_size.extend(dynamic.preferred_batch_sizes)
        batching.oldest.max_queue_delay_microseconds = dynamic.max_queue_delay_microseconds


def initial_state_file(input_name: str) -> str:
    """The file in the version directory holding a state's value at START, when it is not zeros."""
    return f"initial.{warmup_file(input_name)}.npy"


def sequence_state(loaded: LoadedSpec) -> list[dict]:
    """The python backend template's view of each state: the input and output that carry it, its batch
    axis, one sequence's dims and dtype, and its initial value's file (none: zeros)."""
    spec = loaded.spec
    entries = []
    for pair in spec.state_pairs:
        tensor = next(t for t in spec.inputs if t.name == pair.input)
        entries.append(
            {
                "input": pair.input,
                "output": pair.output,
                "axis": spec.batch_axis(tensor),
                "dims": [1 if d == "batch" else d for d in tensor.dims],
                "dtype": tensor.dtype,
                "initial_file": None if pair.initial == "zeros" else initial_state_file(pair.input),
            }
        )
    return entries


_FILE_SAFE = re.compile(r"[A-Za-z0-9_.-]+")


def warmup_file(tensor_name: str, suffix: str = "") -> str:
    """The file under warmup/ holding an input's warmup row: the tensor's own name when it is a plain file
    name, else the name with every other character as '_' and a short hash (`input:0` -> `input_0-3f2a...`,
    `image/raw` never a subfolder; two names never share a file)."""
    if _FILE_SAFE.fullmatch(tensor_name) and tensor_name not in (".", ".."):
        base = tensor_name
    else:
        digest = hashlib.sha256(tensor_name.encode()).hexdigest()[:8]
        base = f"{re.sub(r'[^A-Za-z0-9_.-]', '_', tensor_name).strip('.') or 'input'}-{digest}"
    return f"{base}.{suffix}" if suffix else base


def add_warmup(
    config: mc.ModelConfig,
    loaded: LoadedSpec,
    name: str,
    batch_size: int,
    dims: dict[str, tuple[int, ...]],
    files: dict[str, str],
) -> None:
    """One warmup request: per input its dims (no batch dim) and its data file under warmup/.

    `count: 1` is explicit although Triton runs a sample once for 0 as for 1 (model_config.proto): the
    gRPC model config, read as JSON, omits zero values, and clients that require the key (PyTriton's
    ModelClient: `KeyError: 'count'`) could not read the config of a model with warmup.
    """
    entry = config.model_warmup.add(name=name, batch_size=batch_size, count=1)
    for tensor in loaded.spec.served_inputs:
        entry.inputs[tensor.name].data_type = data_type(tensor.dtype)
        entry.inputs[tensor.name].dims.extend(dims[tensor.name] or [1])  # a [batch] input is dims [1]
        entry.inputs[tensor.name].input_data_file = files[tensor.name]


def shape_ranges(loaded: LoadedSpec) -> dict[str, list]:
    """Per input, per dim of a request (batch first when batched): None for a fixed dim (Triton checks
    those), else [axis, min, max] from the spec, the batch axis capped at max_batch_size, and the axis'
    multiple_of after them when it has one."""
    spec = loaded.spec
    ranges = {}
    for tensor in spec.served_inputs:
        dims = []
        for dim in tensor.dims:
            if isinstance(dim, int):
                dims.append(None)
                continue
            axis = spec.axes[dim]
            high = (
                min(axis.max, spec.effective_max_batch_size) if dim == "batch" and spec.batched else axis.max
            )
            dims.append([dim, axis.min, high, *([axis.multiple_of] if axis.multiple_of > 1 else [])])
        ranges[tensor.name] = dims
    return ranges


def cpu_model_config(
    loaded: LoadedSpec, name: str, warmup: dict[str, np.ndarray], runtime: dict[str, str] | None = None
) -> mc.ModelConfig:
    """The cpu-target config: python backend running the ONNX file; dims and batching from the spec.

    `warmup` holds one sample (no batch dim) per input; Triton repeats it to each warmup batch size.
    `runtime` is the runner's parameters for the template (default ONNX Runtime): {"runtime":
    "openvino", "inference_precision": "bf16"} runs it in OpenVINO at BF16.
    """
    spec = loaded.spec
    config = new_config(loaded, name, backend="python")
    add_tensors(config, loaded)
    config.instance_group.add(kind=mc.ModelInstanceGroup.KIND_CPU, count=spec.triton.instance_count)
    batching = spec.triton.dynamic_batching
    if spec.sequence is not None:
        add_sequence_batching(config, loaded)
        config.parameters["sequence_state"].string_value = json.dumps(sequence_state(loaded))
        config.parameters["sequence_idle_ms"].string_value = str(spec.sequence.idle_timeout_ms)
    else:
        add_dynamic_batching(config, loaded, batching.preferred_batch_sizes if batching else [])
    config.parameters["onnx_file"].string_value = ONNX_FILE
    for key, value in (runtime or {"runtime": "onnxruntime"}).items():
        config.parameters[key].string_value = value
    config.parameters["intra_op_threads"].string_value = str(spec.triton.intra_op_threads)
    config.parameters["shape_ranges"].string_value = json.dumps(shape_ranges(loaded), sort_keys=True)
    if spec.per_request_inputs:  # only when there are any: other configs stay as they were
        config.parameters["per_request_inputs"].string_value = json.dumps(spec.per_request_inputs)
    if scalar_tensors(loaded):
        config.parameters["scalar_tensors"].string_value = json.dumps(scalar_tensors(loaded))
    dims = {tensor.name: warmup[tensor.name].shape for tensor in spec.served_inputs}
    files = {tensor.name: warmup_file(tensor.name) for tensor in spec.served_inputs}
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
    for tensor in loaded.spec.served_inputs:
        array = sample[tensor.name]
        row = array[0] if loaded.spec.batched and not tensor.scalar else array
        rows[tensor.name] = np.require(row, dtype=tensor.dtype, requirements="C")  # 0-d stays 0-d
    return rows


def to_text(config: mc.ModelConfig) -> str:
    return text_format.MessageToString(config)


def parse_config(path: Path) -> mc.ModelConfig:
    return text_format.Parse(path.read_text(), mc.ModelConfig())
