"""The model spec, models/<name>/model.yaml: validated when loaded, unknown keys rejected.

Shapes are declared once: each dynamic axis is named under `axes` with min/opt/max, and every
input/output dim is either a fixed positive integer or the name of a declared axis. Triton dims,
max_batch_size, warmup shapes and the verification shapes are all derived from it.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)

from triton_repo.errors import SpecError

BATCH_AXIS = "batch"
NAME_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"
TENSOR_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.]{0,127}$"
REFERENCE_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_]*$"

# numpy dtype name -> Triton config data type
TRITON_DTYPES = {
    "float32": "TYPE_FP32",
    "float16": "TYPE_FP16",
    "float64": "TYPE_FP64",
    "int64": "TYPE_INT64",
    "int32": "TYPE_INT32",
    "int16": "TYPE_INT16",
    "int8": "TYPE_INT8",
    "uint8": "TYPE_UINT8",
    "bool": "TYPE_BOOL",
}
DType = Literal["float32", "float16", "float64", "int64", "int32", "int16", "int8", "uint8", "bool"]

# Default budget per metric (issue: digits top-1 drop <= 1 point, resnet50 agreement >= 0.95,
# minilm min cosine >= 0.99).
DEFAULT_BUDGETS = {"top1_drop": 1.0, "top1_agreement": 0.95, "cosine_min": 0.99}

# The precisions a spec can ask for; each becomes the Triton model <name>_<precision>.
PRECISIONS = ("fp32", "fp16", "int8")
Precision = Literal["fp32", "fp16", "int8"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ShapeRange(_Strict):
    """One named dynamic axis: the smallest, the most common and the largest size it takes."""

    min: Annotated[int, Field(ge=1)]
    opt: Annotated[int, Field(ge=1)]
    max: Annotated[int, Field(ge=1)]

    @model_validator(mode="after")
    def _ordered(self) -> ShapeRange:
        if not self.min <= self.opt <= self.max:
            raise ValueError(f"min {self.min}, opt {self.opt}, max {self.max} must satisfy min <= opt <= max")
        return self


class Tolerance(_Strict):
    """|actual - expected| <= atol + rtol * |expected|, elementwise (numpy.allclose)."""

    atol: Annotated[float, Field(ge=0)] = 1e-4
    rtol: Annotated[float, Field(ge=0)] = 1e-3


Dim = StrictInt | StrictStr  # strict: YAML `yes`/`true` must not become the dim 1


class TensorSpec(_Strict):
    name: Annotated[str, Field(pattern=TENSOR_NAME_PATTERN)]
    dtype: DType
    dims: Annotated[list[Dim], Field(min_length=1)]

    @field_validator("dims")
    @classmethod
    def _positive(cls, dims: list[Dim]) -> list[Dim]:
        for dim in dims:
            if isinstance(dim, int) and dim < 1:
                raise ValueError(
                    f"dim {dim} is not allowed: a dim is a positive integer or the name of an axis under 'axes'"
                )
        return dims


class InputSpec(TensorSpec):
    # The layout of an image input, written to config.pbtxt (`format: FORMAT_NCHW`): Triton's image clients
    # (image_client.py) refuse a model whose image input does not say it.
    format: Literal["NCHW", "NHWC"] | None = None


class OutputSpec(TensorSpec):
    tolerance: Tolerance = Tolerance()
    # A text file in the model folder, one class label per line, for Triton's classification extension
    # (`class_count`): written beside config.pbtxt of every variant and named as the output's label_filename.
    labels: Annotated[str, Field(min_length=1)] | None = None


class Source(_Strict):
    """Where the model comes from: a PyTorch factory, or an existing ONNX file."""

    factory: Annotated[str, Field(pattern=REFERENCE_PATTERN)] | None = None
    onnx: str | None = None
    # A state_dict file in the model folder, loaded into the factory's module with
    # torch.load(weights_only=True) and load_state_dict(strict=True).
    checkpoint: Annotated[str, Field(min_length=1)] | None = None
    exporter: Literal["torchscript", "dynamo"] = "torchscript"
    opset: Annotated[int, Field(ge=13, le=21)] = 17

    @model_validator(mode="after")
    def _exactly_one(self) -> Source:
        if (self.factory is None) == (self.onnx is None):
            raise ValueError(
                "give exactly one of 'factory' (module:function) or 'onnx' (path to a .onnx file)"
            )
        if self.onnx is not None and not self.onnx.endswith(".onnx"):
            raise ValueError(f"onnx '{self.onnx}' must be a path ending in .onnx")
        if self.checkpoint is not None and self.factory is None:
            raise ValueError(
                f"checkpoint '{self.checkpoint}' needs a factory to load it into; an ONNX source carries "
                "its own weights"
            )
        return self


DataRef = Annotated[str, Field(min_length=1)]


class DataSpec(_Strict):
    """Each entry is `module:function` (returning {input name: numpy array}) or a path to an .npz file."""

    sample: DataRef
    calibration: DataRef | None = None
    eval: DataRef | None = None
    eval_labels: DataRef | None = None  # module:function returning int labels, or .npz with one array

    @field_validator("sample", "calibration", "eval", "eval_labels")
    @classmethod
    def _reference(cls, value: str | None) -> str | None:
        if value is not None and not (value.endswith(".npz") or re.fullmatch(REFERENCE_PATTERN, value)):
            raise ValueError(f"'{value}' must be module:function or a path ending in .npz")
        return value


class Accuracy(_Strict):
    """How a lower-precision variant is judged against FP32 on the eval set.

    top1_drop: FP32 top-1 minus variant top-1, in points (needs data.eval_labels), must be <= budget;
    top1_agreement: fraction of eval rows where the variant's argmax equals FP32's, must be >= budget;
    cosine_min: smallest per-row cosine similarity to FP32 (the mean is reported too), must be >= budget.
    """

    metric: Literal["top1_drop", "top1_agreement", "cosine_min"]
    budget: float | None = None
    output: str | None = None  # the output the metric reads; default: the first output

    @property
    def effective_budget(self) -> float:
        return DEFAULT_BUDGETS[self.metric] if self.budget is None else self.budget


class DynamicBatching(_Strict):
    """Triton's dynamic batcher; the two queue fields are its overload policy (0 leaves Triton's default).

    max_queue_size: requests beyond this many queued are rejected at once with UNAVAILABLE (0 = unbounded);
    queue_timeout_microseconds: a request queued longer than this is rejected (0 = no timeout).
    The upper bounds are the widths of Triton's ModelQueuePolicy fields (uint32, uint64).
    """

    preferred_batch_sizes: list[Annotated[int, Field(ge=1)]] = []
    max_queue_delay_microseconds: Annotated[int, Field(ge=0, le=10_000_000)] = 100
    max_queue_size: Annotated[int, Field(ge=0, le=2**32 - 1)] = 0
    queue_timeout_microseconds: Annotated[int, Field(ge=0, le=2**64 - 1)] = 0

    @property
    def has_queue_policy(self) -> bool:
        return self.max_queue_size > 0 or self.queue_timeout_microseconds > 0


class TritonSettings(_Strict):
    dynamic_batching: DynamicBatching | None = DynamicBatching()
    instance_count: Annotated[int, Field(ge=1, le=64)] = 1
    intra_op_threads: Annotated[int, Field(ge=0, le=256)] = (
        0  # ONNX Runtime threads per instance; 0 = all cores
    )
    # Versions of each model kept in the repository and served (config.pbtxt version_policy latest K);
    # the previous ones are what `triton-repo rollback` returns to. 1 keeps no rollback.
    keep_versions: Annotated[int, Field(ge=1, le=16)] = 2


class GpuSettings(_Strict):
    """The gpu target: TensorRT engines (<name>_<prec>_trt) and ONNX Runtime on GPU (<name>_<prec>_onnx).

    profiles: TensorRT optimization profiles, each overriding some axes of `axes` (the others keep the
    spec's range); default one profile equal to the spec's axes. Several profiles let small and large
    batches each get kernels tuned for them; Triton picks the profile that fits a request's shapes.
    """

    profiles: Annotated[list[dict[str, ShapeRange]], Field(min_length=1, max_length=8)] | None = None
    builder_optimization_level: Annotated[int, Field(ge=0, le=5)] = 3  # TensorRT's default is 3
    version_compatible: bool = False  # plan runs on later TensorRT versions (slower; needs the server flag)
    hardware_compatibility_level: Literal["none", "ampere_plus", "same_compute_capability"] = "none"
    onnx_trt_accelerator: bool = True  # <name>_<prec>_onnx runs through ONNX Runtime's TensorRT EP
    instance_count: Annotated[int, Field(ge=1, le=16)] = 1  # instances per GPU, for both models

    @field_validator("profiles")
    @classmethod
    def _non_empty(cls, profiles: list[dict[str, ShapeRange]] | None) -> list[dict[str, ShapeRange]] | None:
        for index, profile in enumerate(profiles or []):
            if not profile:
                raise ValueError(f"profile {index} is empty: name at least one axis with min/opt/max")
        return profiles


class TokenizeStep(_Strict):
    """Text in (Triton BYTES, one UTF-8 string per batch row), token ids and attention mask out.

    Truncation to the largest size of the outputs' sequence axis, padding to the longest in the request.
    """

    kind: Literal["tokenize"]
    tokenizer: str  # a tokenizer.json in the model folder, or module:function returning its path
    input: Annotated[str, Field(pattern=TENSOR_NAME_PATTERN)] = "TEXT"
    ids: str  # the model input that takes the token ids
    mask: str  # the model input that takes the attention mask
    pad_id: Annotated[int, Field(ge=0)] = 0


class ImageStep(_Strict):
    """Encoded image bytes in (PNG, JPEG; one per batch row), a normalised float CHW tensor out.

    Decode to RGB, resize the shorter side to `resize` (bilinear), centre-crop `size` x `size`, scale
    to 0..1, subtract `mean` and divide by `std` per channel.
    """

    kind: Literal["image"]
    input: Annotated[str, Field(pattern=TENSOR_NAME_PATTERN)] = "IMAGE"
    output: str  # the model input that takes the tensor
    resize: Annotated[int, Field(ge=1)]
    size: Annotated[int, Field(ge=1)]
    mean: Annotated[list[float], Field(min_length=3, max_length=3)]
    std: Annotated[list[Annotated[float, Field(gt=0)]], Field(min_length=3, max_length=3)]


class PixelsStep(_Strict):
    """Raw uint8 pixels in (`dims` per batch row), float32 out: pixels times `scale`, in the model's shape."""

    kind: Literal["pixels"]
    input: Annotated[str, Field(pattern=TENSOR_NAME_PATTERN)] = "PIXELS"
    output: str  # the model input that takes the tensor
    dims: Annotated[list[Annotated[int, Field(ge=1)]], Field(min_length=1)]
    scale: Annotated[float, Field(gt=0)] = 1.0


STEP_KINDS = ("tokenize", "image", "pixels")


class EnsembleSpec(_Strict):
    """An ensemble `<name>` that clients call with raw data: pre-processing step, then a served variant."""

    preprocess: Annotated[TokenizeStep | ImageStep | PixelsStep, Field(discriminator="kind")]
    variant: Literal["auto", "fp32", "fp16", "int8"] = "auto"  # auto: the fastest published variant
    # Kept for existing specs: the labels of the first output (prefer outputs[0].labels, which every
    # variant gets too).
    labels: str | None = None
    samples: DataRef  # module:function returning the raw golden inputs (strings, bytes, or uint8 array)

    @field_validator("samples")
    @classmethod
    def _reference(cls, value: str) -> str:
        if not re.fullmatch(REFERENCE_PATTERN, value):
            raise ValueError(f"'{value}' must be module:function")
        return value


class CpuInt8Settings(_Strict):
    """ONNX Runtime quantization for the cpu target's <name>_int8 (ModelOpt Q/DQ graphs run slowly on CPU)."""

    mode: Literal["static", "dynamic"] = "static"  # static: QDQ with calibrated activations
    per_channel: bool = True
    optimize: Literal["bert"] | None = None  # ONNX Runtime's transformer fusions before quantizing
    op_types: (
        Annotated[list[Annotated[str, Field(pattern=r"^[A-Z][A-Za-z]*$")]], Field(min_length=1)] | None
    ) = None  # ONNX op types to quantize (e.g. [MatMul]); default: the quantizer's own list
    # SmoothQuant: move activation outliers into the weights before quantizing (strength 0..1; needs
    # data.calibration). Exact in FP32; helps transformers whose activations have outlier channels.
    smooth_alpha: Annotated[float, Field(gt=0, le=1)] | None = None


class Int8Settings(_Strict):
    calibration_method: Literal["max", "entropy"] = "max"  # ModelOpt PTQ (the TensorRT artifact)
    cpu: CpuInt8Settings = CpuInt8Settings()


class PrecisionSettings(_Strict):
    """Which variants to build and publish, and how; node-level choices live in precision.yaml."""

    # Default: fp32, plus fp16 when the spec has accuracy and data.eval, plus int8 when it also has
    # data.calibration (a variant is only published when it can be measured against FP32).
    variants: Annotated[list[Precision], Field(min_length=1)] | None = None
    int8: Int8Settings = Int8Settings()
    # Served-check tolerance per lower precision: the served output vs the artifact run in-process.
    # Each output uses the larger of this and its own outputs[].tolerance.
    tolerances: dict[Literal["fp16", "int8"], Tolerance] = {
        "fp16": Tolerance(atol=1e-3, rtol=1e-2),
        "int8": Tolerance(atol=1e-2, rtol=5e-2),
    }

    @field_validator("variants")
    @classmethod
    def _with_fp32(cls, variants: list[str] | None) -> list[str] | None:
        if variants is None:
            return None
        if "fp32" not in variants:
            raise ValueError(f"{variants} must include fp32, the reference every variant is measured against")
        if len(set(variants)) != len(variants):
            raise ValueError(f"{variants} names a precision twice")
        return variants


class ModelSpec(_Strict):
    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    description: str = ""
    source: Source
    axes: dict[str, ShapeRange] = {}
    max_batch_size: Annotated[int, Field(ge=0)] | None = None
    inputs: Annotated[list[InputSpec], Field(min_length=1)]
    outputs: Annotated[list[OutputSpec], Field(min_length=1)]
    data: DataSpec
    accuracy: Accuracy | None = None
    precision: PrecisionSettings = PrecisionSettings()
    triton: TritonSettings = TritonSettings()
    ensemble: EnsembleSpec | None = None
    gpu: GpuSettings = GpuSettings()

    @field_validator("axes")
    @classmethod
    def _axis_names(cls, axes: dict[str, ShapeRange]) -> dict[str, ShapeRange]:
        for name in axes:
            if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
                raise ValueError(f"axis name '{name}' must be lower case letters, digits and '_'")
        return axes

    @model_validator(mode="after")
    def _consistent(self) -> ModelSpec:
        names = [t.name for t in self.inputs] + [t.name for t in self.outputs]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"tensor names must be unique across inputs and outputs; repeated: {duplicates}")
        if self.max_batch_size and BATCH_AXIS not in self.axes:
            raise ValueError(
                f"max_batch_size {self.max_batch_size} needs an axis '{BATCH_AXIS}' under 'axes'"
            )
        declared = ", ".join(self.axes) or "none"
        for kind, tensors in (("inputs", self.inputs), ("outputs", self.outputs)):
            for i, tensor in enumerate(tensors):
                for dim in tensor.dims:
                    if isinstance(dim, str) and dim not in self.axes:
                        raise ValueError(
                            f"{kind}[{i}] '{tensor.name}': dim '{dim}' is not a declared axis (declared: {declared})"
                        )
                if self.batched and tensor.dims[0] != BATCH_AXIS:
                    raise ValueError(
                        f"{kind}[{i}] '{tensor.name}': the first dim must be '{BATCH_AXIS}' when max_batch_size > 0"
                    )
                if BATCH_AXIS in tensor.dims[1:]:
                    raise ValueError(f"{kind}[{i}] '{tensor.name}': '{BATCH_AXIS}' may only be the first dim")
        if BATCH_AXIS in self.axes and self.max_batch_size is not None and self.max_batch_size > 0:
            largest, smallest = self.axes[BATCH_AXIS].max, self.axes[BATCH_AXIS].min
            if self.max_batch_size < smallest:
                raise ValueError(
                    f"max_batch_size {self.max_batch_size} is smaller than axes.batch.min {smallest}: "
                    "lower axes.batch.min or raise max_batch_size"
                )
            if self.max_batch_size > largest:
                raise ValueError(
                    f"max_batch_size {self.max_batch_size} is larger than axes.batch.max {largest}: "
                    "raise axes.batch.max or lower max_batch_size"
                )
        self._check_formats_and_labels()
        self._check_precision()
        self._check_ensemble()
        self._check_gpu()
        if self.triton.dynamic_batching is not None:
            for size in self.triton.dynamic_batching.preferred_batch_sizes:
                if size > self.effective_max_batch_size:
                    raise ValueError(
                        f"triton.dynamic_batching.preferred_batch_sizes: {size} is larger than "
                        f"max_batch_size {self.effective_max_batch_size}"
                    )
        return self

    def _check_formats_and_labels(self) -> None:
        """An image layout needs three dims besides the batch; labels need one class axis of fixed size."""
        for i, tensor in enumerate(self.inputs):
            dims = self.triton_dims(tensor)
            if tensor.format is not None and len(dims) != 3:
                raise ValueError(
                    f"inputs[{i}] '{tensor.name}': format {tensor.format} needs 3 dims besides the batch "
                    f"(channels, height, width in that layout), got {len(dims)}: {tensor.dims}"
                )
        labelled = [o for o in self.outputs if o.labels is not None]
        ensemble_labels = self.ensemble.labels if self.ensemble else None
        first = labelled[0] if labelled else None
        if ensemble_labels and first is self.outputs[0] and first.labels != ensemble_labels:
            raise ValueError(
                f"ensemble.labels '{ensemble_labels}' and outputs[0].labels '{first.labels}' "
                "differ; give the labels once, under outputs[0].labels"
            )
        for i, tensor in enumerate(self.outputs):
            if self.labels_file(tensor.name) is None:
                continue
            dims = self.triton_dims(tensor)
            classes = [d for d in dims if d != 1]
            if len(classes) != 1 or classes[0] == -1:
                raise ValueError(
                    f"outputs[{i}] '{tensor.name}': labels need one class axis of fixed size (other dims 1), "
                    f"got {tensor.dims}; Triton's class_count ranks a vector of class scores"
                )

    def labels_file(self, output: str) -> str | None:
        """The labels file of an output: its own `labels`, or for the first output `ensemble.labels`."""
        tensor = next(o for o in self.outputs if o.name == output)
        if tensor.labels is not None:
            return tensor.labels
        if self.ensemble is not None and self.ensemble.labels and tensor is self.outputs[0]:
            return self.ensemble.labels
        return None

    def _check_gpu(self) -> None:
        """Each gpu profile names declared axes, stays inside their range, and batches <= max_batch_size."""
        for index, profile in enumerate(self.gpu.profiles or []):
            for axis, shape_range in profile.items():
                where = f"gpu.profiles[{index}].{axis}"
                if axis not in self.axes:
                    raise ValueError(
                        f"{where}: not a declared axis (declared: {', '.join(self.axes) or 'none'})"
                    )
                declared = self.axes[axis]
                if shape_range.min < declared.min or shape_range.max > declared.max:
                    raise ValueError(
                        f"{where}: {shape_range.min}..{shape_range.max} is outside axes.{axis} "
                        f"{declared.min}..{declared.max}; widen axes.{axis} or narrow the profile"
                    )
                if axis == BATCH_AXIS and self.batched and shape_range.max > self.effective_max_batch_size:
                    raise ValueError(
                        f"{where}: max {shape_range.max} is larger than max_batch_size "
                        f"{self.effective_max_batch_size}"
                    )

    def _check_ensemble(self) -> None:
        if self.ensemble is None:
            return
        step = self.ensemble.preprocess
        if not self.batched:
            raise ValueError(
                "ensemble needs a batched model (a 'batch' axis): raw inputs come one per batch row"
            )
        fed = [step.ids, step.mask] if isinstance(step, TokenizeStep) else [step.output]
        if len(set(fed)) != len(fed):
            raise ValueError(
                f"ensemble.preprocess: ids and mask must be two different inputs, got '{step.ids}'"
            )
        names = [t.name for t in self.inputs]
        for name in fed:
            if name not in names:
                raise ValueError(
                    f"ensemble.preprocess feeds '{name}', which is not an input; inputs: {names}"
                )
        if sorted(fed) != sorted(names):
            raise ValueError(
                f"ensemble.preprocess must feed every input; not fed: {sorted(set(names) - set(fed))}"
            )
        if step.input in names + [t.name for t in self.outputs]:
            raise ValueError(
                f"ensemble.preprocess.input '{step.input}' is also a model tensor name; the ensemble's raw "
                "input needs its own name (e.g. TEXT, IMAGE, PIXELS)"
            )
        if isinstance(step, TokenizeStep):
            for tensor in (t for t in self.inputs if t.name in fed):
                if len(tensor.dims) != 2 or not isinstance(tensor.dims[1], str):
                    raise ValueError(
                        f"ensemble.preprocess (tokenize): input '{tensor.name}' must be [batch, <seq axis>] "
                        f"with a named sequence axis (texts are padded to the longest), got {tensor.dims}"
                    )
        if self.ensemble.variant != "auto" and self.ensemble.variant not in self.precisions:
            raise ValueError(
                f"ensemble.variant {self.ensemble.variant} is not built; precision variants: {self.precisions}"
            )

    def _check_precision(self) -> None:
        lower = self.lower_precisions
        if lower and not self.batched:
            raise ValueError(
                f"precision.variants {lower} need a batched model: the accuracy gate and calibration read "
                "data.eval and data.calibration one row per sample, and an unbatched model has no rows; "
                "set precision.variants: [fp32]"
            )
        if lower and (self.accuracy is None or self.data.eval is None):
            raise ValueError(
                f"precision.variants {lower} are gated on accuracy: set 'accuracy' (metric, budget) and "
                "data.eval, or set precision.variants: [fp32]"
            )
        if "int8" in lower and self.data.calibration is None:
            raise ValueError("precision.variants has int8: set data.calibration (disjoint from data.eval)")
        if self.accuracy is not None:
            if self.accuracy.metric == "top1_drop" and self.data.eval_labels is None:
                raise ValueError(
                    "accuracy.metric top1_drop needs data.eval_labels (the true class per eval row)"
                )
            outputs = [o.name for o in self.outputs]
            if self.accuracy.output is not None and self.accuracy.output not in outputs:
                raise ValueError(
                    f"accuracy.output '{self.accuracy.output}' is not an output (outputs: {outputs})"
                )

    @property
    def precisions(self) -> list[str]:
        """The variants to build, in PRECISIONS order (see PrecisionSettings.variants for the default)."""
        chosen = self.precision.variants
        if chosen is None:  # unbatched models: fp32 only (see _check_precision)
            gated = self.accuracy is not None and self.data.eval is not None and self.batched
            chosen = (
                ["fp32"] + (["fp16"] if gated else []) + (["int8"] if gated and self.data.calibration else [])
            )
        return [p for p in PRECISIONS if p in chosen]

    @property
    def lower_precisions(self) -> list[str]:
        return [p for p in self.precisions if p != "fp32"]

    @property
    def accuracy_output(self) -> str:
        return (self.accuracy and self.accuracy.output) or self.outputs[0].name

    @property
    def batched(self) -> bool:
        """True when the first dim of every tensor is the batch axis (Triton max_batch_size > 0)."""
        if self.max_batch_size is None:
            return BATCH_AXIS in self.axes
        return self.max_batch_size > 0

    @property
    def effective_max_batch_size(self) -> int:
        """Triton's max_batch_size: the spec's value, else the batch axis max, else 0."""
        if not self.batched:
            return 0
        return self.max_batch_size or self.axes[BATCH_AXIS].max

    def triton_dims(self, tensor: TensorSpec) -> list[int]:
        """Dims as Triton's config states them: batch dim dropped when batched, dynamic axes as -1."""
        dims = tensor.dims[1:] if self.batched else tensor.dims
        return [d if isinstance(d, int) else -1 for d in dims]

    def used_axes(self) -> list[str]:
        """Axes that appear in some input, in order of first appearance."""
        seen: list[str] = []
        for tensor in self.inputs:
            for dim in tensor.dims:
                if isinstance(dim, str) and dim not in seen:
                    seen.append(dim)
        return seen

    def shape_points(self) -> list[dict[str, int]]:
        """Axis sizes to verify at: every combination of min/opt/max of every dynamic input axis."""
        axes = self.used_axes()
        ranges = []
        for axis in axes:
            shape_range = self.axes[axis]
            high = shape_range.max
            if axis == BATCH_AXIS and self.batched:
                high = min(high, self.effective_max_batch_size)
            ranges.append(sorted({shape_range.min, min(shape_range.opt, high), high}))
        points = [dict(zip(axes, sizes, strict=True)) for sizes in itertools.product(*ranges)]
        return points or [{}]

    def concrete_shape(self, tensor: TensorSpec, sizes: dict[str, int]) -> tuple[int, ...]:
        return tuple(d if isinstance(d, int) else sizes[d] for d in tensor.dims)


