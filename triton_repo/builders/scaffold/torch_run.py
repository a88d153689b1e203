"""Inside init's child process: build the user's module, find the inputs forward() takes (given, or
guessed from its first layer and run), find which dims run at another size, name them, and export."""

from __future__ import annotations

import importlib.util
import inspect
import re
import sys
import warnings
from pathlib import Path

from triton_repo.builders.scaffold.torch_source import INPUT_FORM
from triton_repo.core.errors import SpecError

BATCH = 2  # the example batch: 2, so a batch dim is told apart from a dim of size 1
AUDIO = re.compile(r"(?i)audio|wav|speech|pcm|waveform|input_values|signal")  # as the data stub reads
# inputs named as a recurrent state: an output of the same shape is taken for its next value
STATE_NAMES = re.compile(r"(?i)^(h|c|hx|cx|h_?0|c_?0|state|states|hidden|memory|cache)(_?0|_in|_prev)?$")
OPSETS = {"torchscript": 17, "dynamo": 18}
IMAGE_SIDES = (224, 32, 64, 28, 96, 128, 256)


def build_and_export(
    folder, module, function, checkpoint, given, onnx_path, exporters, output_names=()
) -> dict:
    import torch

    torch.manual_seed(0)
    net, notes = _build(Path(folder), module, function, checkpoint)
    names = _forward_inputs(net)
    given = [(name, tuple(shape), dtype) for name, shape, dtype in given]
    examples, how = _inputs(net, names, given, f"{module}.py:{function}")
    notes.append(how)
    outputs = _run(net, examples)
    if isinstance(outputs, str):
        raise SpecError(f"{module}.py:{function}: forward refused the inputs {_shapes(examples)}: {outputs}")
    dynamic, found = _dynamic_dims(net, examples)
    notes += found
    found = _output_names(outputs, examples)
    output_names = list(output_names) if len(output_names) == len(found) else found
    exporter, opset = _export(net, examples, dynamic, output_names, Path(onnx_path), exporters)
    notes.append(
        f"exported with the {exporter} exporter (opset {opset}) for the probe; build exports it again"
    )
    return {
        "places": [[name, index] for name, dims in dynamic.items() for index in dims],
        "examples": {
            axis: examples[name].shape[index]
            for name, dims in dynamic.items()
            for index, axis in dims.items()
        },
        "inputs": list(examples),
        "outputs": output_names,
        "exporter": exporter,
        "opset": opset,
        "notes": notes,
    }


def _build(folder: Path, module_name: str, function: str, checkpoint: str | None):
    import torch

    file = folder / f"{module_name}.py"
    spec = importlib.util.spec_from_file_location(module_name, file)
    loaded = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(folder))
    try:
        spec.loader.exec_module(loaded)
    except ModuleNotFoundError as error:
        raise SpecError(
            f"{file.name} imports '{error.name}', which is neither installed nor beside it (init copies only "
            f"the factory's file): copy {error.name}.py into {folder.name}/ or install it, then run init again"
        ) from None
    factory = getattr(loaded, function, None)
    if not callable(factory):
        raise SpecError(f"{file.name} has no function or class '{function}' (--factory FILE.py:FUNCTION)")
    net = factory()
    if not isinstance(net, torch.nn.Module):
        raise SpecError(f"{file.name}:{function}() returned {type(net).__name__}, not a torch.nn.Module")
    notes = [f"the network from {file.name}:{function}"]
    if checkpoint is not None:
        from triton_repo.builders.model_files import load_weights

        how = load_weights(folder / checkpoint, net, f"{checkpoint}")
        notes.append(f"weights from {checkpoint} ({how})")
    return net.eval().float(), notes


def _forward_inputs(net) -> list[str]:
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    parameters = inspect.signature(net.forward).parameters.values()
    return [p.name for p in parameters if p.kind in kinds and p.default is inspect.Parameter.empty]


