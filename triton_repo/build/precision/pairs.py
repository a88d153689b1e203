"""What the precision stage measures: (artifact, engine) pairs, and which pair each served variant is.

An artifact is an ONNX file; an engine is how it runs (ONNX Runtime, or OpenVINO at f32 or bf16
inference precision). Every pair of a model is measured against FP32 (fp32 in ONNX Runtime, the
reference) on the eval set and timed in one interleaved run; each served variant is then the fastest
of its candidate pairs within the accuracy budget, so the runtime is chosen by measurement.
"""

from __future__ import annotations

from dataclasses import dataclass

from triton_repo.runtimes.isolated import ORT, OV_BF16, OV_F32, Engine

REFERENCE = (
    "fp32"  # fp32 in ONNX Runtime: what PyTorch was verified against, what every pair is measured against
)

# Artifact kind -> the engines it is measured with. ONNX Runtime's CPU has no BF16 kernels, so the BF16
# graph (TensorRT's) is measured in OpenVINO, which runs its BF16 ops as written.
ENGINES_OF = {
    "fp32": (ORT, OV_F32, OV_BF16),
    "fp16": (ORT,),
    "fp16-cpu": (ORT,),
    "bf16": (OV_F32,),
    "int8": (ORT,),
    "int8-cpu": (ORT,),
    "int8-ov": (OV_BF16,),
    "int8-qad": (OV_BF16,),  # ModelOpt's Q/DQ placement is TensorRT's: ONNX Runtime's CPU runs it slowly
}


def engines_for(precisions: list[str]) -> dict[str, tuple[Engine, ...]]:
    """ENGINES_OF, less what no requested precision needs: the FP32 graph in OpenVINO at BF16 is the cpu
    target's bf16, measured only when bf16 is built."""
    engines = dict(ENGINES_OF)
    if "bf16" not in precisions:
        engines["fp32"] = tuple(e for e in ENGINES_OF["fp32"] if e is not OV_BF16)
    return engines


# The cpu target's <name>_<precision>: the fastest of these pairs within budget.
CPU_CANDIDATES = {
    "fp32": ("fp32", "fp32@ov-f32"),
    "fp16": ("fp16-cpu",),
    "bf16": ("fp32@ov-bf16",),
    "int8": ("int8-cpu", "int8-ov@ov-bf16", "int8-qad@ov-bf16"),
}
# The artifact kinds the cpu target serves (what it builds unless asked for every kind)
CPU_KINDS = frozenset(pair.partition("@")[0] for pairs in CPU_CANDIDATES.values() for pair in pairs)
# The gpu target's <name>_<precision>_trt and _onnx: the artifact TensorRT builds (the pair it is gated by).
GPU_SERVED = {"fp32": "fp32", "fp16": "fp16", "bf16": "bf16@ov-f32", "int8": "int8"}


def pair_id(kind: str, engine: Engine) -> str:
    """'int8-cpu' (ONNX Runtime, the default) or 'int8-ov@ov-bf16'."""
    return kind if engine is ORT else f"{kind}@{engine.name}"


def split_pair(pair: str) -> tuple[str, str]:
    """'int8-ov@ov-bf16' -> ('int8-ov', 'ov-bf16'); 'int8-cpu' -> ('int8-cpu', 'ort')."""
    kind, _, engine = pair.partition("@")
    return kind, engine or ORT.name


@dataclass(frozen=True)
class Choice:
    """Which pair a served variant is, and why; `pair` None when every candidate was refused."""

    precision: str
    pair: str | None
    why: str
    refused: tuple[tuple[str, str], ...] = ()  # (pair, verdict) of every candidate outside its budget


def choose_cpu(precision: str, variants: dict) -> Choice:
    """The fastest candidate pair within budget (batch-8 throughput, measured in one interleaved run)."""
    candidates = [pair for pair in CPU_CANDIDATES[precision] if pair in variants]
    passing = [pair for pair in candidates if variants[pair].servable]
    refused = tuple((pair, variants[pair].verdict) for pair in candidates if not variants[pair].servable)
    if not passing:
        return Choice(precision, None, "", refused)
    best = max(passing, key=lambda pair: variants[pair].timing.throughput_b8)
    if len(candidates) == 1:
        return Choice(precision, best, "the only candidate", refused)
    others = ", ".join(
        f"{pair} {variants[pair].timing.throughput_b8:,.0f}" for pair in passing if pair != best
    )
    why = f"fastest within budget: {variants[best].timing.throughput_b8:,.0f} inf/s at batch 8"
    why += f" (vs {others})" if others else f" ({', '.join(p for p, _ in refused)} outside budget)"
    return Choice(precision, best, why, refused)


def choose_gpu(precision: str, variants: dict) -> Choice:
    pair = GPU_SERVED[precision]
    variant = variants.get(pair)
    if variant is None or not variant.passed:
        verdict = variant.verdict if variant else "not measured (no runtime here runs it)"
        return Choice(precision, None, "", ((pair, verdict),))
    return Choice(precision, pair, "the artifact TensorRT builds")