class LoadedSpec(BaseModel):
    """A validated spec and the folder it came from (relative references resolve against it)."""

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    spec: ModelSpec
    path: Path

    @property
    def folder(self) -> Path:
        return self.path.parent

    def resolve_file(self, relative: str, field: str) -> Path:
        """A file named by the spec, which must exist and stay inside the model folder."""
        folder = self.folder.resolve()
        candidate = (folder / relative).resolve()
        if not candidate.is_relative_to(folder):
            raise SpecError(
                f"{self.path}: {field}: '{relative}' points outside the model folder {self.folder}"
            )
        if not candidate.is_file():
            raise SpecError(f"{self.path}: {field}: file '{relative}' does not exist in {self.folder}")
        return candidate


def _location(loc: tuple) -> str:
    text = ""
    for index, part in enumerate(loc):
        if index and loc[index - 1] == "preprocess" and part in STEP_KINDS:
            continue  # the discriminated union's tag: the YAML has `kind: image`, not an `image:` key
        if isinstance(part, int):
            text += f"[{part}]"
        elif part in {"function-after", "function-before", "int", "str"} or "[" in str(part):
            continue  # pydantic's internal union/validator tags
        else:
            text += f".{part}" if text else str(part)
    return text or "(top level)"


def _one_line(error: ValidationError) -> str:
    errors = error.errors(include_url=False)
    first = errors[0]
    message = first["msg"].removeprefix("Value error, ")
    value = first.get("input")
    where = _location(first["loc"])
    if first["type"] == "extra_forbidden":
        text = f"{where}: unknown key (check the spelling; see the spec reference in README.md)"
    elif first["type"] == "missing":
        text = f"{where}: required field is missing"
    elif isinstance(value, dict | list) or first["type"].startswith("value_error"):
        text = f"{where}: {message}"
    else:
        text = f"{where}: {value!r} is not allowed: {message}"
    if len(errors) > 1:
        text += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return text.replace("\n", "\\n")  # always one line, whatever the YAML held


