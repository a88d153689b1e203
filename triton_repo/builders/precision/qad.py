"""Quantization-aware distillation (QAD) of the TensorRT INT8 artifact, run in the artifact builder's child.

The FP32 PyTorch model is the teacher. A copy gets ModelOpt INT8 fake quantization on every Linear and
Conv (weights per output channel, activations per tensor: the placement TensorRT runs in INT8), is
calibrated on data.calibration (max), then trained so that its accuracy output matches the teacher's
on data.calibration and data.train. data.eval never enters: a training row equal to an eval row is an
error. The student is exported with the spec's exporter (explicit QuantizeLinear/DequantizeLinear) and
every op that is not quantized is cast to FP16 by ModelOpt AutoCast, I/O kept FP32: a strongly typed
graph whose every tensor has one dtype.

Nodes kept in higher precision (precision.yaml) are FP32-graph node names; each maps to the module whose
scope the exporter gave it (`/encoder/layer.0/attention/self/query/MatMul` -> that Linear), and that
module's quantizers are disabled before calibration, so it stays FP16.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from triton_repo.core.errors import SpecError, TritonRepoError
from triton_repo.core.fingerprint import arrays_digest

if TYPE_CHECKING:
    from triton_repo.builders.data import ModelData

QUANTIZED_MODULES = ("nn.Linear", "nn.Conv1d", "nn.Conv2d", "nn.Conv3d")
STATS_SUFFIX = ".qad.json"  # written beside the artifact: what the report shows about the run

QAD_THREADS = 2  # the smallest machine the project supports: training reads the same everywhere


@dataclass(frozen=True)
class QadJob:
    """What the child needs besides the common artifact inputs (picklable once `loaded()`)."""

    model_folder: Path  # reloaded in the child: the factory and the checkpoint are the spec's
    train_digest: str  # of data.train: part of the artifact's cache key
    label: str = ""  # progress prefix (the model's name)
    target: str = ""  # what the loss reads: the accuracy metric and output (part of the cache key)
    train: dict[str, np.ndarray] | None = None  # data.train
    eval_rows: frozenset[str] = frozenset()  # digests of the eval rows, to prove none is trained on
    loader: Callable | None = field(default=None, compare=False, repr=False)  # (train, eval_rows), if not yet

    def loaded(self) -> QadJob:
        """The job with its rows (they are read only when the artifact is built, not when it is cached)."""
        if self.loader is None:
            return self
        train, eval_rows = self.loader()
        return dataclasses.replace(self, train=train, eval_rows=eval_rows, loader=None)


@dataclass
class QadStats:
    steps: int = 0  # optimizer steps taken
    steps_asked: int = 0
    seconds: float = 0.0
    loss: str = ""
    first_loss: float | None = None
    last_loss: float | None = None  # mean of the last 10 steps
    quantized_modules: int = 0
    kept_modules: list[str] = field(default_factory=list)
    training_rows: int = 0
    stopped: str = ""  # why training stopped before `steps_asked`, if it did
    fp32_nodes: int = 0  # nodes AutoCast left in FP32 (beyond Q/DQ and I/O casts)

    def save(self, artifact: Path) -> None:
        artifact.with_name(artifact.name + STATS_SUFFIX).write_text(json.dumps(asdict(self), indent=2))


def load_stats(artifact: Path) -> QadStats | None:
    path = artifact.with_name(artifact.name + STATS_SUFFIX)
    if not path.is_file():
        return None
    return QadStats(**json.loads(path.read_text()))


def qad_job(loaded, always: bool = False, data: ModelData | None = None) -> QadJob | None:
    """The QAD inputs for a spec whose TensorRT int8 artifact is distilled (recover: qad), else None;
    `always`: for any spec with a PyTorch source (`triton-repo qad` tries it on any model). With the
    build's `data`, the rows are read only if the artifact has to be built."""
    spec = loaded.spec
    wanted = always or ("int8" in spec.precisions and spec.precision.int8.recover == "qad")
    if not wanted or spec.source.factory is None:
        return None
    accuracy = spec.accuracy
    target = f"{accuracy.metric}:{accuracy.output or spec.outputs[0].name}" if accuracy else ""
    if data is None:
        from triton_repo.core.references import load_arrays

        train = load_arrays(loaded, "train") if spec.data.train is not None else None
        eval_rows = frozenset(row_digests(load_arrays(loaded, "eval")))
        return QadJob(loaded.folder, arrays_digest(train), spec.name, target, train, eval_rows)
    train_set, eval_set = data.get("train"), data.get("eval")

    def rows() -> tuple[dict[str, np.ndarray] | None, frozenset[str]]:
        evaluated = row_digests(eval_set.arrays) if eval_set else []
        return (train_set.arrays if train_set else None, frozenset(evaluated))

    digest = train_set.digest if train_set else arrays_digest(None)
    return QadJob(loaded.folder, digest, spec.name, target, loader=rows)


