"""Layer-by-layer INT8 debugging: which node of a quantized ONNX graph adds the error vs the FP32 graph.

Both graphs run in ONNX Runtime (CPU) through Polygraphy with every shared intermediate tensor marked as
an output. Tensors are matched by name: quantizers (ModelOpt Q/DQ, ONNX Runtime quantize_dynamic/static)
keep the FP32 names of node outputs. Feeds are streamed one at a time and per-tensor sums accumulated, so
memory holds one feed's intermediates, not all of them.
"""

from __future__ import annotations

import glob
import math
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from triton_repo.core.errors import TritonRepoError

SHAPE_OPS = frozenset({"Shape", "Size"})  # their outputs (and everything computed from them) are shapes
FLOAT_ELEM_TYPES = frozenset({1, 10, 11, 16})  # onnx.TensorProto FLOAT, FLOAT16, DOUBLE, BFLOAT16
RUNNERS = ("fp32", "quantized")
MASK_VALUE = 1e38  # |x| above this (float32 max is 3.4e38) is an additive mask value, not data


@dataclass(frozen=True)
class NodeError:
    """The error of one FP32 node's output in the quantized graph, accumulated over all feeds."""

    index: int  # position of the node in the FP32 graph's topological order
    node: str  # FP32 ONNX node name
    op_type: str
    tensor: str  # the node output compared
    error: float  # mean |q - f| / (mean |f| + 1e-12) over all feeds
    max_abs: float
    cosine: float  # cosine similarity of the flattened tensors (1.0 = identical)
    added: float  # error - max(error of the node's compared activation inputs, 0 if none)


