"""Mixed-precision search: the few FP32-graph nodes to keep in higher precision so a variant meets its budget.

Seeded by the layer-wise ranking of debug-int8 and confirmed by re-measuring: keep the top 1, 2, 4, 8...
ranked nodes until the variant passes, bisect to the shortest passing prefix of the ranking, then try
quantizing each kept node again (least harmful first) and keep only the ones the budget really needs. Every trial quantizes and measures for real; trials and time
are bounded.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from triton_repo.builders.precision.accuracy import AccuracyResult, row_batches
from triton_repo.builders.precision.debug import SHAPE_OPS, LayerwiseReport
from triton_repo.builders.precision.node_choices import KeptNode


@dataclass(frozen=True)
class Trial:
    kept: tuple[str, ...]
    accuracy: AccuracyResult
    seconds: float


@dataclass
class SearchOutcome:
    artifact: str
    default: AccuracyResult  # nothing kept
    found: tuple[str, ...] | None  # None: no passing set within the bounds
    accuracy: AccuracyResult | None  # of the found set
    trials: list[Trial] = field(default_factory=list)
    why: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    stopped_early: str = ""  # why the search stopped before finishing, if it did


def candidates(report: LayerwiseReport, changed: set[str] | None) -> list[str]:
    """FP32 nodes the variant changed, most harmful first (by the error they add, then graph order).

    `changed` is the set from `changed_nodes` (None for FP16, where any node can be kept in FP32).
    Nodes the ranking did not see (no matched output) come last.
    """
    names: list[str] = []
    for node in report.ranked():
        if (changed is None or node.node in changed) and node.node not in names:
            names.append(node.node)
    return names + sorted((changed or set()) - set(names))


def changed_nodes(fp32_onnx: Path, quantized_onnx: Path) -> set[str]:
    """FP32 nodes a quantizer changed: ones fed by a DequantizeLinear (Q/DQ) or replaced (dynamic, QOperator)."""
    import onnx

    # Nodes that read only a tensor's shape may be rewired by a quantizer but compute nothing to keep.
    fp32_nodes = onnx.load(str(fp32_onnx), load_external_data=False).graph.node
    original = {n.name for n in fp32_nodes if n.op_type not in SHAPE_OPS}
    graph = onnx.load(str(quantized_onnx), load_external_data=False).graph
    dequantized = {out for n in graph.node if n.op_type == "DequantizeLinear" for out in n.output}
    present = {n.name for n in graph.node}
    fed_by_dq = {n.name for n in graph.node if n.name in original and any(i in dequantized for i in n.input)}
    return fed_by_dq | (original - present)


def search(
    artifact: str,
    evaluate: Callable[[tuple[str, ...]], AccuracyResult],
    ranked: list[str],
    max_trials: int = 24,
    max_seconds: float = 1200.0,
    progress: Callable[[str], None] = lambda message: None,
) -> SearchOutcome:
    """Grow the kept set by doubling along the ranking until it passes, then prune it one node at a time."""
    start = time.perf_counter()
    trials: list[Trial] = []

    def run(kept: tuple[str, ...]) -> AccuracyResult:
        began = time.perf_counter()
        result = evaluate(kept)
        trials.append(Trial(kept, result, time.perf_counter() - began))
        progress(f"trial {len(trials)}: {len(kept)} kept -> {result.verdict}")
        return result

    def out_of_budget() -> str:
        if len(trials) >= max_trials:
            return f"{max_trials} trials"
        if time.perf_counter() - start > max_seconds:
            return f"{max_seconds:.0f} s"
        return ""

    default = run(())
    outcome = SearchOutcome(artifact, default, None, None, trials)
    if default.passed:
        outcome.found, outcome.accuracy = (), default
        outcome.seconds = time.perf_counter() - start
        return outcome
    size, best, failing = 1, None, 0
    while best is None and not (stop := out_of_budget()):
        kept = tuple(ranked[:size])
        result = run(kept)
        if result.passed:
            best = (kept, result)
        elif size >= len(ranked):
            stop = f"all {len(ranked)} ranked nodes kept and still outside budget"
            break
        else:
            failing, size = size, min(size * 2, len(ranked))
    if best is None:
        outcome.stopped_early = stop
        outcome.seconds = time.perf_counter() - start
        return outcome
    passing = size
    while passing - failing > 1 and not out_of_budget():  # shortest passing prefix of the ranking
        middle = (passing + failing) // 2
        result = run(tuple(ranked[:middle]))
        if result.passed:
            passing, best = middle, (tuple(ranked[:middle]), result)
        else:
            failing = middle
    kept, result = best
    why = {node: f"rank {ranked.index(node) + 1} in the layer-wise error ranking" for node in kept}
    if len(kept) == 1:
        why[kept[0]] += f"; quantizing it too gives {default.verdict}"
    for node in reversed(kept):  # least harmful first
        if len(kept) == 1 or (stop := out_of_budget()):
            outcome.stopped_early = stop if len(kept) > 1 else ""
            break
        without = tuple(n for n in kept if n != node)
        trial = run(without)
        if trial.passed:
            kept, result = without, trial
            del why[node]
        else:
            why[node] += f"; quantizing it too gives {trial.verdict}"
    outcome.found, outcome.accuracy, outcome.why = kept, result, why
    outcome.seconds = time.perf_counter() - start
    return outcome


def kept_nodes(outcome: SearchOutcome, op_types: dict[str, str]) -> list[KeptNode]:
    return [
        KeptNode(node=n, op_type=op_types.get(n, ""), why=outcome.why.get(n, "")) for n in outcome.found or ()
    ]


def eval_feeds(inputs: dict[str, np.ndarray], batch_size: int, rows: int) -> list[dict[str, np.ndarray]]:
    """The first `rows` eval rows as feeds of `batch_size` (what the layer-wise comparison runs)."""
    return list(row_batches(inputs, batch_size, rows))