def _inputs(net, names: list[str], given: list, where: str):
    """{name: example tensor} in forward's order, and how they were found."""
    by_name = {name: (shape, dtype) for name, shape, dtype in given}
    unknown = sorted(set(by_name) - set(names))
    if unknown:
        raise SpecError(f"{where}: forward({', '.join(names)}) has no input {unknown[0]!r} (--input)")
    missing = [name for name in names if name not in by_name]
    if not missing:
        examples = {name: _tensor(name, *by_name[name]) for name in names}
        return examples, f"inputs {_shapes(examples)}, as given"
    if not names:
        raise SpecError(
            f"{where}: forward takes no input without a default: give each with --input {INPUT_FORM}"
        )
    if len(names) > 1:
        needed = " ".join(f"--input {name}:SHAPE[:DTYPE]" for name in missing)
        why = "inputs are guessed only for a forward of one input" if by_name else "too many to guess"
        raise SpecError(
            f"{where}: forward({', '.join(names)}) takes {len(names)} inputs, {why}: give {needed}"
        )
    name = names[0]
    layer = _first_layer(net)
    tried = []
    for shape, dtype in _candidates(layer):
        for batch in (BATCH, 1):
            example = {name: _tensor(name, (batch, *shape[1:]), dtype)}
            if not isinstance(_run(net, example), str):
                what = type(layer).__name__
                return (
                    example,
                    f"{name}: {dtype} {list(example[name].shape)}, guessed from its first layer ({what}) and run",
                )
            tried.append(f"{list((batch, *shape[1:]))}")
    kind = type(layer).__name__ if layer is not None else "no layer with weights"
    ran = f" (it refused {', '.join(tried[:4])})" if tried else ""
    raise SpecError(
        f"{where}: cannot tell the input of forward({name}) from its first layer ({kind}){ran}: give it with "
        f"--input {name}:SHAPE[:DTYPE], e.g. --input {name}:1x3x224x224"
    )


def _first_layer(net):
    for module in net.modules():
        if next(module.parameters(recurse=False), None) is not None:
            return module
    return None


def _candidates(layer) -> list[tuple[tuple[int, ...], str]]:
    from torch import nn

    if isinstance(layer, nn.Conv2d | nn.BatchNorm2d):
        channels = layer.in_channels if isinstance(layer, nn.Conv2d) else layer.num_features
        return [((BATCH, channels, side, side), "float32") for side in IMAGE_SIDES]
    if isinstance(layer, nn.Conv1d):
        return [((BATCH, layer.in_channels, length), "float32") for length in (16000, 1024, 128)]
    if isinstance(layer, nn.Conv3d):
        return [((BATCH, layer.in_channels, 16, side, side), "float32") for side in (112, 32)]
    if isinstance(layer, nn.Embedding):
        return [((BATCH, length), "int64") for length in (16, 128)]
    if isinstance(layer, nn.RNNBase) and layer.batch_first:
        return [((BATCH, 16, layer.input_size), "float32")]
    if isinstance(layer, nn.Linear):
        return [((BATCH, layer.in_features), "float32"), ((BATCH, 16, layer.in_features), "float32")]
    if isinstance(layer, nn.LayerNorm):
        return [((BATCH, 16, *layer.normalized_shape), "float32")]
    return []


def _tensor(name: str, shape: tuple[int, ...], dtype: str):
    import torch

    generator = torch.Generator().manual_seed(len(shape) * 31 + sum(shape))
    torch_dtype = getattr(torch, dtype)
    if dtype == "bool" or "mask" in name.lower():
        return torch.ones(shape, dtype=torch_dtype)
    if torch_dtype.is_floating_point:
        return torch.randn(shape, generator=generator).to(torch_dtype)
    return torch.randint(0, 2, shape, generator=generator).to(torch_dtype)  # ids any embedding takes


def _run(net, examples: dict):
    """forward's outputs, or its error in one line."""
    import torch

    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return net(*examples.values())
    except Exception as error:  # a size the model refuses: recorded, not raised
        text = str(error).strip().splitlines()
        return f"{type(error).__name__}: {text[0] if text else ''}"[:300]


def _shapes(examples: dict) -> str:
    return ", ".join(f"{name} {list(t.shape)}" for name, t in examples.items())


def _dynamic_dims(net, examples: dict) -> tuple[dict[str, dict[int, str]], list[str]]:
    """Dims that also run at another size, grouped as equal dims at one position of every input, or with
    an equal dim elsewhere when they must agree (an LSTM's batch: dim 0 of the series, dim 1 of h0); each
    group named as the spec will name its axis."""
    # a state's dims are fixed but for the batch, which comes with the other inputs' dim 0 (as a partner)
    groups: dict[tuple[int, int], list[tuple[str, int]]] = {}
    state_groups: dict[tuple[int, int], list[tuple[str, int]]] = {}
    for name, tensor in examples.items():
        kept = state_groups if STATE_NAMES.match(name) else groups
        for index, size in enumerate(tensor.shape):
            kept.setdefault((index, size), []).append((name, index))
    dynamic: dict[str, dict[int, str]] = {}
    notes, taken = [], set()
    for (index, size), places in sorted(groups.items()):
        if set(places) <= taken:
            continue
        other = 3 if index == 0 and size in (1, BATCH) else size * 2
        others = [
            *((k, p) for k, p in sorted(groups.items()) if k[0] != index),
            *sorted(state_groups.items()),
        ]
        partners = [p for (_, s), p in others if s == size and not set(p) & taken]
        ran = next(
            (
                tried
                for tried in ([places], *([places, p] for p in partners))
                if _runs_at(net, examples, tried, other)
            ),
            None,
        )
        if ran is None:
            continue
        together = [place for group in ran for place in group]
        taken |= set(together)
        firsts = {(n, 0) for n, t in examples.items() if t.dim() and not STATE_NAMES.match(n)}
        axis = _axis_name(examples, *together[0], batch=firsts <= set(together))
        if any(axis in dims.values() for dims in dynamic.values()):  # another size: another axis
            axis = f"{together[0][0]}_{axis}"
        for name, at in together:
            dynamic.setdefault(name, {})[at] = axis
        where = ", ".join(f"dim {at} of {name}" for name, at in together)
        notes.append(f"{axis}: {where} ran at {size} and {other}")
    return dynamic, notes