@dataclass(frozen=True)
class LayerwiseReport:
    """Per-node errors in graph order, with how many tensors could be matched by name."""

    nodes: list[NodeError]  # graph order, only nodes with a matched float output
    matched: int  # tensors matched by name (float, same shape in both graphs) and compared
    fp32_tensors: int  # float tensors computed from the inputs in the FP32 graph (the candidates)
    outputs: dict[str, float]  # final graph outputs -> error

    def ranked(self, top: int | None = None) -> list[NodeError]:
        """Nodes by the error they add, largest first (NaN counts as infinite; ties in graph order)."""
        return sorted(self.nodes, key=_severity, reverse=True)[:top]

    def first_jump(self, factor: float = 0.5) -> NodeError | None:
        """The first node in graph order whose added error is at least `factor` times the largest."""
        largest = max(map(_severity, self.nodes), default=0.0)
        if not largest > 0:
            return None
        return next(n for n in self.nodes if _severity(n) >= factor * largest)

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict (nodes in graph order)."""
        return {
            "matched": self.matched,
            "fp32_tensors": self.fp32_tensors,
            "outputs": dict(self.outputs),
            "nodes": [asdict(n) for n in self.nodes],
        }


def _severity(node: NodeError) -> float:
    return math.inf if math.isnan(node.added) else node.added


class _Node(NamedTuple):
    name: str
    op_type: str
    inputs: list[str]
    outputs: list[str]


@dataclass(frozen=True)
class _Graph:
    """What the comparison needs from the FP32 graph: nodes in order and its float activations."""

    nodes: list[_Node]  # graph order
    activations: list[str]  # float node outputs computed from graph inputs, graph order
    outputs: list[str]


def _fp32_graph(model: Any) -> _Graph:
    """Float node outputs that depend on a graph input through data (not shape) computation."""
    import onnx

    graph = model.graph
    inferred = onnx.shape_inference.infer_shapes(model).graph
    elem = {v.name: v.type.tensor_type.elem_type for v in [*inferred.value_info, *inferred.output]}
    live = {i.name for i in graph.input} - {t.name for t in graph.initializer}
    activations = []
    for node in graph.node:
        if node.op_type in SHAPE_OPS or node.op_type == "Constant":
            continue
        if any(name in live for name in node.input):
            outputs = [o for o in node.output if o]
            live.update(outputs)
            # an unknown type (0) is kept: ONNX Runtime reports the real dtype, checked per feed
            activations += [o for o in outputs if elem.get(o, 0) in FLOAT_ELEM_TYPES | {0}]
    nodes = [_Node(n.name, n.op_type, list(n.input), list(n.output)) for n in graph.node]
    return _Graph(nodes, activations, [o.name for o in graph.output])


def _node_outputs(model: Any) -> set[str]:
    return {o for node in model.graph.node for o in node.output if o}


def _runner(model: Any, names: list[str], name: str) -> Any:
    """An ONNX Runtime (CPU) runner for `model` with exactly `names` marked as outputs."""
    from polygraphy.backend.onnx import bytes_from_onnx, modify_outputs
    from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx

    from triton_repo.runtimes.fp16_quantize import exact_fp16_quantize, runtime_truncates

    if runtime_truncates():  # measure FP16 Q/DQ graphs as the spec (and TensorRT) round, not truncated
        model = exact_fp16_quantize(model)
    # Polygraphy reads names holding * ? [ ] as fnmatch patterns; escape them to match literally.
    patterns = [glob.escape(n) if any(c in n for c in "*?[]") else n for n in names]
    marked = bytes_from_onnx(modify_outputs(model, outputs=patterns))
    return OnnxrtRunner(SessionFromOnnx(marked, providers=["cpu"]), name=name)


class _Sums:
    """Per-tensor running sums over feeds; tensors that are not float or change shape are dropped."""

    def __init__(self) -> None:
        self.sums: dict[str, np.ndarray] = {}  # name -> [elements kept, sum|f|, f.q, q.q, f.f]
        self.sizes: list[dict[str, int]] = []  # per feed: name -> elements Polygraphy averaged over
        self.dropped: set[str] = set()

    def add(self, fp32: dict[str, np.ndarray], quant: dict[str, np.ndarray]) -> dict[str, tuple]:
        """Accumulate one feed; returns name -> (fp32, quantized) arrays to compare, masks zeroed."""
        kept, sizes = {}, {}
        for name, f in fp32.items():
            q = quant.get(name)
            comparable = q is not None and f.shape == q.shape and f.dtype.kind == q.dtype.kind == "f"
            if not comparable or name in self.dropped:
                self.dropped.add(name)
                continue
            f64, q64, count = _unmasked(f.astype(np.float64).ravel(), q.astype(np.float64).ravel())
            row = np.array([count, np.abs(f64).sum(), f64 @ q64, q64 @ q64, f64 @ f64])
            self.sums[name] = self.sums.get(name, 0) + row
            sizes[name] = f64.size
            kept[name] = (f, q) if count == f.size else (f64.reshape(f.shape), q64.reshape(q.shape))
        self.sizes.append(sizes)
        return kept

    def tap(self, stream: Iterable[Any]) -> Iterator[Any]:
        """Pass Polygraphy's streamed RunResults through, accumulating the sums and keeping the comparable
        outputs."""
        from polygraphy.comparator import IterationResult, RunResults

        for run in stream:
            (_, [fp32]), (_, [quant]) = run.items()
            kept = self.add(dict(fp32.items()), dict(quant.items()))
            filtered = RunResults()
            for side, result in enumerate((fp32, quant)):
                outputs = {name: pair[side] for name, pair in kept.items()}
                filtered.append(
                    (result.runner_name, [IterationResult(outputs, result.runtime, result.runner_name)])
                )
            yield filtered


def _unmasked(f: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Zero the positions where both hold a same-signed mask value (-inf, -3.4e38); count the rest.

    Quantizers may rewrite an attention mask's float32 min into -inf: those positions mean the same.
    Any other NaN/inf is left in place so that it shows up as an infinite or NaN error.
    """
    if not f.size or (np.abs(f).max() < MASK_VALUE and np.abs(q).max() < MASK_VALUE):  # NaN: slow path
        return f, q, f.size
    masked = (np.abs(f) >= MASK_VALUE) & (np.abs(q) >= MASK_VALUE) & (np.sign(f) == np.sign(q))
    f, q = np.where(masked, 0.0, f), np.where(masked, 0.0, q)
    return f, q, f.size - int(np.count_nonzero(masked))


