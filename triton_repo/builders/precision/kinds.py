"""The artifact kinds, declared once: how each is made, its file, the runners that run it, which target
serves it as which precision, and what the report and precision.yaml say of it.

A served variant is an (artifact, runner) pair, not a kind: the cpu target's bf16 is the FP32 graph run by
OpenVINO at BF16, and its int8 is the fastest of three kinds within budget. So each kind says, per runner,
which precision the cpu target may serve that pair as (`cpu_serves`), and which runner gates the gpu
target's TensorRT and ONNX Runtime models built from it (`gpu_runner`). Every other module asks this table
(docs/precision.md, "Adding an artifact kind").
"""

from __future__ import annotations

from dataclasses import dataclass, field

from triton_repo.core.spec import PRECISIONS
from triton_repo.runtimes.isolated import ORT, OV_BF16, OV_F32, Runner

# How a kind is made; each maker is one function of artifacts.py (MAKERS there), run in the child process
# of its tool family (TOOL_FAMILY): importing ModelOpt patches ONNX Runtime's quantizer, so tools never mix.
EXPORT, AUTOCAST, MODELOPT_INT8, ONNXRUNTIME_INT8, NNCF_INT8, QAD_EXPORT = (
    "export",
    "autocast",
    "modelopt-int8",
    "onnxruntime-int8",
    "nncf-int8",
    "qad-export",
)
TOOL_FAMILY = {
    AUTOCAST: "modelopt",
    MODELOPT_INT8: "modelopt",
    QAD_EXPORT: "modelopt",
    ONNXRUNTIME_INT8: "onnxruntime",
    NNCF_INT8: "nncf",
}


@dataclass(frozen=True)
class ArtifactKind:
    name: str  # what the build, the report and precision.yaml call it
    precision: str  # the spec precision that asks for it (fp32: always built)
    file: str  # in build/<model>/
    maker: str  # EXPORT, AUTOCAST, ...
    built_with: str  # the tool, for the manifest and refusals
    role: str  # BUILD_REPORT's line
    runners: tuple[Runner, ...]  # how the precision stage measures it
    cpu_serves: dict[str, str] = field(default_factory=dict)  # runner name -> precision the cpu target serves
    gpu_runner: Runner | None = None  # the pair the gpu target's <name>_<prec>_trt and _onnx are gated by
    low: str = ""  # AUTOCAST: the low-precision type
    cpu_kernels_only: bool = (
        False  # AUTOCAST: also keep in FP32 every op the serving ONNX Runtime lacks FP16 for
    )
    qad_high: str = ""  # with precision.int8.recover: qad, this kind is the QAD student, high precision this
    qad_role: str = ""  # BUILD_REPORT's line when QAD made it
    choices_note: str = (
        ""  # it owns a precision.yaml section: what keeping a node there means (the file's header)
    )
    choices_of: str = ""  # it applies another kind's section instead
    searchable: bool = False  # `search-precision` and `debug-int8` work on it

    @property
    def choices_section(self) -> str | None:
        """The precision.yaml section this kind applies; None for none (the reference)."""
        return self.choices_of or (self.name if self.choices_note else None)


