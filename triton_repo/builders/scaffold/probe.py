"""Probe an ONNX model by running it: its inputs and outputs with the spec's dims, its axes with the sizes
it accepts (min/opt/max all run together), every run, and each decision as a one-line note. `inspect`
prints the record; `init` writes it as model.yaml."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from pathlib import Path

from triton_repo.builders.scaffold.axes import AxisPlan, axis_names, plan_axes, sanitized, unique
from triton_repo.builders.scaffold.child import ChildRunner, Shapes
from triton_repo.builders.scaffold.extremes import Extremes, run_extremes
from triton_repo.builders.scaffold.feeds import Feed, choose_feed
from triton_repo.builders.scaffold.onnx_io import GraphIO, read_graph
from triton_repo.builders.scaffold.outputs import Free, OutputShape, declared_note, output_shapes
from triton_repo.builders.scaffold.record import ModelProbe, ProbedAxis, ProbedTensor, ValueStats
from triton_repo.builders.scaffold.search import Prober, UnitRange
from triton_repo.core.errors import TritonRepoError

FEEDABLE = ("float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "bool", "string")


def probe_onnx(path: Path, seconds: float = 60, examples: dict[str, int] | None = None) -> ModelProbe:
    """Read the file's inputs and outputs, run it in a child process (ONNX Runtime, CPU, one thread) at
    candidate sizes for about `seconds` at most, and record what it accepts and returns. `examples`:
    dim_param -> a size the source ran it at, tried first and preferred as opt."""
    graph = read_graph(Path(path))
    if examples:
        graph = dataclasses.replace(graph, examples=dict(examples))
    return probe_graph(graph, seconds)


def probe_model(target: Path, seconds: float = 60) -> ModelProbe:
    """probe_onnx on an ONNX file, or on the source.onnx of a model folder (or its model.yaml)."""
    target = Path(target)
    if (target.is_dir() and (target / "model.yaml").is_file()) or target.name == "model.yaml":
        from triton_repo.builders.model_files import checked_source_onnx
        from triton_repo.core.spec import load_spec

        loaded = load_spec(target)
        if loaded.spec.source.onnx is None:
            raise TritonRepoError(
                f"{loaded.path}: source is a PyTorch factory ({loaded.spec.source.factory}); the probe runs "
                "ONNX files: pass the exported .onnx, or a model folder whose source is onnx"
            )
        return probe_onnx(checked_source_onnx(loaded), seconds)
    return probe_onnx(target, seconds)


def probe_graph(
    graph: GraphIO, seconds: float = 60, before_run: Callable[[Shapes], None] | None = None
) -> ModelProbe:
    """probe_onnx on a graph already read; `before_run` is a test's hook run in the child before each run."""
    for tensor in graph.inputs:
        if tensor.dims is None or tensor.dtype not in FEEDABLE:
            what = "declares no shape" if tensor.dims is None else f"is {tensor.dtype}"
            raise TritonRepoError(f"{graph.path}: input '{tensor.name}' {what}: the probe cannot feed it")
    plan = plan_axes(graph)
    feeds = [choose_feed(t, plan.layouts.get(t.name), graph.vocab.get(t.name)) for t in graph.inputs]
    runner = ChildRunner(graph.path, feeds, threads=1, before_run=before_run)
    prober = Prober(graph, plan, runner, seconds)
    extremes = None
    try:
        runner.start(timeout=max(seconds, 30.0))
        if prober.find_base() is not None:
            prober.probe_axes()
            extremes = run_extremes(prober)
    finally:
        runner.close()
    return _assemble(graph, plan, feeds, prober, extremes, seconds)


def probe_as_dict(probe: ModelProbe) -> dict:
    """The record as plain JSON values (`inspect --json`)."""
    data = dataclasses.asdict(probe)
    data["source"] = str(probe.source)
    for tensor in data["outputs"]:
        stats = tensor["stats"] or {}
        for key, value in stats.items():  # NaN and infinity are not JSON
            if isinstance(value, float) and not math.isfinite(value):
                stats[key] = str(value)
    return data


