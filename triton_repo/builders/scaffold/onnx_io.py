"""An ONNX file's graph inputs and outputs as it declares them (names, dtypes, dims), read without its
weights; a file that is not an ONNX model is refused with one line saying what it is."""

from __future__ import annotations

import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from triton_repo.core.errors import TritonRepoError

TAKES = "inspect and init take an ONNX file, a PyTorch checkpoint with --factory, FILE.py:FUNCTION or a Hugging Face folder"


@dataclass(frozen=True)
class DeclaredTensor:
    name: str
    dtype: str  # as the spec writes it: float32, int64, bool, ... (numpy's name; 'string' for text)
    dims: tuple[int | str | None, ...] | None  # int: fixed; str: a dim_param; None: unnamed dynamic

    @property
    def rank(self) -> int | None:
        return None if self.dims is None else len(self.dims)


@dataclass(frozen=True)
class GraphIO:
    path: Path
    inputs: tuple[DeclaredTensor, ...]  # graph inputs that are not initializers
    outputs: tuple[DeclaredTensor, ...]
    example_size: int | None = None  # an image size the file names in its metadata (Ultralytics' imgsz)
    vocab: dict[str, int] = field(default_factory=dict)  # int input -> rows of the smallest table it indexes
    examples: dict[str, int] = field(default_factory=dict)  # dim_param -> the size the source ran it at


def read_graph(path: Path) -> GraphIO:
    """The graph's inputs and outputs; TritonRepoError (one line) when `path` is not an ONNX model."""
    import onnx
    from google.protobuf.message import DecodeError

    if path.is_dir():
        raise TritonRepoError(f"{path}: a folder without model.yaml; {TAKES}, or a model folder")
    if not path.is_file():
        raise TritonRepoError(f"{path}: no such file; {TAKES}")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, OSError, RuntimeError):
        model = None
    if model is None or not _looks_like_a_model(model):
        raise TritonRepoError(f"{path}: not an ONNX model ({what_it_is(path)}); {TAKES}")
    graph = model.graph
    stored = {t.name for t in graph.initializer} | {t.name for t in graph.sparse_initializer}
    inputs = tuple(_declared(v) for v in graph.input if v.name not in stored)
    outputs = tuple(_declared(v) for v in graph.output)
    metadata = {p.key: p.value for p in model.metadata_props}
    return GraphIO(path, inputs, outputs, _example_size(metadata), _vocab(graph, inputs))


def _vocab(graph, inputs: tuple[DeclaredTensor, ...]) -> dict[str, int]:
    """For each int input that indexes an embedding table (Gather on a stored matrix, directly or through
    a Cast), the rows of the smallest such table: token ids must stay below it."""
    tables = {t.name: t.dims[0] for t in graph.initializer if len(t.dims) >= 1}
    cast = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "Cast" and n.input and n.output}
    found: dict[str, int] = {}
    names = {t.name for t in inputs}
    for node in graph.node:
        if node.op_type != "Gather" or len(node.input) < 2 or node.input[0] not in tables:
            continue
        source = cast.get(node.input[1], node.input[1])
        if source in names and tables[node.input[0]] > 0:
            found[source] = min(found.get(source, tables[node.input[0]]), tables[node.input[0]])
    return found


def _looks_like_a_model(model) -> bool:
    """Protobuf parses many byte strings as some message: a model has an IR version and graph outputs."""
    return model.ir_version > 0 and len(model.graph.output) > 0 and len(model.opset_import) > 0


def _declared(value) -> DeclaredTensor:
    import onnx

    kind = value.type.WhichOneof("value")
    if kind != "tensor_type":
        return DeclaredTensor(value.name, kind or "unknown", None)
    tensor = value.type.tensor_type
    dims = None
    if tensor.HasField("shape"):
        dims = tuple(
            d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else (d.dim_param or None)
            for d in tensor.shape.dim
        )
    if tensor.elem_type == onnx.TensorProto.STRING:
        dtype = "string"
    elif tensor.elem_type == onnx.TensorProto.BFLOAT16:
        dtype = "bfloat16"
    else:
        try:
            dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name
        except (KeyError, TypeError, ValueError):
            dtype = onnx.TensorProto.DataType.Name(tensor.elem_type).lower()
    return DeclaredTensor(value.name, dtype, dims)


def _example_size(metadata: dict[str, str]) -> int | None:
    """The image size an exporter wrote beside the graph (Ultralytics: imgsz '[640, 640]'), if square."""
    text = metadata.get("imgsz")
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    sizes = value if isinstance(value, list) else [value]
    if sizes and all(isinstance(s, int) and s > 0 for s in sizes) and len(set(sizes)) == 1:
        return sizes[0]
    return None


def what_it_is(path: Path) -> str:
    """A few words naming what a file that is not an ONNX model seems to be, from its first bytes."""
    with path.open("rb") as file:
        head = file.read(64)
    if not head:
        return "an empty file"
    if head.startswith(b"PK\x03\x04"):
        try:
            names = zipfile.ZipFile(path).namelist()
        except (zipfile.BadZipFile, OSError):
            names = []
        if any(n.endswith("data.pkl") for n in names):
            return "a PyTorch checkpoint saved with torch.save"
        return "a zip archive"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "a Python pickle (a PyTorch checkpoint in the legacy format?)"
    if head.startswith(b"\x89HDF"):
        return "an HDF5 file (a Keras .h5 model?)"
    if head[4:8] == b"TFL3":
        return "a TensorFlow Lite model"
    if len(head) > 8 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < 100_000_000:
        return "a safetensors weights file"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return f"a binary file starting {head[:8].hex(' ')}"
    first = text.strip().splitlines()[0] if text.strip() else ""
    if re.match(r"^[\w.-]+\s*:", first) or first.startswith("---"):
        return "a text file (YAML?)"
    if first.startswith(("{", "[")):
        return "a text file (JSON?)"
    return "a text file"
