"""An ensemble that takes raw client data: the pre-processing step, the variant it calls, golden samples."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from triton_repo.core.spec.base import FunctionRef, TensorName, _Strict


class TokenizeStep(_Strict):
    """Text in (Triton BYTES, one UTF-8 string per batch row), token ids and attention mask out.

    Truncation to the largest size of the outputs' sequence axis, padding to the longest in the request.
    """

    kind: Literal["tokenize"]
    tokenizer: str  # a tokenizer.json in the model folder, or module:function returning its path
    input: TensorName = "TEXT"
    ids: str  # the model input that takes the token ids
    mask: str  # the model input that takes the attention mask
    pad_id: Annotated[int, Field(ge=0)] = 0


class ImageStep(_Strict):
    """Encoded image bytes in (PNG, JPEG; one per batch row), a normalised float CHW tensor out.

    Decode to RGB, resize the shorter side to `resize` (bilinear), centre-crop `size` x `size`, scale
    to 0..1, subtract `mean` and divide by `std` per channel.
    """

    kind: Literal["image"]
    input: TensorName = "IMAGE"
    output: str  # the model input that takes the tensor
    resize: Annotated[int, Field(ge=1)]
    size: Annotated[int, Field(ge=1)]
    mean: Annotated[list[float], Field(min_length=3, max_length=3)]
    std: Annotated[list[Annotated[float, Field(gt=0)]], Field(min_length=3, max_length=3)]


class PixelsStep(_Strict):
    """Raw uint8 pixels in (`dims` per batch row), float32 out: pixels times `scale`, in the model's shape."""

    kind: Literal["pixels"]
    input: TensorName = "PIXELS"
    output: str  # the model input that takes the tensor
    dims: Annotated[list[Annotated[int, Field(ge=1)]], Field(min_length=1)]
    scale: Annotated[float, Field(gt=0)] = 1.0


class LetterboxStep(_Strict):
    """Encoded image bytes in (PNG, JPEG; one per batch row), a detector's square input out: RGB, scaled
    to fit `size` x `size` keeping its aspect ratio, centred on `pad` gray, pixels times `scale` (0..1
    as Ultralytics feeds YOLO); and LETTERBOX [5] (scale, left and top padding, the image's width and
    height), with which the postprocess step maps boxes back onto the client's image."""

    kind: Literal["letterbox"]
    input: TensorName = "IMAGE"
    output: str  # the model input that takes the tensor
    size: Annotated[int, Field(ge=1)]
    pad: Annotated[int, Field(ge=0, le=255)] = 114
    scale: Annotated[float, Field(gt=0)] = 1 / 255


class DetectionsStep(_Strict):
    """A raw detection head to labelled boxes, decoded by the accuracy gate's own code and settings
    (accuracy.detection: layout, threshold, NMS), boxes on the client's image. Outputs per row, padded
    to the most detections in the request: COUNT [1], BOXES [n, 4] (x1, y1, x2, y2 in the image's
    pixels), SCORES [n], CLASSES [n] (-1 on padding), LABELS [n] (class names; empty on padding)."""

    kind: Literal["detections"]
    labels: str | None = None  # one class name per line, in class order (default: the class index)


STEP_KINDS = ("tokenize", "image", "pixels", "letterbox")
POSTPROCESS_KINDS = ("detections",)
LETTERBOX = "LETTERBOX"  # the geometry tensor the letterbox step hands the postprocess step
DETECTION_OUTPUTS = ("COUNT", "BOXES", "SCORES", "CLASSES", "LABELS")


class EnsembleSpec(_Strict):
    """An ensemble `<name>` that clients call with raw data: pre-processing step, then a served variant."""

    preprocess: Annotated[TokenizeStep | ImageStep | PixelsStep | LetterboxStep, Field(discriminator="kind")]
    postprocess: DetectionsStep | None = None  # raw outputs to what the task needs (labelled boxes)
    variant: Literal["auto", "fp32", "fp16", "bf16", "int8"] = "auto"  # auto: the fastest published variant
    # How the cpu target serves it: `fused`, one python-backend model running the step and the variant's ONNX
    # file in one process; `steps`, a Triton ensemble of the step model and the variant. auto: fused for a
    # tokenize step without postprocess (texts of any length batch together, one hop), steps otherwise
    # (an image step's decoding runs beside the model in its own process).
    form: Literal["auto", "fused", "steps"] = "auto"
    # Kept for existing specs: the labels of the first output (prefer outputs[0].labels, which every
    # variant gets too).
    labels: str | None = None
    samples: FunctionRef  # module:function returning the raw golden inputs (strings, bytes, or uint8 array)


def check_ensemble(spec) -> None:
    if spec.ensemble is None:
        return
    step = spec.ensemble.preprocess
    if not spec.batched:
        raise ValueError("ensemble needs a batched model (a 'batch' axis): raw inputs come one per batch row")
    fed = [step.ids, step.mask] if isinstance(step, TokenizeStep) else [step.output]
    if len(set(fed)) != len(fed):
        raise ValueError(f"ensemble.preprocess: ids and mask must be two different inputs, got '{step.ids}'")
    names = [t.name for t in spec.inputs]
    for name in fed:
        if name not in names:
            raise ValueError(f"ensemble.preprocess feeds '{name}', which is not an input; inputs: {names}")
    if sorted(fed) != sorted(names):
        raise ValueError(
            f"ensemble.preprocess must feed every input; not fed: {sorted(set(names) - set(fed))}"
        )
    if step.input in names + [t.name for t in spec.outputs]:
        raise ValueError(
            f"ensemble.preprocess.input '{step.input}' is also a model tensor name; the ensemble's raw "
            "input needs its own name (e.g. TEXT, IMAGE, PIXELS)"
        )
    if isinstance(step, TokenizeStep):
        for tensor in (t for t in spec.inputs if t.name in fed):
            if len(tensor.dims) != 2 or not isinstance(tensor.dims[1], str):
                raise ValueError(
                    f"ensemble.preprocess (tokenize): input '{tensor.name}' must be [batch, <seq axis>] "
                    f"with a named sequence axis (texts are padded to the longest), got {tensor.dims}"
                )
    post = spec.ensemble.postprocess
    if post is not None and spec.ensemble.form == "fused":
        raise ValueError(
            "ensemble.form fused: not with ensemble.postprocess (its decoding runs as its own step); "
            "use form: steps or auto"
        )
    if post is not None:
        accuracy = spec.accuracy
        if accuracy is None or accuracy.metric != "detection" or not accuracy.settings.raw_head:
            raise ValueError(
                "ensemble.postprocess (detections) decodes the raw head as the accuracy gate does: set "
                "accuracy.metric: detection (with accuracy.detection's layout, threshold and NMS) on that head"
            )
        if not isinstance(step, LetterboxStep):
            raise ValueError(
                "ensemble.postprocess (detections) maps boxes back onto the client's image: use "
                "ensemble.preprocess kind letterbox"
            )
        taken = set(names + [t.name for t in spec.outputs] + [step.input, LETTERBOX])
        clash = sorted(taken & set(DETECTION_OUTPUTS))
        if clash:
            raise ValueError(
                f"ensemble.postprocess returns {list(DETECTION_OUTPUTS)}; {clash} is taken by the model"
            )
    if spec.ensemble.variant != "auto" and spec.ensemble.variant not in spec.precisions:
        raise ValueError(
            f"ensemble.variant {spec.ensemble.variant} is not built; precision variants: {spec.precisions}"
        )
