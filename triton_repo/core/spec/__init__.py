"""The model spec, models/<name>/model.yaml: validated when loaded, unknown keys rejected.

Shapes are declared once: each dynamic axis is named under `axes` with min/opt/max, and every
input/output dim is either a fixed positive integer or the name of a declared axis. Triton dims,
max_batch_size, warmup shapes and the verification shapes are all derived from it.

One module per section (shapes, sources, precision, triton, ensemble, gpu, sequence), the whole spec and its
cross-section checks in model.py, reading and error formatting in loader.py; every public name is
importable from here.
"""

from triton_repo.core.spec.accuracy import (
    DEFAULT_BUDGETS,
    METRICS,
    Accuracy,
    BinarySettings,
    ClassificationSettings,
    CtcSettings,
    CustomSettings,
    DenseSettings,
    DetectionSettings,
    Drop,
    EmbeddingSettings,
    detection_layout,
)
from triton_repo.core.spec.base import (
    BATCH_AXIS,
    NAME_PATTERN,
    PRECISIONS,
    REFERENCE_PATTERN,
    TRITON_DTYPES,
    DType,
    Precision,
    TensorName,
)
from triton_repo.core.spec.ensemble import (
    DETECTION_OUTPUTS,
    LETTERBOX,
    STEP_KINDS,
    DetectionsStep,
    EnsembleSpec,
    ImageStep,
    LetterboxStep,
    PixelsStep,
    TokenizeStep,
)
from triton_repo.core.spec.gpu import GpuSettings
from triton_repo.core.spec.loader import discover_specs, find_model, load_spec, parse_spec
from triton_repo.core.spec.model import LoadedSpec, ModelSpec
from triton_repo.core.spec.precision import (
    CpuInt8Settings,
    Int8Settings,
    OpenVinoInt8Settings,
    PrecisionSettings,
    QadSettings,
)
from triton_repo.core.spec.sequence import SequenceSettings, StatePair
from triton_repo.core.spec.shapes import Dim, InputSpec, OutputSpec, ShapeRange, TensorSpec, Tolerance
from triton_repo.core.spec.sources import DataRef, DataSpec, Source
from triton_repo.core.spec.triton import DynamicBatching, TritonSettings

__all__ = [
    "BATCH_AXIS",
    "DEFAULT_BUDGETS",
    "NAME_PATTERN",
    "PRECISIONS",
    "REFERENCE_PATTERN",
    "STEP_KINDS",
    "DETECTION_OUTPUTS",
    "LETTERBOX",
    "DetectionsStep",
    "LetterboxStep",
    "TensorName",
    "TRITON_DTYPES",
    "METRICS",
    "Accuracy",
    "BinarySettings",
    "ClassificationSettings",
    "CtcSettings",
    "CustomSettings",
    "DenseSettings",
    "DetectionSettings",
    "Drop",
    "EmbeddingSettings",
    "detection_layout",
    "CpuInt8Settings",
    "DType",
    "DataRef",
    "DataSpec",
    "Dim",
    "DynamicBatching",
    "EnsembleSpec",
    "GpuSettings",
    "ImageStep",
    "InputSpec",
    "Int8Settings",
    "LoadedSpec",
    "ModelSpec",
    "OpenVinoInt8Settings",
    "QadSettings",
    "OutputSpec",
    "PixelsStep",
    "Precision",
    "PrecisionSettings",
    "SequenceSettings",
    "ShapeRange",
    "Source",
    "StatePair",
    "TensorSpec",
    "TokenizeStep",
    "Tolerance",
    "TritonSettings",
    "discover_specs",
    "find_model",
    "load_spec",
    "parse_spec",
]
