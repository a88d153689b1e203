"""A PyTorch model for `init`: the factory's module, with the checkpoint's weights, is built and run in a
spawned child; its inputs are given (--input) or guessed from its first layer and checked by running; the
dims that also run at another size become named axes; and it is exported to ONNX for the probe. A crash
or a hang ends the child, not init."""

from __future__ import annotations

import json
import multiprocessing
import re
from dataclasses import dataclass
from pathlib import Path

from triton_repo.core.errors import SpecError

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")
DTYPES = ("float32", "float16", "float64", "int64", "int32", "int16", "int8", "uint8", "bool")
INPUT_FORM = "NAME:SHAPE[:DTYPE], e.g. image:1x3x224x224 or ids:2x16:int64"


@dataclass(frozen=True)
class GivenInput:
    """One input of forward() as the user gave it: its name, an example shape and dtype."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"


@dataclass(frozen=True)
class FactoryRef:
    file: Path
    function: str


@dataclass(frozen=True)
class TorchExport:
    """What the child learned: the names it exported with, how, and one line per decision."""

    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    exporter: str
    opset: int
    notes: tuple[str, ...]
    places: tuple[tuple[str, int], ...]  # (input, dim) that ran at two sizes in PyTorch
    examples: dict[str, int]  # exported dim name -> the size it ran at


def parse_input(text: str) -> GivenInput:
    parts = text.split(":")
    if len(parts) not in (2, 3) or not parts[0]:
        raise SpecError(f"--input '{text}': give {INPUT_FORM}")
    parts = [part.strip() for part in parts]
    if not parts[0]:
        raise SpecError(f"--input '{text}': give {INPUT_FORM}")
    dtype = parts[2] if len(parts) == 3 else "float32"
    if dtype not in DTYPES:
        raise SpecError(f"--input '{text}': dtype '{dtype}' is not one of {', '.join(DTYPES)}")
    shape_text = parts[1].strip()
    if shape_text in ("", "scalar"):
        return GivenInput(parts[0], (), dtype)
    if not re.fullmatch(r"\d+(x\d+)*", shape_text) or any(int(s) < 1 for s in shape_text.split("x")):
        raise SpecError(
            f"--input '{text}': the shape '{shape_text}' is not sizes joined by x; give {INPUT_FORM}"
        )
    return GivenInput(parts[0], tuple(int(s) for s in shape_text.split("x")), dtype)


def parse_factory(text: str) -> FactoryRef:
    """FILE.py:FUNCTION, the function (or class) that returns the torch.nn.Module."""
    file_text, _, function = text.rpartition(":")
    if not file_text or not function.isidentifier():
        raise SpecError(f"--factory '{text}': give FILE.py:FUNCTION, the function that returns the nn.Module")
    path = Path(file_text)
    if path.suffix != ".py":
        raise SpecError(f"--factory '{text}': {file_text} is not a Python file (.py)")
    if not path.is_file():
        raise SpecError(f"--factory '{text}': no such file {file_text}")
    if not path.stem.isidentifier():
        raise SpecError(f"--factory '{text}': {path.name} cannot be imported as a module: rename it")
    return FactoryRef(path, function)


@dataclass(frozen=True)
class TorchModel:
    """A PyTorch model in a model folder: `module.py:function` (its siblings importable), the checkpoint
    loaded into what it returns, example inputs given, output names wanted (when their count matches)."""

    folder: Path
    module: str
    function: str
    checkpoint: str | None = None
    given: tuple[GivenInput, ...] = ()
    output_names: tuple[str, ...] = ()


def export_for_probe(
    model: TorchModel, onnx_path: Path, timeout: float, exporters: tuple[str, ...] = ("torchscript", "dynamo")
) -> TorchExport:
    """Build the model, load its checkpoint, find its inputs and dynamic dims, and write `onnx_path`, all
    in a spawned child."""
    module, function = model.module, model.function
    request = {
        "folder": str(model.folder),
        "module": module,
        "function": function,
        "checkpoint": model.checkpoint,
        "given": [[g.name, list(g.shape), g.dtype] for g in model.given],
        "onnx_path": str(onnx_path),
        "exporters": list(exporters),
        "output_names": list(model.output_names),
    }
    result_path = onnx_path.with_suffix(".json")
    context = multiprocessing.get_context("spawn")
    process = context.Process(target=_child_main, args=(request, str(result_path)), daemon=True)
    process.start()
    process.join(timeout)
    if process.is_alive():
        process.kill()
        process.join()
        raise SpecError(
            f"{module}.py:{function}: building, running and exporting the model took over {timeout:.0f} s; "
            "nothing was written: give a larger --probe-seconds"
        )
    if not result_path.is_file():
        raise SpecError(
            f"{module}.py:{function}: the model crashed the process that ran it (exit {process.exitcode}); "
            "nothing was written: run the factory and one forward by hand to see why"
        )
    result = json.loads(result_path.read_text())
    if "error" in result:
        raise SpecError(result["error"])
    return TorchExport(
        tuple(result["inputs"]),
        tuple(result["outputs"]),
        result["exporter"],
        result["opset"],
        tuple(result["notes"]),
        tuple((name, index) for name, index in result["places"]),
        result["examples"],
    )


def _child_main(request: dict, result_path: str) -> None:
    import os
    import traceback

    quiet = os.open(
        os.devnull, os.O_WRONLY
    )  # the exporters print progress and warnings: init says what counts
    os.dup2(quiet, 1)
    os.dup2(quiet, 2)

    from triton_repo.builders.scaffold import torch_run

    try:
        result = torch_run.build_and_export(**request)
    except SpecError as error:
        result = {"error": str(error)}
    except Exception as error:  # the user's code: any failure is theirs to see, in one line
        where = traceback.extract_tb(error.__traceback__)[-1]
        line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        result = {
            "error": f"{request['module']}.py:{request['function']}: {type(error).__name__}: {line} "
            f"(at {Path(where.filename).name}:{where.lineno}); nothing was written"
        }
    Path(result_path).write_text(json.dumps(result))
