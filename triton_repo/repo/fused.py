"""An ensemble served as one model (`ensemble.form`): `<name>` is a python-backend model that runs the
pre-processing step and the chosen variant's ONNX file in one process (templates/fused_model.py).

Why: through a Triton ensemble, every request crosses two python-backend stubs (the step, then the variant),
each with its own copies through shared memory, and the variant's batcher can only batch requests of one
shape, so texts of different lengths run one request at a time. As one model, raw texts batch freely and
are padded together. The variant stays published on its own (clients that send tensors call it); this
model hard-links its ONNX file and runs it with the same runtime files and config parameters.
"""

from __future__ import annotations

import json
import os
import shutil
from importlib import resources
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as mc

from triton_repo.core.errors import SpecError
from triton_repo.core.spec import LoadedSpec, TokenizeStep
from triton_repo.repo.config import labels_files, new_config
from triton_repo.repo.python_model import MODEL_FILE, python_model_files
from triton_repo.repo.writer import VERSION

TEMPLATES = resources.files("triton_repo.repo") / "templates"
ONNX_MODEL_MODULE = (
    "onnx_model.py"  # the variant's model.py, imported by the fused one for its runtime loader
)


def is_fused(loaded: LoadedSpec, variant: mc.ModelConfig) -> bool:
    """Whether the ensemble is served as one model: `form`, with auto resolved (fused for a tokenize step
    without postprocess, when the variant is a python-backend ONNX model, as on the cpu target)."""
    ensemble = loaded.spec.ensemble
    runs_onnx = variant.backend == "python" and "onnx_file" in variant.parameters
    if ensemble.form == "fused" and not runs_onnx:
        raise SpecError(
            f"{loaded.path}: ensemble.form fused: {variant.name} is not an ONNX file served by the python "
            "backend (the gpu target serves engines); use form: steps or auto"
        )
    if ensemble.form == "auto":
        return runs_onnx and isinstance(ensemble.preprocess, TokenizeStep) and ensemble.postprocess is None
    return ensemble.form == "fused"


def fused_config(
    loaded: LoadedSpec, raw: mc.ModelInput, variant: mc.ModelConfig, step: dict
) -> mc.ModelConfig:
    """`<name>`: the raw input, the variant's outputs (labels for Triton's classification extension), and
    the variant's instances, batching and runtime parameters."""
    config = new_config(loaded, loaded.spec.name, backend="python")
    config.input.append(raw)
    labels = labels_files(loaded)
    for output in variant.output:
        added = config.output.add(name=output.name, data_type=output.data_type, dims=output.dims)
        if output.name in labels:
            added.label_filename = labels[output.name]
    config.instance_group.extend(variant.instance_group)
    if variant.HasField("dynamic_batching"):
        config.dynamic_batching.CopyFrom(variant.dynamic_batching)
    for key, value in variant.parameters.items():
        if key != "shape_ranges":  # the step's outputs fit them: truncation to the axis' largest size
            config.parameters[key].CopyFrom(value)
    config.parameters["step"].string_value = json.dumps(step, sort_keys=True)
    pads = {step["ids"]: step["pad_id"], step["mask"]: 0} if step["kind"] == "tokenize" else {}
    config.parameters["pad_values"].string_value = json.dumps(pads, sort_keys=True)
    return config


def write_fused(model_dir: Path, variant_dir: Path, variant: mc.ModelConfig, tokenizer: Path | None) -> None:
    """The version folder: the fused template as model.py, the variant's model.py and runtime files, the
    step's code and tokenizer, and the variant's ONNX file (hard-linked where the file system allows)."""
    version = model_dir / VERSION
    runtime = variant.parameters["runtime"].string_value if "runtime" in variant.parameters else "onnxruntime"
    for name, content in python_model_files(runtime).items():
        (version / (ONNX_MODEL_MODULE if name == MODEL_FILE else name)).write_bytes(content)
    (version / MODEL_FILE).write_text((TEMPLATES / "fused_model.py").read_text())
    (version / "preprocessing.py").write_text((TEMPLATES / "preprocessing.py").read_text())
    if tokenizer is not None:
        shutil.copyfile(tokenizer, version / "tokenizer.json")
    onnx_file = variant.parameters["onnx_file"].string_value
    source, target = variant_dir / VERSION / onnx_file, version / onnx_file
    try:
        os.link(source, target)
    except OSError:  # another file system
        shutil.copyfile(source, target)
