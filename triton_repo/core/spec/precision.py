"""How lower-precision variants are made and judged: the accuracy metric and budget, the INT8 settings."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from triton_repo.core.spec.accuracy import check_accuracy
from triton_repo.core.spec.base import Precision, _Strict
from triton_repo.core.spec.shapes import Tolerance


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


class OpenVinoInt8Settings(_Strict):
    """NNCF post-training quantization for OpenVINO (the cpu target's other INT8 candidate).

    model_type: transformer (NNCF's transformer handling: SmoothQuant, attention left in float) or cnn;
    auto picks transformer when the graph has Softmax and no Conv. preset: NNCF's quantization preset
    (performance: symmetric; mixed: asymmetric activations); auto: mixed for transformers, else
    performance.
    """

    model_type: Literal["auto", "transformer", "cnn"] = "auto"
    preset: Literal["auto", "performance", "mixed"] = "auto"


class QadSettings(_Strict):
    """Quantization-aware distillation of the TensorRT INT8 artifact (precision.int8.recover: qad).

    The FP32 PyTorch model is the teacher; a copy with ModelOpt INT8 fake quantization on every Linear
    and Conv (weights per channel, activations per tensor) is calibrated on data.calibration, then
    trained for `steps` mini-batches of data.calibration and data.train (never data.eval) to match the
    teacher's accuracy output. loss auto: cosine for cosine_min and embedding, KL divergence of the
    softmax for the classification metrics and ctc, mean squared error for the others. steps 0 is PyTorch-side PTQ (calibration only). Training stops at max_minutes.
    """

    steps: Annotated[int, Field(ge=0)] = 200
    learning_rate: Annotated[float, Field(gt=0, lt=1)] = 1e-5
    batch_size: Annotated[int, Field(ge=1)] = 8
    loss: Literal["auto", "cosine", "mse", "kl"] = "auto"
    max_minutes: Annotated[float, Field(gt=0)] = 20.0
    seed: int = 0


class Int8Settings(_Strict):
    calibration_method: Literal["max", "entropy"] = "max"  # ModelOpt PTQ (the TensorRT artifact)
    # How the TensorRT INT8 artifact is made. none: ModelOpt ONNX PTQ of the FP32 graph, unquantized
    # ops in FP32. qad: ModelOpt PyTorch quantization of Linear/Conv, distilled from the FP32 model,
    # exported with Q/DQ and every unquantized op in FP16 (needs a PyTorch source).
    recover: Literal["none", "qad"] = "none"
    qad: QadSettings = QadSettings()
    cpu: CpuInt8Settings = CpuInt8Settings()
    openvino: OpenVinoInt8Settings = OpenVinoInt8Settings()


class PrecisionSettings(_Strict):
    """Which variants to build and publish, and how; node-level choices live in precision.yaml."""

    # Default: fp32, plus fp16 and bf16 when the spec has accuracy and data.eval, plus int8 when it also
    # has data.calibration (a variant is only published when it can be measured against FP32).
    variants: Annotated[list[Precision], Field(min_length=1)] | None = None
    int8: Int8Settings = Int8Settings()
    # Served-check tolerance per lower precision: the served output vs the artifact run in-process.
    # Each output uses the larger of this and its own outputs[].tolerance.
    tolerances: dict[Literal["fp16", "bf16", "int8"], Tolerance] = {
        "fp16": Tolerance(atol=1e-3, rtol=1e-2),
        "bf16": Tolerance(atol=1e-2, rtol=5e-2),
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


def check_precision(spec) -> None:
    lower = spec.lower_precisions
    if lower and not spec.batched:
        raise ValueError(
            f"precision.variants {lower} need a batched model: the accuracy gate and calibration read "
            "data.eval and data.calibration one row per sample, and an unbatched model has no rows; "
            "set precision.variants: [fp32]"
        )
    if lower and (spec.accuracy is None or spec.data.eval is None):
        raise ValueError(
            f"precision.variants {lower} are gated on accuracy: set 'accuracy' (metric, budget) and "
            "data.eval, or set precision.variants: [fp32]"
        )
    if "int8" in lower and spec.data.calibration is None:
        raise ValueError("precision.variants has int8: set data.calibration (disjoint from data.eval)")
    if spec.precision.int8.recover == "qad" and spec.source.factory is None:
        raise ValueError(
            "precision.int8.recover: qad trains the PyTorch model: it needs source.factory (an ONNX "
            "source has no PyTorch model to train); remove recover or give the factory"
        )
    if spec.data.train is not None and spec.precision.int8.recover != "qad":
        raise ValueError(
            "data.train is read only by precision.int8.recover: qad; set it or remove data.train"
        )
    if spec.accuracy is not None:
        check_accuracy(spec)
