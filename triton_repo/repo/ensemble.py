"""Ensembles: `<name>` takes raw client data, `<name>_preprocess` turns it into the model's inputs, a
published variant (`<name>_<precision>`) computes the outputs, and, for a detector, `<name>_postprocess`
decodes them into labelled boxes with the accuracy gate's own code (postprocess.py).

The wiring is checked when it is written: every tensor the pre-processing step produces must match the
variant input it feeds in dtype and shape, or the build stops naming both ends.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
from tritonclient.grpc import model_config_pb2 as mc

from triton_repo.core.errors import SpecError, TritonRepoError
from triton_repo.core.golden import load_raw_golden, save_raw_golden
from triton_repo.core.references import load_callable
from triton_repo.core.spec import (
    LETTERBOX,
    ImageStep,
    LetterboxStep,
    LoadedSpec,
    PixelsStep,
    TokenizeStep,
    Tolerance,
)
from triton_repo.repo import postprocess
from triton_repo.repo.config import labels_files, new_config, parse_config, to_text, write_labels
from triton_repo.repo.fused import fused_config, is_fused, write_fused
from triton_repo.repo.staging import StagingRequest
from triton_repo.repo.writer import VERSION, StagedModel, file_hashes, new_model_dir
from triton_repo.runtimes.run_cache import run_once

GOLDEN_FILE = "golden.npz"
TOKENIZER_FILE = "tokenizer.json"
TEMPLATES = resources.files("triton_repo.repo") / "templates"


@dataclass(frozen=True)
class Tensor:
    name: str
    data_type: str  # Triton's TYPE_*
    dims: tuple[int, ...]  # without the batch dim; -1 for a dynamic size

    def __str__(self) -> str:
        return f"'{self.name}' {self.data_type.removeprefix('TYPE_')} {list(self.dims)}"


def step_tensors(loaded: LoadedSpec) -> tuple[Tensor, list[Tensor]]:
    """The raw input clients send, and the tensors the pre-processing step produces."""
    step = loaded.spec.ensemble.preprocess
    if isinstance(step, TokenizeStep):
        raw = Tensor(step.input, "TYPE_STRING", (1,))
        return raw, [Tensor(step.ids, "TYPE_INT64", (-1,)), Tensor(step.mask, "TYPE_INT64", (-1,))]
    if isinstance(step, ImageStep):
        return Tensor(step.input, "TYPE_STRING", (1,)), [
            Tensor(step.output, "TYPE_FP32", (3, step.size, step.size))
        ]
    if isinstance(step, LetterboxStep):
        return Tensor(step.input, "TYPE_STRING", (1,)), [
            Tensor(step.output, "TYPE_FP32", (3, step.size, step.size)),
            Tensor(LETTERBOX, "TYPE_FP32", (5,)),  # for the postprocess step, not the model
        ]
    model_input = next(t for t in loaded.spec.inputs if t.name == step.output)
    return Tensor(step.input, "TYPE_UINT8", tuple(step.dims)), [
        Tensor(step.output, "TYPE_FP32", tuple(loaded.spec.triton_dims(model_input)))
    ]


def check_wiring(ensemble: str, step_name: str, produced: list[Tensor], variant: mc.ModelConfig) -> None:
    """Each produced tensor must fit the variant input of the same name (dtype, rank, fixed sizes)."""
    inputs = {t.name: Tensor(t.name, mc.DataType.Name(t.data_type), tuple(t.dims)) for t in variant.input}
    for tensor in (t for t in produced if t.name != LETTERBOX):
        consumer = inputs.get(tensor.name)
        fits = (
            consumer is not None
            and consumer.data_type == tensor.data_type
            and len(consumer.dims) == len(tensor.dims)
            and all(a == b or -1 in (a, b) for a, b in zip(consumer.dims, tensor.dims, strict=True))
        )
        if not fits:
            where = (
                f"{variant.name} input {consumer}" if consumer else f"{variant.name}, which has no such input"
            )
            raise SpecError(f"ensemble {ensemble}: {step_name} output {tensor} does not fit {where}")


def _step_parameters(loaded: LoadedSpec) -> dict:
    step = loaded.spec.ensemble.preprocess
    parameters = step.model_dump(exclude={"tokenizer", "input"})
    if isinstance(step, TokenizeStep):
        seq_axes = {
            d for t in loaded.spec.inputs if t.name == step.ids for d in t.dims[1:] if isinstance(d, str)
        }
        parameters["max_length"] = max((loaded.spec.axes[a].max for a in seq_axes), default=512)
        parameters["tokenizer_file"] = TOKENIZER_FILE
    if isinstance(step, PixelsStep):
        model_input = next(t for t in loaded.spec.inputs if t.name == step.output)
        parameters["dims"] = list(loaded.spec.triton_dims(model_input))
        if int(np.prod(step.dims)) != int(np.prod(parameters["dims"])):
            raise SpecError(
                f"{loaded.path}: ensemble.preprocess.dims {step.dims} has {int(np.prod(step.dims))} pixels, "
                f"but input '{step.output}' takes {parameters['dims']}"
            )
    return parameters


@dataclass(frozen=True)
class EnsembleData:
    """What the spec's functions give the ensemble: the raw samples and the tokenizer file, if any."""

    samples: np.ndarray  # as clients send them (raw_samples)
    tokenizer: Path | None