def _compare(runners: list[Any], feeds: list[dict[str, np.ndarray]]) -> tuple[list[dict[str, Any]], _Sums]:
    """Run both graphs feed by feed: Polygraphy's per-feed OutputCompareResult for each compared tensor,
    and the running sums over every feed."""
    from polygraphy.comparator import Comparator, SimpleCompareFunc
    from polygraphy.logger import G_LOGGER

    compare = SimpleCompareFunc(
        check_error_stat="mean",
        find_output_func=lambda name, _index, other: [name] if name in other else None,
    )
    sums = _Sums()
    # every quantized tensor "fails" the default 1e-5 tolerance; silence that per-tensor log
    with G_LOGGER.verbosity(G_LOGGER.CRITICAL):
        stream = Comparator.run(runners, data_loader=list(feeds), streaming=True)
        results = Comparator.compare_accuracy(sums.tap(stream), compare_func=compare)
    return results[0][RUNNERS], sums


def _tensor_stats(per_feed: list[dict[str, Any]], sums: _Sums) -> dict[str, tuple[float, float, float]]:
    """Tensor -> (error, max_abs, cosine) from Polygraphy's per-feed stats and the running sums."""
    abs_sum: dict[str, float] = {}
    max_abs: dict[str, float] = {}
    for results, sizes in zip(per_feed, sums.sizes, strict=True):
        for name, result in results.items():
            abs_sum[name] = abs_sum.get(name, 0.0) + result.mean_absdiff * sizes[name]
            max_abs[name] = max(max_abs.get(name, 0.0), result.max_absdiff)
    stats = {}
    for name in abs_sum.keys() - sums.dropped:
        count, f_abs, fq, qq, ff = sums.sums[name]
        error = (abs_sum[name] / count) / (f_abs / count + 1e-12) if count else 0.0
        stats[name] = (float(error), max_abs[name], _cosine(fq, qq, ff))
    return stats


def _cosine(fq: float, qq: float, ff: float) -> float:
    if qq == 0 and ff == 0:
        return 1.0
    if qq == 0 or ff == 0:
        return 0.0
    return float(fq / math.sqrt(qq * ff))


def _node_errors(graph: _Graph, stats: dict[str, tuple[float, float, float]]) -> list[NodeError]:
    """One NodeError per FP32 node with a compared output (its worst one), in graph order."""
    carried: dict[str, float] = {}  # tensor -> its error, or the error it inherits if not compared
    nodes = []
    for index, node in enumerate(graph.nodes):
        upstream = max((carried.get(name, 0.0) for name in node.inputs if name), default=0.0)
        compared = [o for o in node.outputs if o in stats]
        for out in node.outputs:
            carried[out] = stats[out][0] if out in stats else upstream
        if not compared:
            continue
        tensor = max(compared, key=lambda o: stats[o][0])
        error, max_abs, cosine = stats[tensor]
        name = node.name or tensor
        nodes.append(NodeError(index, name, node.op_type, tensor, error, max_abs, cosine, error - upstream))
    return nodes


def layerwise_errors(
    fp32_onnx: Path, quantized_onnx: Path, feeds: list[dict[str, np.ndarray]]
) -> LayerwiseReport:
    """Compare every float tensor the two graphs share, over all feeds, and attribute error to nodes."""
    import onnx

    if not feeds:
        raise TritonRepoError("layerwise_errors needs at least one feed dict; got none")
    fp32_model, quant_model = onnx.load(str(fp32_onnx)), onnx.load(str(quantized_onnx))
    graph = _fp32_graph(fp32_model)
    quant_names = _node_outputs(quant_model)
    shared = [name for name in graph.activations if name in quant_names]
    if not shared:
        raise TritonRepoError(
            f"{quantized_onnx} shares no float tensor name with {fp32_onnx}: "
            "layer-wise comparison needs the quantized graph to keep the FP32 node output names"
        )
    runners = [_runner(fp32_model, shared, RUNNERS[0]), _runner(quant_model, shared, RUNNERS[1])]
    del fp32_model, quant_model  # the runners hold the serialized graphs; free the weights
    stats = _tensor_stats(*_compare(runners, feeds))
    if not stats:
        raise TritonRepoError(
            f"none of the {len(shared)} tensors named alike in {fp32_onnx} and {quantized_onnx} "
            "has the same float dtype and shape in both; nothing to compare"
        )
    outputs = {name: stats[name][0] for name in graph.outputs if name in stats}
    return LayerwiseReport(_node_errors(graph, stats), len(stats), len(graph.activations), outputs)