def _assemble(
    graph: GraphIO,
    plan: AxisPlan,
    feeds: list[Feed],
    prober: Prober,
    extremes: Extremes | None,
    seconds: float,
) -> ModelProbe:
    notes: list[str] = []
    shapes = output_shapes(plan, graph.outputs, prober.trials, extremes, _in_range(prober, extremes))
    if plan.batched:
        _check_batch(plan, shapes)
    names = axis_names(plan)
    taken = set(names.values())
    free_names = {
        (free.output, free.index): unique(free.wanted, taken, prefix=sanitized(free.output))
        for shape in shapes.values()
        for free in shape.dims
        if isinstance(free, Free)
    }

    def spec_dim(dim) -> int | str:
        if isinstance(dim, Free):
            return free_names[(dim.output, dim.index)]
        return names[dim[1]] if isinstance(dim, tuple) else dim

    inputs = tuple(
        ProbedTensor(
            t.name,
            t.dtype,
            t.dims,
            tuple(
                spec_dim(("axis", g.gid)) if (g := plan.group_of((t.name, i))) else d
                for i, d in enumerate(t.dims)
            ),
            feed.description,
            value=feed.value if feed.fill in ("value", "tokens") else None,
            fill=feed.fill,
        )
        for t, feed in zip(graph.inputs, feeds, strict=True)
    )
    opt_stats = extremes.trials["opt"].stats if extremes and extremes.trials["opt"].ok else None
    outputs = _output_tensors(graph, shapes, spec_dim, names, opt_stats or {})
    notes += [f"{t.name}: {t.note}" for t in outputs if t.note]
    axes = _input_axes(plan, names, prober, extremes)
    for shape in shapes.values():
        for free in (d for d in shape.dims if isinstance(d, Free)):
            name = free_names[(free.output, free.index)]
            why = _free_why(free, names, extremes)
            axes[name] = ProbedAxis(name, *free.sizes, why=why, output_only=True)
            notes.append(f"{name}: an output-only axis, {why}")
    preamble = _plan_notes(plan, names, feeds) + prober.notes + _range_notes(plan, names, prober, seconds)
    preamble += list(extremes.notes) if extremes else []
    elapsed = time.monotonic() - prober.started
    refused = sum(1 for t in prober.trials if not t.ok)
    runs = f"{len(prober.trials)} run{'s' if len(prober.trials) != 1 else ''}"
    summary = f"{runs} ({refused} failed) in {elapsed:.1f} s; time budget {seconds:g} s"
    if extremes is None:
        first = next((t.run.error for t in prober.trials), "no run")
        preamble.insert(0, f"the model did not run at any size tried ({first}); ranges are not known")
    return ModelProbe(
        source=graph.path,
        inputs=inputs,
        outputs=outputs,
        axes=axes,
        batched=plan.batched,
        unbatched_reason=plan.unbatched_reason,
        runs=tuple(t.run for t in prober.trials),
        notes=tuple([*preamble, *notes, summary]),
    )


def _output_tensors(
    graph: GraphIO,
    shapes: dict[str, OutputShape],
    spec_dim: Callable,
    names: dict[int, str],
    stats: dict[str, ValueStats | None],
) -> tuple[ProbedTensor, ...]:
    """Each output with the spec's dims, what the file declares where it disagrees, and its values."""
    outputs = []
    for tensor in graph.outputs:
        shape = shapes[tensor.name]
        dims = tuple(spec_dim(d) for d in shape.dims)
        note = declared_note(tensor, dims) if shape.ranks else "no run returned it: the file's declared dims"
        note = "; ".join(n for n in (note, *_outside_text(shape, names)) if n)
        if len(shape.ranks) > 1:
            note = (f"{note}; " if note else "") + f"runs returned ranks {list(shape.ranks)}"
        outputs.append(
            ProbedTensor(tensor.name, tensor.dtype, tensor.dims, dims, note, stats.get(tensor.name))
        )
    return tuple(outputs)


def _outside_text(shape: OutputShape, names: dict[int, str]) -> list[str]:
    """'dim 2 equals height at every size tried in range, not at 31 (32), 33 (36)', per dim."""
    lines = []
    for index in dict.fromkeys(i for i, *_ in shape.outside):
        found = [(g, size, got) for i, g, size, got in shape.outside if i == index]
        sizes = ", ".join(f"{size} ({got})" for _, size, got in found)
        lines.append(f"dim {index} equals {names[found[0][0]]} at every size tried in range, not at {sizes}")
    return lines


def _in_range(prober: Prober, extremes: Extremes | None) -> dict[int, set[int]]:
    """The sizes of each axis a spec would allow that a run used (not the odd sizes tried to find a
    multiple-of constraint, nor sizes past a refusal)."""
    found: dict[int, set[int]] = {}
    for gid, unit in prober.units.items():
        found[gid] = {*unit.usable, prober.base.get(gid, unit.low)}
        if extremes is not None:
            found[gid] |= {extremes.sizes[label][gid] for label in ("min", "opt", "max")}
    return found