def _runs_at(net, examples: dict, groups: tuple[list, ...] | list, size: int) -> bool:
    places = {place for group in groups for place in group}
    changed = dict(examples)
    for name, index in places:
        changed[name] = _resized(changed[name], index, size)
    return not isinstance(_run(net, changed), str)


def _resized(tensor, index: int, size: int):
    import torch

    shape = list(tensor.shape)
    shape[index] = size
    if tensor.dtype == torch.bool or not tensor.dtype.is_floating_point:
        return (
            torch.zeros(shape, dtype=tensor.dtype)
            if tensor.dtype != torch.bool
            else torch.ones(shape, dtype=torch.bool)
        )
    return torch.randn(shape).to(tensor.dtype)


def _axis_name(examples: dict, name: str, index: int, batch: bool = True) -> str:
    """`batch` for dim 0 when it is dim 0 of every input that is not a state; else by what it is."""
    tensor = examples[name]
    if index == 0:
        return "batch" if batch else f"{name}_0"
    if tensor.dim() == 4 and tensor.dtype.is_floating_point and index in (2, 3):
        return ("height", "width")[index - 2]
    if index == tensor.dim() - 1 and tensor.dtype.is_floating_point and AUDIO.search(name):
        return "samples"
    if index == 1 and (tensor.dim() == 2 or tensor.dim() == 3 and tensor.dtype.is_floating_point):
        return "seq"
    if tensor.dim() == 3 and index == 2:
        return "length"
    return f"{name}_{index}"


def _output_names(outputs, examples: dict) -> list[str]:
    """output, output_<i> or a dict's keys; an output shaped as a state input (h0, state, cache...) is
    named as its next value (h0 -> h_out), so the spec pairs them."""
    import torch

    if isinstance(outputs, torch.Tensor):
        return ["output"]
    if isinstance(outputs, dict) and all(isinstance(v, torch.Tensor) for v in outputs.values()):
        return [str(k) for k in outputs]
    flat = _flattened(outputs)
    if flat is None:
        raise SpecError(
            f"forward returns {type(outputs).__name__} holding more than tensors; the spec serves tensors: "
            "return a tensor, a tuple of tensors or a dict of them (wrap the module)"
        )
    names = [f"output_{i}" for i in range(len(flat))]
    free = list(range(len(flat)))
    for name, tensor in examples.items():
        if not STATE_NAMES.match(name):
            continue
        match = next(
            (i for i in free if flat[i].shape == tensor.shape and flat[i].dtype == tensor.dtype), None
        )
        if match is not None:
            free.remove(match)
            names[match] = re.sub(r"(_?0|_in|_prev)$", "", name) + "_out"
    return names


def _flattened(outputs) -> list | None:
    import torch

    if isinstance(outputs, torch.Tensor):
        return [outputs]
    if not isinstance(outputs, tuple | list):
        return None
    flat = []
    for item in outputs:
        inner = _flattened(item)
        if inner is None:
            return None
        flat += inner
    return flat


def _export(
    net, examples: dict, dynamic: dict, output_names: list[str], onnx_path: Path, exporters: list[str]
) -> tuple[str, int]:
    """The TorchScript exporter at opset 17 (what ModelOpt's passes take); the dynamo exporter when it fails."""
    import torch

    errors = []
    for exporter in exporters:
        opset = OPSETS[exporter]
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    net,
                    tuple(examples.values()),
                    str(onnx_path),
                    input_names=list(examples),
                    output_names=output_names,
                    dynamic_axes=dynamic,
                    opset_version=opset,
                    dynamo=exporter == "dynamo",
                    **({"external_data": False} if exporter == "dynamo" else {}),
                )
            return exporter, opset
        except Exception as error:  # the exporter's refusal: the other one may take it
            lines = str(error).strip().splitlines()
            errors.append(f"{exporter}: {type(error).__name__}: {lines[0] if lines else ''}"[:300])
    raise SpecError(f"torch.onnx.export refused the model ({'; '.join(errors)}); nothing was written")