def isolated_layerwise_errors(
    name: str, kind: str, fp32_onnx: Path, quantized_onnx: Path, feeds: list[dict[str, np.ndarray]]
) -> LayerwiseReport:
    """layerwise_errors in a child process: a runtime crash becomes one line, not the end of the command."""
    from triton_repo.builders.precision.lowered import describe_lowered
    from triton_repo.core.errors import CheckFailed
    from triton_repo.runtimes.isolated import ArtifactRunFailed, call_in_child

    try:
        return call_in_child(
            f"comparing {Path(quantized_onnx).name} layer by layer",
            layerwise_errors,
            fp32_onnx,
            quantized_onnx,
            feeds,
        )
    except ArtifactRunFailed as error:
        raise CheckFailed(f"{name} {kind}: {error}; {describe_lowered(quantized_onnx)}") from None


def write_chart(report: LayerwiseReport, png: Path, title: str) -> None:
    """PNG: error per node in graph order (log y) above the error each node adds, top 5 annotated."""
    from matplotlib.figure import Figure

    nodes = report.nodes
    x = np.arange(len(nodes))
    errors = np.maximum(_finite([n.error for n in nodes]), 1e-6)  # zeros sit on the log axis floor
    added = _finite([n.added for n in nodes])
    fig = Figure(figsize=(max(8.0, min(24.0, len(nodes) / 25)), 7), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 2])
    top.semilogy(x, errors, lw=1, marker=".", ms=3, label="error = mean|q-f| / mean|f|")
    top.set_ylim(top=errors.max(initial=1e-6) * 100)  # headroom for the labels
    top.set(ylabel="error (log)", title=title)
    bottom.bar(x, added, width=1.0, color=np.where(added >= 0, "tab:red", "tab:green"))
    bottom.set(ylabel="error added by the node", xlabel="compared node (FP32 graph order)")
    position = {id(n): i for i, n in enumerate(nodes)}
    lines = []
    for rank, node in enumerate(report.ranked(5), start=1):
        i = position[id(node)]
        top.plot(i, errors[i], "o", color="tab:red", ms=5)
        top.annotate(str(rank), (i, errors[i]), xytext=(0, 6), textcoords="offset points", ha="center")
        bottom.annotate(str(rank), (i, added[i]), xytext=(0, 2), textcoords="offset points", ha="center")
        lines.append(f"{rank}. {_short(node.node)} ({node.op_type}) +{node.added:.3g}")
    top.text(0.01, 0.98, "\n".join(lines), transform=top.transAxes, va="top", fontsize=8, family="monospace")
    top.legend(loc="lower right", fontsize=8)
    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)


def _finite(values: list[float]) -> np.ndarray:
    """NaN/inf (a graph producing NaN) drawn at 10x the largest finite magnitude so the axes still scale."""
    array = np.asarray(values, dtype=np.float64)
    finite = np.abs(array[np.isfinite(array)])
    ceiling = 10 * (finite.max() if finite.size else 1.0)
    return np.nan_to_num(array, nan=ceiling, posinf=ceiling, neginf=-ceiling)


def _short(name: str, parts: int = 4) -> str:
    """The last components of a node path (/encoder/encoder/layer.0/output/dense/MatMul -> layer.0/...)."""
    return "/".join(name.split("/")[-parts:])