def row_digests(arrays: dict[str, np.ndarray] | None) -> list[str]:
    """One digest per row over every input (padding to the batch's longest row ignored: trailing zeros
    of a token row do not make it a different sentence)."""
    if not arrays:
        return []
    names = sorted(arrays)
    rows = len(arrays[names[0]])
    digests = []
    for i in range(rows):
        digest = hashlib.sha256()
        for name in names:
            row = np.ascontiguousarray(arrays[name][i])
            if row.ndim == 1 and row.dtype.kind in "iu":
                row = np.trim_zeros(row, "b")
            digest.update(f"{name}|{row.dtype}|{row.shape}|".encode())
            digest.update(row.tobytes())
        digests.append(digest.hexdigest())
    return digests


def training_batches(
    calibration: dict[str, np.ndarray],
    train: dict[str, np.ndarray] | None,
    eval_rows: frozenset[str],
    batch_size: int,
) -> list[dict[str, np.ndarray]]:
    """Mini-batches of data.calibration and data.train (each source batched on its own: their padded
    shapes may differ). Refuses any row that is also an eval row."""
    sources = {"data.calibration": calibration, "data.train": train}
    batches = []
    for where, arrays in sources.items():
        if not arrays:
            continue
        shared = sum(digest in eval_rows for digest in row_digests(arrays))
        if shared:
            raise SpecError(
                f"{where} shares {shared} row(s) with data.eval: the accuracy gate must measure rows the "
                "model was not trained on; make them disjoint"
            )
        rows = len(next(iter(arrays.values())))
        for start in range(0, rows, batch_size):
            batches.append({name: array[start : start + batch_size] for name, array in arrays.items()})
    return batches


def module_for_node(node: str) -> str:
    """The module path a TorchScript-exported node's scope names: '/encoder/encoder/layer.0/attention/
    self/query/MatMul' -> 'encoder.encoder.layer.0.attention.self.query', '/layer1/layer1.0/conv1/Conv'
    -> 'layer1.0.conv1' (a scope part may repeat its parent's path)."""
    parts = [part for part in node.split("/") if part][:-1]
    path = ""
    for part in parts:
        path = part if path and part.startswith(path + ".") else (f"{path}.{part}" if path else part)
    return path


