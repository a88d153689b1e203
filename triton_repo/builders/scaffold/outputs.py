"""Each output dim, from the shapes the runs returned: a size when it never changed, an input axis when it
equalled that axis in every run, else an output-only axis (a detector's anchors) that follows the inputs."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from triton_repo.builders.scaffold.axes import AxisPlan, dims_text, meaningful, sanitized
from triton_repo.builders.scaffold.extremes import Extremes
from triton_repo.builders.scaffold.onnx_io import DeclaredTensor
from triton_repo.builders.scaffold.search import Trial


@dataclass(frozen=True)
class Free:
    """An output-only dim: its sizes in the min, opt and max runs, and the input axes it changes with."""

    output: str
    index: int
    wanted: str  # the name it asks for: a dim_param, 'anchors', or <output>_dim<i>
    sizes: tuple[int, int, int]
    follows: tuple[int, ...]  # gids


Dim = int | tuple[str, int] | Free  # a size, ("axis", gid), or an output-only dim


@dataclass(frozen=True)
class OutputShape:
    dims: tuple[Dim, ...]
    ranks: tuple[int, ...]  # every rank the runs returned (more than one: a note)
    # (dim, gid, size, returned): a dim that is an axis at the sizes in range, but not at `size` (31 -> 32)
    outside: tuple[tuple[int, int, int, int], ...] = ()


def output_shapes(
    plan: AxisPlan,
    outputs: tuple[DeclaredTensor, ...],
    trials: list[Trial],
    extremes: Extremes | None,
    in_range: dict[int, set[int]],
) -> dict[str, OutputShape]:
    """Each output's dims, read from the runs whose axes were at sizes the spec allows (`in_range`, per
    gid: a spatial axis probed at 31 to find a multiple-of constraint may return 32 there)."""
    ran = [t for t in trials if t.ok]
    found = {}
    for tensor in outputs:
        shapes = [t.run.outputs[tensor.name] for t in ran if tensor.name in t.run.outputs]
        if not shapes:
            found[tensor.name] = OutputShape(_declared_only(plan, tensor), ())
            continue
        opt = extremes.trials["opt"] if extremes else None
        rank = (
            len(opt.run.outputs[tensor.name])
            if opt and opt.ok
            else Counter(map(len, shapes)).most_common(1)[0][0]
        )
        same_rank = [
            t for t in ran if len(t.run.outputs.get(tensor.name, ())) == rank and tensor.name in t.run.outputs
        ]
        inside = [t for t in same_rank if _in_range(plan, t, in_range)] or same_rank
        dims, outside = [], []
        for index in range(rank):
            dim = _dim(plan, tensor, index, inside, extremes)
            dims.append(dim)
            if isinstance(dim, tuple):
                outside += _outside(plan, tensor.name, index, dim[1], same_rank)
        found[tensor.name] = OutputShape(tuple(dims), tuple(sorted(set(map(len, shapes)))), tuple(outside))
    return found


def _in_range(plan: AxisPlan, trial: Trial, in_range: dict[int, set[int]]) -> bool:
    for group in plan.groups.values():
        size = axis_size(trial, group.places)
        if size is None or (group.gid in in_range and size not in in_range[group.gid]):
            return False
    return True


def _outside(
    plan: AxisPlan, name: str, index: int, gid: int, trials: list[Trial]
) -> list[tuple[int, int, int, int]]:
    """The runs (outside the range) where this dim did not equal its axis: (dim, gid, size, returned)."""
    places = plan.groups[gid].places
    found = {}
    for trial in trials:
        size = axis_size(trial, places)
        if size is not None and trial.run.outputs[name][index] != size:
            found.setdefault(size, (index, gid, size, trial.run.outputs[name][index]))
    return [found[size] for size in sorted(found)[:3]]


def _dim(plan: AxisPlan, tensor: DeclaredTensor, index: int, trials: list[Trial], extremes) -> Dim:
    values = [t.run.outputs[tensor.name][index] for t in trials]
    declared = tensor.dims[index] if tensor.dims is not None and len(tensor.dims) > index else None
    if len(set(values)) == 1:
        return _unvaried(plan, index, values[0], declared, trials) or values[0]
    matches = []
    for group in plan.groups.values():
        pairs = [(axis_size(t, group.places), v) for t, v in zip(trials, values, strict=True)]
        pairs = [(a, v) for a, v in pairs if a is not None]
        if len({v for _, v in pairs}) > 1 and all(a == v for a, v in pairs):
            matches.append(group)
    if matches:
        matches.sort(
            key=lambda g: (
                declared is None or g.dim_param != declared,
                not (g.kind == "batch" and index == 0),
            )
        )
        return ("axis", matches[0].gid)
    free = Free(
        tensor.name,
        index,
        _wanted(tensor, index, trials),
        _sizes(tensor.name, index, trials, extremes),
        _follows(plan, tensor.name, index, trials),
    )
    return free


def _unvaried(
    plan: AxisPlan, index: int, value: int, declared, trials: list[Trial]
) -> tuple[str, int] | None:
    """A constant dim that is an axis the runs never varied (the time budget allowed one size): the
    batch as the first dim, or an axis whose dim_param the file gives this dim."""
    for group in plan.groups.values():
        sizes = {axis_size(t, group.places) for t in trials} - {None}
        named = declared is not None and declared == group.dim_param
        if sizes == {value} and (named or (group.kind == "batch" and index == 0)):
            return ("axis", group.gid)
    return None


def axis_size(trial: Trial, places) -> int | None:
    """An axis's size in a run, when all its dims had that size (runs made before a merge may not)."""
    sizes = {trial.sizes.get(p) for p in places}
    return sizes.pop() if len(sizes) == 1 else None