def ensemble_data(loaded: LoadedSpec) -> EnsembleData:
    return EnsembleData(raw_samples(loaded, step_tensors(loaded)[0]), tokenizer_path(loaded))


def tokenizer_path(loaded: LoadedSpec) -> Path | None:
    step = loaded.spec.ensemble.preprocess
    if not isinstance(step, TokenizeStep):
        return None
    if ":" in step.tokenizer:
        path = Path(load_callable(loaded, step.tokenizer, "ensemble.preprocess.tokenizer")())
        if not path.is_file():
            raise SpecError(
                f"{loaded.path}: ensemble.preprocess.tokenizer: {step.tokenizer} returned {path}, not a file"
            )
        return path
    return loaded.resolve_file(step.tokenizer, "ensemble.preprocess.tokenizer")


def _add(tensors, tensor: Tensor) -> None:
    tensors.add(name=tensor.name, data_type=mc.DataType.Value(tensor.data_type), dims=tensor.dims)


def preprocess_config(loaded: LoadedSpec, name: str, raw: Tensor, produced: list[Tensor]) -> mc.ModelConfig:
    config = new_config(loaded, name, backend="python")
    _add(config.input, raw)
    for tensor in produced:
        _add(config.output, tensor)
    config.instance_group.add(kind=mc.ModelInstanceGroup.KIND_CPU, count=1)
    config.parameters["step"].string_value = json.dumps(_step_parameters(loaded), sort_keys=True)
    return config


def ensemble_config(
    loaded: LoadedSpec,
    raw: Tensor,
    produced: list[Tensor],
    step_model: str,
    variant: mc.ModelConfig,
    post: mc.ModelConfig | None = None,
) -> mc.ModelConfig:
    """Raw input -> the preprocess step -> the variant (-> the postprocess step, whose outputs the
    ensemble returns instead of the variant's)."""
    spec = loaded.spec
    config = new_config(loaded, spec.name, platform="ensemble")
    _add(config.input, raw)
    labels = labels_files(loaded)
    for output in (post or variant).output:
        added = config.output.add(name=output.name, data_type=output.data_type, dims=output.dims)
        if output.name in labels and post is None:
            added.label_filename = labels[output.name]  # Triton's classification extension (class_count)
    first = config.ensemble_scheduling.step.add(model_name=step_model, model_version=-1)
    first.input_map[raw.name] = raw.name
    for tensor in produced:
        first.output_map[tensor.name] = tensor.name
    second = config.ensemble_scheduling.step.add(model_name=variant.name, model_version=-1)
    for tensor in (t for t in produced if t.name != LETTERBOX):
        second.input_map[tensor.name] = tensor.name
    consumed = {t.name for t in post.input} if post is not None else None
    for output in variant.output:
        if consumed is None or output.name in consumed:  # an ensemble tensor nothing reads is an error
            second.output_map[output.name] = output.name
    if post is not None:
        third = config.ensemble_scheduling.step.add(model_name=post.name, model_version=-1)
        for tensor in post.input:
            third.input_map[tensor.name] = tensor.name
        for output in post.output:
            third.output_map[output.name] = output.name
    return config