def qad_int8(
    job: QadJob,
    output: Path,
    settings,
    kept: tuple[str, ...],
    calibration: dict[str, np.ndarray] | None,
    kept_op_types: tuple[str, ...],
    high_precision: str = "fp16",
    companion: Path | None = None,
) -> Path:
    """Quantize, calibrate, distil and export; writes `output` (and its stats) atomically.

    `high_precision` "fp16": every unquantized op cast to FP16 (TensorRT's artifact); "fp32": the Q/DQ
    export as it is (the cpu target's int8-qad, which OpenVINO runs at BF16). `companion`: a second path
    that gets the FP32 export of the same student (and the same stats), so one training serves both."""
    if high_precision not in ("fp16", "fp32"):
        raise ValueError(f"QAD high precision must be fp16 or fp32, not {high_precision!r}")
    import onnx
    import torch

    from triton_repo.builders.export import _build_module, _export_torch
    from triton_repo.core.references import load_arrays
    from triton_repo.core.spec import load_spec

    if not calibration:
        raise ValueError("int8 needs calibration data")
    loaded = load_spec(job.model_folder)
    spec = loaded.spec
    qad = settings.qad  # the caller's (a command line may override the spec's)
    batches = training_batches(calibration, job.train, job.eval_rows, qad.batch_size)
    loss = _loss_name(qad.loss, spec)
    torch.manual_seed(qad.seed)
    # The same arithmetic on every machine where it can be: a fixed thread count (sums split the same
    # way whatever the core count; this runs in the quantizers' child process) and torch's
    # deterministic kernels. The instruction set still differs between CPUs: search-precision's --margin
    # covers it.
    torch.set_num_threads(QAD_THREADS)
    torch.use_deterministic_algorithms(True, warn_only=True)
    teacher = _build_module(loaded)
    student = copy.deepcopy(teacher)
    quantized_modules, kept_modules = _quantize(student, calibration, kept, spec, qad.batch_size)
    trained = _distil(teacher, student, batches, qad, spec, loss, job.label) if qad.steps else _Training()
    stats = QadStats(
        steps_asked=qad.steps,
        loss=loss,
        quantized_modules=quantized_modules,
        kept_modules=kept_modules,
        training_rows=sum(len(next(iter(b.values()))) for b in batches),
        **asdict(trained),
    )
    student.eval()
    del teacher
    scratch = output.with_name(output.name + ".qdq-fp32.onnx")
    tmp = output.with_name(output.name + ".tmp")
    try:
        _export_torch(loaded, student, load_arrays(loaded, "sample"), scratch)
        if companion is not None:
            _replace_with_copy(scratch, companion)
            stats.save(companion)
        if high_precision == "fp32":
            os.replace(scratch, output)
            stats.save(output)
            return output
        from modelopt.onnx.autocast import convert_to_mixed_precision

        from triton_repo.builders.precision.lowered import RECURRENT_OPS

        graph_ops = {node.op_type for node in onnx.load(str(scratch), load_external_data=False).graph.node}
        model = convert_to_mixed_precision(
            onnx_path=str(scratch),
            low_precision_type="fp16",
            keep_io_types=True,
            op_types_to_exclude=sorted(set(kept_op_types) | (RECURRENT_OPS & graph_ops)) or None,
        )
        stats = dataclasses.replace(stats, fp32_nodes=len(float32_compute_nodes(model)))
        onnx.save(model, str(tmp))
        os.replace(tmp, output)
    finally:
        scratch.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)
    stats.save(output)
    return output


def _replace_with_copy(source: Path, target: Path) -> None:
    import shutil

    tmp = target.with_name(target.name + ".tmp")
    try:
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


# The distillation loss that follows each metric (precision.int8.qad.loss: auto): the direction of a vector
# for cosine and neighbours, the class distribution for classes and CTC characters, the values for the rest
# (decisions, maps, a detection head's boxes and scores; a metric of your own).
AUTO_LOSS = {
    "cosine_min": "cosine",
    "embedding": "cosine",
    "top1_drop": "kl",
    "top1_agreement": "kl",
    "topk_agreement": "kl",
    "ctc": "kl",
}


def _loss_name(loss: str, spec) -> str:
    if loss != "auto":
        return loss
    return "cosine" if spec.accuracy is None else AUTO_LOSS.get(spec.accuracy.metric, "mse")


def _quantize(student, calibration, kept, spec, batch_size: int) -> tuple[int, list[str]]:
    """ModelOpt INT8 fake quantization of the student, calibrated; (quantized modules, kept modules)."""
    import modelopt.torch.quantization as mtq
    import torch

    config = {
        "quant_cfg": [{"quantizer_name": "*", "enable": False}]
        + [
            {
                "quantizer_name": quantizer,
                "parent_class": parent,
                "cfg": {"num_bits": 8, "axis": 0 if quantizer == "*weight_quantizer" else None},
                "enable": True,
            }
            for parent in QUANTIZED_MODULES
            for quantizer in ("*weight_quantizer", "*input_quantizer")
        ],
        "algorithm": "max",
    }
    kept_modules = _kept_modules(student, kept)
    for name in kept_modules:  # kept before calibration: ModelOpt leaves disabled quantizers alone
        config["quant_cfg"].append({"quantizer_name": f"{name}.*", "enable": False})

    def calibrate(model) -> None:
        with torch.no_grad():
            for start in range(0, len(next(iter(calibration.values()))), batch_size):
                _forward(model, spec, {k: v[start : start + batch_size] for k, v in calibration.items()})

    mtq.quantize(student, config, calibrate)
    quantized_modules = sum(
        1
        for name, module in student.named_modules()
        if name.endswith(".weight_quantizer") and module.is_enabled
    )
    if not quantized_modules:
        raise TritonRepoError(
            "QAD: the model has no Linear or Conv module left to quantize"
            + (f" ({len(kept_modules)} kept by precision.yaml)" if kept_modules else "")
        )
    return quantized_modules, sorted(kept_modules)