def _check_batch(plan: AxisPlan, shapes: dict[str, OutputShape]) -> None:
    """The first dim is a batch only when every output has it first, as Triton splits outputs by it."""
    batch = next(g.gid for g in plan.groups.values() if g.kind == "batch")
    for name, shape in shapes.items():
        if shape.ranks and (not shape.dims or shape.dims[0] != ("axis", batch)):
            first = "is a scalar" if not shape.dims else "does not have the inputs' first dim first"
            plan.demote_batch(
                f"output '{name}' {first}, so the inputs' first dim is no batch Triton could split"
            )
            return


def _input_axes(
    plan: AxisPlan, names: dict[int, str], prober: Prober, extremes: Extremes | None
) -> dict[str, ProbedAxis]:
    axes = {}
    for group in sorted(plan.groups.values(), key=lambda g: g.kind != "batch"):
        unit = prober.units.get(group.gid)
        if extremes is not None and group.gid in extremes.sizes["opt"]:
            low, opt, high = (extremes.sizes[label][group.gid] for label in ("min", "opt", "max"))
        else:
            low = opt = high = prober.base.get(group.gid) or 1
        step = unit.multiple_of if unit else 1
        axes[names[group.gid]] = ProbedAxis(names[group.gid], low, opt, high, group.why, multiple_of=step)
    return axes


def _free_why(free: Free, names: dict[int, str], extremes: Extremes | None) -> str:
    followed = [names[g] for g in free.follows if g in names]
    where = f"{free.output} dim {free.index}"
    if not followed or extremes is None:
        return f"{where}, changes between runs ({free.sizes[0]}..{free.sizes[2]})"

    def at(label: str) -> str:
        sizes = [extremes.sizes[label][g] for g in free.follows if g in names]
        if set(followed) == {"height", "width"}:
            return "x".join(map(str, sizes))
        return ", ".join(f"{n} {s}" for n, s in zip(followed, sizes, strict=True))

    low, _, high = free.sizes
    return f"{where}, follows {', '.join(followed)}: {low} at {at('min')}, {high} at {at('max')}"


def _plan_notes(plan: AxisPlan, names: dict[int, str], feeds: list[Feed]) -> list[str]:
    notes = [] if plan.batched else [f"no batch axis (max_batch_size 0): {plan.unbatched_reason}"]
    notes += [f"{feed.name}: {feed.description}" for feed in feeds]
    notes += [f"{names[g.gid]}: {g.why}" for g in plan.groups.values()]
    return notes


def _range_notes(plan: AxisPlan, names: dict[int, str], prober: Prober, seconds: float) -> list[str]:
    notes = []
    for unit in {id(u): u for u in prober.units.values()}.values():
        label = ", ".join(names[g] for g in unit.gids if g in names)
        ran = ", ".join(map(str, sorted(unit.accepted)))
        refused = f"; refused {', '.join(map(str, sorted(unit.refused)))}" if unit.refused else ""
        notes.append(f"{label}: ran at {ran}{refused}")
        if unit.multiple_of > 1 and unit.evidence:
            size, reason = unit.evidence
            notes.append(f"{label}: multiples of {unit.multiple_of} ({size} was refused: {reason})")
        opt, high = _opt_reason(unit, prober), _max_reason(unit)
        notes.append(f"{label}: min {unit.low}, opt {unit.opt}{opt}, max {unit.high}{high}")
        if unit.skipped:
            skipped = ", ".join(map(str, unit.skipped))
            notes.append(f"{label}: {skipped} not tried within the {seconds:g} s time budget")
    return notes


def _opt_reason(unit: UnitRange, prober: Prober) -> str:
    if unit.family == "spatial" and unit.opt == prober.graph.example_size:
        return " (the file's example size)"
    if unit.family != "batch" and unit.opt == prober.hint(unit.gids[0]):
        return " (the size the source ran it at)"
    typical = {"spatial": (224, "the usual image size"), "sequence": (128, "a typical sequence length")}
    size, reason = typical.get(unit.family, (None, ""))
    return f" ({reason})" if unit.opt == size else ""


def _max_reason(unit: UnitRange) -> str:
    refused = sorted(r for r in unit.refused if r > unit.high and r % unit.multiple_of == 0)
    if refused:
        return f" ({refused[0]} was refused)"
    if unit.skipped:
        return " (the largest that fit the time budget)"
    return " (the largest size tried)"