def raw_samples(loaded: LoadedSpec, raw: Tensor) -> np.ndarray:
    """The spec's `ensemble.samples` as the array clients would send ([n, 1] bytes, or [n, *dims] uint8)."""
    values = load_callable(loaded, loaded.spec.ensemble.samples, "ensemble.samples")()
    if len(values) == 0:
        raise SpecError(
            f"{loaded.path}: ensemble.samples: {loaded.spec.ensemble.samples} returned no samples"
        )
    if raw.data_type == "TYPE_STRING":
        items = [v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in values]
        array = np.empty((len(items), 1), dtype=object)
        array[:, 0] = items
        return array
    array = np.asarray(values)
    if array.dtype != np.uint8 or array.shape[1:] != raw.dims:
        raise SpecError(
            f"{loaded.path}: ensemble.samples must return uint8 [n, {', '.join(map(str, raw.dims))}], "
            f"got {array.dtype} {list(array.shape)}"
        )
    return array


def stage_ensemble(
    request: StagingRequest, variant_dir: Path, given: Callable[[], EnsembleData] | None = None
) -> list[StagedModel]:
    """The ensemble `<name>` (and `<name>_preprocess`, unless fused) in the staging area, calling the staged variant in
    `variant_dir` (whose ONNX file is the request's artifact); the golden data is that file run by the
    request's runtime and runner (a worker process, as the variant is served; remembered in its runs) on
    the pre-processed raw samples (what `given` returns, else ensemble_data's, asked for once the ensemble
    is known to fit the variant)."""
    from triton_repo.repo.templates import preprocessing

    loaded, staging, tolerances = request.loaded, request.staging, request.tolerances
    spec = loaded.spec
    variant = parse_config(variant_dir / "config.pbtxt")
    raw, produced = step_tensors(loaded)
    fused = is_fused(loaded, variant)
    step_name = spec.name if fused else f"{spec.name}_preprocess"
    check_wiring(spec.name, step_name, produced, variant)
    step = _step_parameters(loaded)  # a step that does not fit stops here

    written, staged = [], []
    if not fused:
        step_dir = new_model_dir(staging, step_name)
        (step_dir / VERSION / "model.py").write_text((TEMPLATES / "preprocess_model.py").read_text())
        (step_dir / VERSION / "preprocessing.py").write_text((TEMPLATES / "preprocessing.py").read_text())
        step_config = preprocess_config(loaded, step_name, raw, produced)
        (step_dir / "config.pbtxt").write_text(to_text(step_config))
        written.append((step_dir, step_config))
    given = given() if given is not None else ensemble_data(loaded)
    tokenizer = given.tokenizer
    if tokenizer is not None and not fused:
        shutil.copyfile(tokenizer, step_dir / VERSION / TOKENIZER_FILE)
    if not fused:
        step_entry = {
            **_common(request),
            "kind": "preprocess",
            "precision": "-",
            "files": file_hashes(step_dir),
        }
        staged.append(StagedModel(step_name, spec.name, "-", step_dir, step_entry))

    post_config, post_dir = None, None
    if spec.ensemble.postprocess is not None:
        post_name = f"{spec.name}_postprocess"
        post_dir = new_model_dir(staging, post_name)
        post_config = postprocess.postprocess_config(loaded, post_name, variant)
        postprocess.write_step(loaded, post_dir, post_config)
        (post_dir / "config.pbtxt").write_text(to_text(post_config))

    ensemble_dir = new_model_dir(staging, spec.name)
    if fused:
        raw_input = mc.ModelInput(name=raw.name, data_type=mc.DataType.Value(raw.data_type), dims=raw.dims)
        config = fused_config(loaded, raw_input, variant, step)
        write_fused(ensemble_dir, variant_dir, variant, tokenizer)
    else:
        config = ensemble_config(loaded, raw, produced, step_name, variant, post_config)
    labels = write_labels(loaded, ensemble_dir) if post_config is None else {}
    (ensemble_dir / "config.pbtxt").write_text(to_text(config))

    # Golden: the raw samples, pre-processed by the same code the server runs, through the variant's ONNX
    # (and decoded by the same postprocess code).
    samples = given.samples
    if tokenizer is not None:
        step["tokenizer_file"] = str(tokenizer)
    # One request with every sample, as `triton-repo infer` sends it: padding to the longest text and
    # dynamic INT8 ranges depend on what is batched together.
    feed = preprocessing.run(step, samples)
    geometry = feed.pop(LETTERBOX, None)
    names = [o.name for o in variant.output]
    threads = spec.triton.intra_op_threads
    outputs = run_once(request.runtime, request.artifact, feed, names, threads, request.runner, request.runs)
    if post_config is not None:
        postprocess.labels_fit(loaded, outputs)
        outputs = postprocess.run_step(loaded, outputs, geometry)
        tolerances = postprocess_tolerances(tolerances[spec.accuracy_output])
    save_raw_golden({raw.name: samples}, outputs, ensemble_dir / VERSION / GOLDEN_FILE)

    written.append((ensemble_dir, config))
    if post_config is not None:
        written.append((post_dir, post_config))
    for model_dir, model_config in written:
        if parse_config(model_dir / "config.pbtxt") != model_config:
            raise TritonRepoError(
                f"{model_dir}/config.pbtxt does not parse back to the generated config (a bug)"
            )
    load_raw_golden(ensemble_dir / VERSION / GOLDEN_FILE)  # it must load back
    steps = ([] if fused else [step_name, variant.name]) + ([post_config.name] if post_config else [])
    ensemble_entry = {
        **_common(request),
        "kind": "ensemble",
        "form": "fused" if fused else "steps",
        "precision": variant.name.removeprefix(f"{spec.name}_"),
        "variant": variant.name,
        "steps": steps,
        "golden": f"{VERSION}/{GOLDEN_FILE}",
        "labels": labels or None,
        "tolerances": {o: {"atol": t.atol, "rtol": t.rtol} for o, t in tolerances.items()},
        "files": file_hashes(ensemble_dir),
    }
    if post_config is not None:
        post_entry = {
            **_common(request),
            "kind": "postprocess",
            "precision": "-",
            "files": file_hashes(post_dir),
        }
        staged.append(StagedModel(post_config.name, spec.name, "-", post_dir, post_entry))
    return staged + [
        StagedModel(spec.name, spec.name, ensemble_entry["precision"], ensemble_dir, ensemble_entry)
    ]


def _common(request: StagingRequest) -> dict:
    spec = request.loaded.spec
    return {"source_model": spec.name, "spec": str(request.loaded.path), "version": int(VERSION)}


def postprocess_tolerances(head: Tolerance) -> dict[str, Tolerance]:
    """The served detections against the golden ones: the same count, classes and names; scores within
    the head's tolerance; boxes within half a pixel on the client's image (plus the head's rtol)."""
    exact = Tolerance(atol=0.0, rtol=0.0)
    return {
        "COUNT": exact,
        "BOXES": Tolerance(atol=max(0.5, head.atol), rtol=head.rtol),
        "SCORES": head,
        "CLASSES": exact,
        "LABELS": exact,
    }