KINDS: tuple[ArtifactKind, ...] = (
    ArtifactKind(
        "fp32",
        "fp32",
        "model.onnx",
        EXPORT,
        "export",
        "reference (exported FP32)",
        (ORT, OV_F32, OV_BF16),
        cpu_serves={ORT.name: "fp32", OV_F32.name: "fp32", OV_BF16.name: "bf16"},
        gpu_runner=ORT,
    ),
    ArtifactKind(
        "fp16",
        "fp16",
        "model.fp16.onnx",
        AUTOCAST,
        "ModelOpt AutoCast",
        "ModelOpt AutoCast FP16 (for TensorRT)",
        (ORT,),
        gpu_runner=ORT,
        low="fp16",
        choices_note="ModelOpt AutoCast keeps it in FP32 (model.fp16.onnx, for TensorRT)",
        searchable=True,
    ),
    ArtifactKind(
        "fp16-cpu",
        "fp16",
        "model.fp16-cpu.onnx",
        AUTOCAST,
        "ModelOpt AutoCast",
        "ModelOpt AutoCast FP16 (cpu serving)",
        (ORT,),
        cpu_serves={ORT.name: "fp16"},
        low="fp16",
        cpu_kernels_only=True,
        choices_note="ModelOpt AutoCast keeps it in FP32 (model.fp16-cpu.onnx, served by the cpu target)",
        searchable=True,
    ),
    ArtifactKind(  # ONNX Runtime's CPU has no BF16 kernels: measured in OpenVINO, which runs BF16 ops as written
        "bf16",
        "bf16",
        "model.bf16.onnx",
        AUTOCAST,
        "ModelOpt AutoCast",
        "ModelOpt AutoCast BF16 (for TensorRT)",
        (OV_F32,),
        gpu_runner=OV_F32,
        low="bf16",
        choices_note="ModelOpt AutoCast (bf16) keeps it in FP32 (model.bf16.onnx, for TensorRT)",
    ),
    ArtifactKind(
        "int8",
        "int8",
        "model.int8.onnx",
        MODELOPT_INT8,
        "ModelOpt INT8 PTQ",
        "ModelOpt Q/DQ INT8 (for TensorRT)",
        (ORT,),
        gpu_runner=ORT,
        qad_high="fp16",
        qad_role="ModelOpt QAD Q/DQ INT8, FP16 elsewhere (for TensorRT)",
        choices_note="ModelOpt Q/DQ PTQ leaves it unquantized (model.int8.onnx, for TensorRT)",
        searchable=True,
    ),
    ArtifactKind(
        "int8-cpu",
        "int8",
        "model.int8-cpu.onnx",
        ONNXRUNTIME_INT8,
        "ONNX Runtime quantization",
        "ONNX Runtime INT8 (cpu serving)",
        (ORT,),
        cpu_serves={ORT.name: "int8"},
        choices_note="ONNX Runtime quantization leaves it in float (model.int8-cpu.onnx, served by the cpu target)",
        searchable=True,
    ),
    ArtifactKind(
        "int8-ov",
        "int8",
        "model.int8-ov.onnx",
        NNCF_INT8,
        "NNCF INT8 PTQ",
        "NNCF INT8 for OpenVINO (cpu serving)",
        (OV_BF16,),
        cpu_serves={OV_BF16.name: "int8"},
        choices_note="NNCF leaves it in float (ignored scope; model.int8-ov.onnx, served by OpenVINO on the cpu target)",
        searchable=True,
    ),
    ArtifactKind(  # ModelOpt's Q/DQ placement is TensorRT's: ONNX Runtime's CPU runs it slowly
        "int8-qad",
        "int8",
        "model.int8-qad.onnx",
        QAD_EXPORT,
        "ModelOpt QAD",
        "ModelOpt QAD Q/DQ INT8, FP32 elsewhere (OpenVINO, cpu serving)",
        (OV_BF16,),
        cpu_serves={OV_BF16.name: "int8"},
        qad_high="fp32",
        choices_of="int8",  # the QAD student of the TensorRT artifact, exported without the FP16 cast
    ),
)
BY_NAME = {kind.name: kind for kind in KINDS}
REFERENCE = (
    "fp32"  # fp32 in ONNX Runtime: what PyTorch was verified against, what every pair is measured against
)


def kinds_for(precisions: list[str], recover: str = "none") -> list[str]:
    """The kinds a spec's precisions ask for, in table order: fp32 always; the QAD export only with
    precision.int8.recover: qad (after int8, whose build writes it too)."""
    return [
        k.name
        for k in KINDS
        if (k.precision == "fp32" or k.precision in precisions)
        and (k.maker != QAD_EXPORT or recover == "qad")
    ]


def runners_for(precisions: list[str]) -> dict[str, tuple[Runner, ...]]:
    """Each kind's runners, less a pair that serves only a precision nobody asked for (the FP32 graph in
    OpenVINO at BF16 is the cpu target's bf16, measured only when bf16 is built)."""
    return {
        k.name: tuple(
            r for r in k.runners if k.cpu_serves.get(r.name, k.precision) in (k.precision, *precisions)
        )
        for k in KINDS
    }


def pair_id(kind_name: str, runner: Runner) -> str:
    """'int8-cpu' (ONNX Runtime, the default) or 'int8-ov@ov-bf16'."""
    return kind_name if runner is ORT else f"{kind_name}@{runner.name}"


def split_pair(pair: str) -> tuple[str, str]:
    """'int8-ov@ov-bf16' -> ('int8-ov', 'ov-bf16'); 'int8-cpu' -> ('int8-cpu', 'ort')."""
    kind_name, _, runner = pair.partition("@")
    return kind_name, runner or ORT.name


# The cpu target's <name>_<precision>: the fastest of these pairs within budget (in table order).
CPU_CANDIDATES = {
    precision: tuple(
        pair_id(k.name, r) for k in KINDS for r in k.runners if k.cpu_serves.get(r.name) == precision
    )
    for precision in PRECISIONS
}
# The gpu target's <name>_<precision>_trt and _onnx: the artifact TensorRT builds (the pair it is gated by).
GPU_SERVED = {k.precision: pair_id(k.name, k.gpu_runner) for k in KINDS if k.gpu_runner is not None}
SEARCHABLE = tuple(k.name for k in KINDS if k.searchable)  # ranked by ONNX Runtime or OpenVINO: no bf16
CHOICES_SECTIONS = {k.name: k.choices_section for k in KINDS if k.choices_section is not None}
