"""Files a model folder hands to export, checked before they are used: a checkpoint is read weights-only
(loading it cannot run code) and must fit the factory's module; an ONNX source's external data must stay
beside it. Every refusal is one line naming the spec field and the file."""

from __future__ import annotations

from pathlib import Path

from triton_repo.core.errors import SpecError
from triton_repo.core.spec import LoadedSpec

# Where training scripts put the weights inside a checkpoint dict (PyTorch Lightning, timm, torchvision
# references, many research repositories).
NESTED_STATE_KEYS = ("state_dict", "model_state_dict", "model", "state_dict_ema", "module")
PARALLEL_PREFIX = "module."  # torch.nn.DataParallel / DistributedDataParallel wrap every key


def load_checkpoint(loaded: LoadedSpec, module) -> str:
    """source.checkpoint into the factory's module, with strict=True; returns how it was read.

    Accepted: a state_dict saved with torch.save, read with torch.load(weights_only=True) so loading
    it cannot run code; a training checkpoint holding one under a usual key (state_dict, model, ...);
    keys that DataParallel prefixed with 'module.'; a .safetensors file. A key set or shape that does
    not match the factory's module is named.
    """
    name = loaded.spec.source.checkpoint
    path = loaded.resolve_file(name, "source.checkpoint")
    return load_weights(path, module, f"{loaded.path}: source.checkpoint: '{name}'")


def load_weights(path: Path, module, where: str) -> str:
    """load_checkpoint for a file not yet in a spec (`init`); `where` begins every refusal."""
    import torch

    state = _read_safetensors(path, where) if path.suffix == ".safetensors" else _read_torch(path, where)
    how = [path.suffix.lstrip(".") if path.suffix == ".safetensors" else "torch.load(weights_only=True)"]
    if isinstance(state, dict) and not _is_state_dict(state):
        nested = next((k for k in NESTED_STATE_KEYS if _is_state_dict(state.get(k))), None)
        if nested is not None:
            state = state[nested]
            how.append(f"the state_dict under '{nested}'")
    if not isinstance(state, dict):
        raise SpecError(
            f"{where} is not a state_dict (a dict of parameter name -> tensor): it holds "
            f"{type(state).__name__}; save the model's state_dict() with torch.save"
        )
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise SpecError(
                f"{where} is not a state_dict (a dict of parameter name -> tensor): its entry {key!r} "
                f"is {type(value).__name__}; save the model's state_dict() with torch.save"
            )
    expected = module.state_dict()
    if (
        state
        and all(k.startswith(PARALLEL_PREFIX) for k in state)
        and not any(k.startswith(PARALLEL_PREFIX) for k in expected)
    ):
        state = {k.removeprefix(PARALLEL_PREFIX): v for k, v in state.items()}
        how.append("'module.' prefixes removed")
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        problems = [
            f"{kind} keys {_some(keys)}"
            for kind, keys in (("missing", missing), ("unexpected", unexpected))
            if keys
        ]
        raise SpecError(f"{where} does not fit the factory's model: {'; '.join(problems)}")
    for key, tensor in expected.items():
        if state[key].shape != tensor.shape:
            raise SpecError(
                f"{where}: '{key}' has shape {list(state[key].shape)}, the factory's model has "
                f"{list(tensor.shape)}"
            )
    module.load_state_dict(state, strict=True)
    return ", ".join(how)


def _is_state_dict(value) -> bool:
    import torch

    return (
        isinstance(value, dict)
        and bool(value)
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items())
    )


def _read_torch(path: Path, where: str):
    import pickle

    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise SpecError(
            f"{where} is not a weights-only checkpoint, torch.load(weights_only=True) refused it "
            f"({_unpickler_reason(error)}); save the model's state_dict() with torch.save"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        reason = next((line for line in str(error).splitlines() if line.strip()), type(error).__name__)
        raise SpecError(f"{where} cannot be loaded by torch.load: {reason.split('. ', 1)[0]}") from None


def _read_safetensors(path: Path, where: str) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as error:
        reason = next((line for line in str(error).splitlines() if line.strip()), type(error).__name__)
        raise SpecError(f"{where} cannot be read as safetensors: {reason}") from None


def _some(keys: list[str], shown: int = 5) -> str:
    more = f" and {len(keys) - shown} more" if len(keys) > shown else ""
    return ", ".join(f"'{key}'" for key in keys[:shown]) + more


def _unpickler_reason(error: Exception) -> str:
    """The line of torch's long weights_only message that says what was refused."""
    text = str(error).rsplit("WeightsUnpickler error:", 1)[-1]
    boilerplate = ("Weights only load failed", "(1)", "(2)", "Check the documentation")
    lines = (line.strip() for line in text.splitlines())
    reason = next((line for line in lines if line and not line.startswith(boilerplate)), "not weights-only")
    return reason.split(" was not an allowed global", 1)[0].split(" Please use", 1)[0].rstrip(".")


def checked_source_onnx(loaded: LoadedSpec) -> Path:
    """source.onnx, checked before any of its external data is read: a parseable ONNX file whose
    external tensors all live in files inside its own folder."""
    import onnx
    from google.protobuf.message import DecodeError

    relative = loaded.spec.source.onnx
    path = loaded.resolve_file(relative, "source.onnx")
    where = f"{loaded.path}: source.onnx: '{relative}'"
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, OSError) as error:
        reason = next((line for line in str(error).splitlines() if line.strip()), type(error).__name__)
        raise SpecError(f"{where} is not a valid ONNX file ({reason})") from None
    folder = path.parent
    graphs = [model.graph] + [onnx.GraphProto(node=function.node) for function in model.functions]
    for tensor in (t for graph in graphs for t in _stored_tensors(graph)):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = next((entry.value for entry in tensor.external_data if entry.key == "location"), "")
        target = (folder / location).resolve()
        if not location or Path(location).is_absolute() or not target.is_relative_to(folder):
            raise SpecError(
                f"{where}: tensor '{tensor.name}' has its external data at '{location}', outside the ONNX "
                f"file's folder {folder} (keep external data files beside the .onnx file)"
            )
        if not target.is_file():
            raise SpecError(
                f"{where}: tensor '{tensor.name}' has its external data in '{location}', which does not "
                f"exist in {folder}"
            )
    return path


def _stored_tensors(graph):
    """Every tensor a graph stores: initializers, sparse initializers, node attributes, subgraphs."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield from (sparse.values, sparse.indices)
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            if attribute.HasField("sparse_tensor"):
                yield from (attribute.sparse_tensor.values, attribute.sparse_tensor.indices)
            for sparse in attribute.sparse_tensors:
                yield from (sparse.values, sparse.indices)
            for subgraph in ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs):
                yield from _stored_tensors(subgraph)
