"""An ensemble's postprocess step: `<name>_postprocess`, a python-backend model that decodes the variant's
raw detection head into labelled boxes on the client's image. It runs core/decode.py, the file the
accuracy gate decodes with, copied beside its model.py, with the spec's accuracy.detection settings: the
boxes clients get are the ones the gate judged."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import numpy as np
from tritonclient.grpc import model_config_pb2 as mc

from triton_repo.core import decode
from triton_repo.core.errors import SpecError
from triton_repo.core.spec import DETECTION_OUTPUTS, LETTERBOX, LoadedSpec, detection_layout
from triton_repo.repo.config import new_config
from triton_repo.repo.writer import VERSION

TEMPLATES = resources.files("triton_repo.repo") / "templates"
LABELS_FILE = "labels.txt"
_TYPES = {
    "COUNT": ("TYPE_INT32", (1,)),
    "BOXES": ("TYPE_FP32", (-1, 4)),
    "SCORES": ("TYPE_FP32", (-1,)),
    "CLASSES": ("TYPE_INT32", (-1,)),
    "LABELS": ("TYPE_STRING", (-1,)),
}


def step_parameters(loaded: LoadedSpec) -> dict:
    """What the served step decodes with: the raw head's name and accuracy.detection's settings."""
    spec = loaded.spec
    settings = spec.accuracy.settings
    head = spec.accuracy_output
    dims = next(o for o in spec.outputs if o.name == head).dims[1:]
    return {
        "kind": spec.ensemble.postprocess.kind,
        "head": head,
        "layout": detection_layout(settings, dims),
        "box": settings.box,
        "objectness": settings.objectness,
        "score_threshold": settings.score_threshold,
        "nms_iou": settings.effective_nms_iou,
        "max_detections": settings.max_detections,
        "class_agnostic": settings.class_agnostic,
    }


def class_names(loaded: LoadedSpec) -> list[str]:
    labels = loaded.spec.ensemble.postprocess.labels
    if labels is None:
        return []
    return loaded.resolve_file(labels, "ensemble.postprocess.labels").read_text(encoding="utf-8").splitlines()


def postprocess_config(loaded: LoadedSpec, name: str, variant: mc.ModelConfig) -> mc.ModelConfig:
    head = loaded.spec.accuracy_output
    config = new_config(loaded, name, backend="python")
    for tensor in variant.output:
        if tensor.name == head:
            config.input.add(name=head, data_type=tensor.data_type, dims=tensor.dims)
    config.input.add(name=LETTERBOX, data_type=mc.TYPE_FP32, dims=(5,))
    for output in DETECTION_OUTPUTS:
        data_type, dims = _TYPES[output]
        config.output.add(name=output, data_type=mc.DataType.Value(data_type), dims=dims)
    config.instance_group.add(kind=mc.ModelInstanceGroup.KIND_CPU, count=1)
    config.parameters["step"].string_value = json.dumps(step_parameters(loaded), sort_keys=True)
    return config


def write_step(loaded: LoadedSpec, step_dir: Path, config: mc.ModelConfig) -> None:
    """The step's files: model.py, postprocessing.py, decode.py (the gate's decoding) and its labels."""
    version = step_dir / VERSION
    version.mkdir(parents=True, exist_ok=True)
    (version / "model.py").write_text((TEMPLATES / "postprocess_model.py").read_text())
    (version / "postprocessing.py").write_text((TEMPLATES / "postprocessing.py").read_text())
    (version / "decode.py").write_text(Path(decode.__file__).read_text())
    names = class_names(loaded)
    if names:
        (version / LABELS_FILE).write_text("\n".join(names) + "\n", encoding="utf-8")


def run_step(
    loaded: LoadedSpec, outputs: dict[str, np.ndarray], geometry: np.ndarray
) -> dict[str, np.ndarray]:
    """The step as the server runs it, for the ensemble's golden outputs (the same two files)."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("postprocessing", TEMPLATES / "postprocessing.py")
    module = importlib.util.module_from_spec(spec)
    before = sys.modules.get("decode")
    sys.modules["decode"] = decode  # `from decode import ...`, as beside the served model.py
    try:
        spec.loader.exec_module(module)
    finally:
        if before is None:
            del sys.modules["decode"]
        else:
            sys.modules["decode"] = before
    try:
        return module.run(step_parameters(loaded), {**outputs, LETTERBOX: geometry}, class_names(loaded))
    except ValueError as error:
        raise SpecError(f"{loaded.path}: ensemble.postprocess: {error}") from None


def labels_fit(loaded: LoadedSpec, outputs: dict[str, np.ndarray]) -> None:
    """The class names, one per class of the head (checked on the golden outputs' shape)."""
    names = class_names(loaded)
    if not names:
        return
    step = step_parameters(loaded)
    head = outputs[step["head"]]
    channels = head.shape[1] if step["layout"] == "channels_first" else head.shape[2]
    classes = channels - (5 if step["objectness"] else 4)
    if len(names) != classes:
        raise SpecError(
            f"{loaded.path}: ensemble.postprocess.labels has {len(names)} lines, but the head "
            f"'{step['head']}' has {classes} classes (one name per line, in class order)"
        )