def parse_spec(data: object, path: Path) -> LoadedSpec:
    if not isinstance(data, dict):
        raise SpecError(
            f"{path}: expected a mapping of spec fields at the top level, got {type(data).__name__}"
        )
    try:
        spec = ModelSpec.model_validate(data)
    except ValidationError as error:
        raise SpecError(f"{path}: {_one_line(error)}") from None
    if spec.name != path.parent.name:
        raise SpecError(
            f"{path}: name: '{spec.name}' must equal the model folder name '{path.parent.name}' "
            "(rename the folder or the model)"
        )
    return LoadedSpec(spec=spec, path=path)


def load_spec(path: Path | str) -> LoadedSpec:
    """Read and validate models/<name>/model.yaml (or a folder holding one)."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.yaml"
    if not path.is_file():
        raise SpecError(f"{path}: no such spec file (expected models/<name>/model.yaml)")
    _refuse_escaping_symlinks(path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise SpecError(f"{path}: malformed YAML{where}: {problem}") from None
    return parse_spec(data, path)


def _refuse_escaping_symlinks(path: Path) -> None:
    """A model folder is what its models folder holds, and model.yaml is in it: symlinks leading out are refused."""
    folder = path.parent
    if folder.is_symlink() and not folder.resolve().is_relative_to(folder.parent.resolve()):
        raise SpecError(
            f"{folder}: the model folder is a symlink to {folder.resolve()}, outside the models folder "
            f"{folder.parent} (copy the model folder into {folder.parent})"
        )
    if not path.resolve().is_relative_to(folder.resolve()):
        raise SpecError(
            f"{path}: a symlink to {path.resolve()}, outside the model folder {folder} "
            "(copy the file into the model folder)"
        )


def find_model(reference: Path | str, models_dir: Path = Path("models")) -> LoadedSpec:
    """A model named on the command line: a folder or model.yaml path, or a bare name under models_dir."""
    path = Path(reference)
    if not path.exists() and not re.fullmatch(NAME_PATTERN, str(reference)):
        raise SpecError(
            f"model '{reference}': not a model folder, and not a model name under {models_dir}/ "
            "(a name is lower case letters, digits and '_'; a folder holds model.yaml)"
        )
    named = models_dir / str(reference) / "model.yaml"
    if not path.exists() and named.is_file():
        path = named
    return load_spec(path)


def discover_specs(models_dir: Path) -> list[Path]:
    """Every models/<name>/model.yaml, sorted by name."""
    if not models_dir.is_dir():
        raise SpecError(
            f"{models_dir}: models folder does not exist (pass models/NAME or create {models_dir})"
        )
    found = sorted(p for p in models_dir.glob("*/model.yaml"))
    if not found:
        raise SpecError(f"{models_dir}: no models/<name>/model.yaml found")
    return found
