"""What every spec section shares: strict models (unknown keys are errors) and the names and values
the sections refer to."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict

BATCH_AXIS = "batch"
NAME_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"
TENSOR_NAME_MAX = 256
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

# The precisions a spec can ask for; each becomes the Triton model <name>_<precision>.
PRECISIONS = ("fp32", "fp16", "bf16", "int8")
Precision = Literal["fp32", "fp16", "bf16", "int8"]


def check_tensor_name(name: str) -> str:
    """Any name ONNX and Triton accept, as converters write them (`input:0`, `model/dense/BiasAdd`,
    `sigmoid_0.tmp_0`, `1234`): refused only when empty, over 256 characters, with a control character
    (a newline cannot be sent in an HTTP header or written to config.pbtxt as it is) or with spaces at
    either end (Triton matches names exactly, and a client would never send them)."""
    if not name:
        raise ValueError("a tensor name is empty; give the name the ONNX graph uses")
    if len(name) > TENSOR_NAME_MAX:
        raise ValueError(f"a tensor name is {len(name)} characters; at most {TENSOR_NAME_MAX}")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise ValueError(f"{name!r} has a control character; use the graph's printable name")
    if name != name.strip():
        raise ValueError(f"{name!r} starts or ends with a space; remove it (Triton matches names exactly)")
    return name


TensorName = Annotated[str, AfterValidator(check_tensor_name)]


def check_function_reference(value: str) -> str:
    if not re.fullmatch(REFERENCE_PATTERN, value):
        raise ValueError(f"'{value}' must be module:function")
    return value


FunctionRef = Annotated[str, AfterValidator(check_function_reference)]  # module:function, nothing else


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