def _kept_modules(student, kept: tuple[str, ...]) -> list[str]:
    import torch

    modules = dict(student.named_modules())
    quantizable = (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)
    names = []
    for node in kept:
        name = module_for_node(node)
        if not isinstance(modules.get(name), quantizable):
            raise SpecError(
                f"precision.yaml keeps node '{node}', which maps to no Linear or Conv module of the "
                f"PyTorch model (scope '{name}'): QAD keeps modules, so keep only their MatMul/Gemm/Conv "
                "nodes (regenerate with `triton-repo search-precision MODEL --artifact int8`)"
            )
        if name not in names:
            names.append(name)
    return names


def _forward(model, spec, batch: dict[str, np.ndarray]):
    import torch

    result = model(*[torch.from_numpy(np.ascontiguousarray(batch[t.name])) for t in spec.inputs])
    names = [t.name for t in spec.outputs]
    wanted = spec.accuracy.output if spec.accuracy and spec.accuracy.output else names[0]
    if isinstance(result, dict):
        return result[wanted]
    if isinstance(result, list | tuple):
        return result[names.index(wanted)]
    return result


@dataclass(frozen=True)
class _Training:
    """What the distillation did (QadStats' fields of the same names); nothing without steps."""

    steps: int = 0
    seconds: float = 0.0
    first_loss: float | None = None
    last_loss: float | None = None  # mean of the last 10 steps
    stopped: str = ""


def _distil(teacher, student, batches, qad, spec, loss_name: str, label: str) -> _Training:
    import torch

    student.eval()  # no dropout: the student learns the teacher's inference-time outputs
    parameters = [p for p in student.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=qad.learning_rate, weight_decay=0.0)
    rng = np.random.default_rng(qad.seed)
    losses: list[float] = []
    start = time.perf_counter()
    deadline = start + qad.max_minutes * 60
    report_every = max(1, qad.steps // 10)
    steps, stopped = 0, ""
    for step in range(qad.steps):
        batch = batches[int(rng.integers(len(batches)))]
        with torch.no_grad():
            target = _forward(teacher, spec, batch).float()
        prediction = _forward(student, spec, batch).float()
        loss = _loss(loss_name, prediction, target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
        steps = step + 1
        elapsed = time.perf_counter() - start
        if steps % report_every == 0 or steps == qad.steps:
            _progress(
                f"{label}: QAD step {steps}/{qad.steps}, {loss_name} loss "
                f"{np.mean(losses[-report_every:]):.5f} ({elapsed:.0f} s)"
            )
        if time.perf_counter() > deadline and steps < qad.steps:
            stopped = f"max_minutes {qad.max_minutes:g} reached after {steps} steps"
            _progress(f"{label}: QAD stopped: {stopped}")
            break
    return _Training(
        steps=steps,
        seconds=round(time.perf_counter() - start, 1),
        first_loss=losses[0] if losses else None,
        last_loss=float(np.mean(losses[-10:])) if losses else None,
        stopped=stopped,
    )


def _loss(kind: str, prediction, target):
    import torch
    from torch.nn import functional

    flat_p, flat_t = prediction.flatten(1), target.flatten(1)
    if kind == "cosine":
        return (1 - functional.cosine_similarity(flat_p, flat_t, dim=-1)).mean()
    if kind == "mse":
        return functional.mse_loss(prediction, target)
    # kl: over the last axis (the classes), teacher's distribution as the target
    return functional.kl_div(
        torch.log_softmax(prediction, dim=-1),
        torch.log_softmax(target, dim=-1),
        log_target=True,
        reduction="batchmean",
    )


def float32_compute_nodes(model) -> list[str]:
    """Nodes of a strongly typed graph computing in FP32: float outputs that are FP32, other than the
    casts at the FP32 I/O and Q/DQ. Empty for a graph whose every unquantized op is FP16."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    elem = {
        v.name: v.type.tensor_type.elem_type for v in [*inferred.graph.value_info, *inferred.graph.output]
    }
    skipped = {"Cast", "QuantizeLinear", "DequantizeLinear", "Shape", "Constant"}
    fp32 = onnx.TensorProto.FLOAT
    return [
        node.name
        for node in model.graph.node
        if node.op_type not in skipped and any(elem.get(o) == fp32 for o in node.output if o)
    ]


def _progress(message: str) -> None:
    """The child's output is silenced (the quantizers are chatty); progress goes to the real stderr."""
    print(message, file=sys.__stderr__, flush=True)