def _sizes(name: str, index: int, trials: list[Trial], extremes: Extremes | None) -> tuple[int, int, int]:
    values = [t.run.outputs[name][index] for t in trials]
    chosen = []
    for label in ("min", "opt", "max"):
        trial = extremes.trials.get(label) if extremes else None
        shape = trial.run.outputs.get(name) if trial is not None and trial.ok else None
        chosen.append(shape[index] if shape is not None and len(shape) > index else None)
    if None in chosen:
        chosen = [min(values), sorted(values)[len(values) // 2], max(values)]
    low, opt, high = sorted(chosen)
    return (low, opt, high)


def _follows(plan: AxisPlan, name: str, index: int, trials: list[Trial]) -> tuple[int, ...]:
    """The axes whose change changed this dim: those moved (from the first run) in the runs that changed
    it while moving the fewest axes (height and width move together)."""
    base = trials[0]
    moved_sets = []
    for trial in trials[1:]:
        if trial.run.outputs[name][index] == base.run.outputs[name][index]:
            continue
        moved = [
            g.gid
            for g in plan.groups.values()
            if axis_size(trial, g.places) is not None
            and axis_size(trial, g.places) != axis_size(base, g.places)
        ]
        moved_sets.append(moved)
    if not moved_sets:
        return ()
    fewest = min(len(m) for m in moved_sets)
    return tuple(g for g in plan.groups if any(g in m for m in moved_sets if len(m) == fewest))


def _wanted(tensor: DeclaredTensor, index: int, trials: list[Trial]) -> str:
    """A dim_param the file gives it; 'anchors' in a detection head [batch, 4 + classes, N] (or [batch, N,
    4 + classes]); 'steps' in [batch, N, classes] with more classes than a detector has; else
    <output>_dim<i>."""
    declared = tensor.dims
    shape = trials[0].run.outputs[tensor.name]
    named = declared[index] if declared is not None and len(declared) == len(shape) else None
    if isinstance(named, str) and meaningful(named):
        return sanitized(named)
    if len(shape) == 3 and index in (1, 2):
        other = 3 - index
        fixed = len({t.run.outputs[tensor.name][other] for t in trials}) == 1
        if fixed and 5 <= shape[other] <= 600:  # 4 box coordinates (+ objectness) + classes
            return "anchors"
        if fixed and index == 1:  # [batch, steps, classes]: a recogniser's time steps
            return "steps"
    return f"{sanitized(tensor.name)}_dim{index}"


def _declared_only(plan: AxisPlan, tensor: DeclaredTensor) -> tuple[Dim, ...]:
    """No run returned this output: its dims as the file declares them (dim_params of inputs as axes)."""
    dims: list[Dim] = []
    for index, dim in enumerate(tensor.dims or ()):
        group = next((g for g in plan.groups.values() if dim is not None and g.dim_param == dim), None)
        if isinstance(dim, int):
            dims.append(dim)
        elif group is not None:
            dims.append(("axis", group.gid))
        else:
            dims.append(Free(tensor.name, index, f"{sanitized(tensor.name)}_dim{index}", (1, 1, 1), ()))
    return tuple(dims)


def declared_note(declared: DeclaredTensor, spec_dims: tuple[int | str, ...]) -> str:
    """Where the file's declared shape disagrees with what the runs returned (rank, or a fixed size)."""
    dims = declared.dims
    if dims is None:
        return ""
    differs = len(dims) != len(spec_dims) or any(
        isinstance(d, int) and d != s for d, s in zip(dims, spec_dims, strict=True)
    )
    if not differs:
        return ""
    return f"the file declares {dims_text(dims)}; it returns {dims_text(spec_dims)}"
