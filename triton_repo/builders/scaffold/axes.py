"""The dynamic dims of a graph's inputs grouped into axes: one batch axis when every input's first dim is
dynamic, height and width of image inputs, the sequence of token inputs, one axis per dim_param; and the
names the spec gives them."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from triton_repo.builders.scaffold.onnx_io import DeclaredTensor, GraphIO

Place = tuple[str, int]  # (input name, dim index)

FLOATS = ("float16", "float32", "float64", "bfloat16")
INTS = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
CHANNELS = (1, 3, 4)
# What a place is, most specific first: a group with places of several kinds takes the first.
KINDS = ("batch", "size", "height", "width", "sequence", "other")
# dim_params exporters invent (tf2onnx unk__N, Paddle2ONNX, torch.export s0, shape inference's
# Add_output_0_dim_1): they name nothing, so an axis is named after its tensor instead.
MEANINGLESS = re.compile(
    r"(?i)^(unk__\d+|.*dynamicdimension.*|s\d+|.*dim_?\d+|.*dynamic_axes_\d+|[?]|-1|\d+)$"
)


@dataclass
class Group:
    """Dynamic input dims that are one axis: always the same size in a request."""

    gid: int
    places: list[Place]
    kind: str  # one of KINDS
    dim_param: str | None
    why: str

    @property
    def inputs(self) -> list[str]:
        return list(dict.fromkeys(name for name, _ in self.places))

    @property
    def family(self) -> str:
        """Which candidate sizes it is probed at: batch, spatial, sequence or other."""
        return "spatial" if self.kind in ("size", "height", "width") else self.kind


@dataclass
class AxisPlan:
    groups: dict[int, Group]  # in order of first appearance
    batched: bool
    unbatched_reason: str
    layouts: dict[str, str]  # image inputs: NCHW or NHWC
    notes: list[str] = field(default_factory=list)

    def group_of(self, place: Place) -> Group | None:
        return next((g for g in self.groups.values() if place in g.places), None)

    def merge(self, keep: int, other: int, reason: str) -> None:
        """`other`'s dims join `keep`'s axis (a run shows they must agree)."""
        kept, gone = self.groups[keep], self.groups.pop(other)
        kept.places += gone.places
        kept.kind = _combined_kind(kept.kind, gone.kind)
        kept.why = f"{kept.why}; {reason}"

    def demote_batch(self, reason: str) -> None:
        """The first dims are dynamic but not a batch Triton could split: an axis like any other."""
        self.batched, self.unbatched_reason = False, reason
        for group in self.groups.values():
            if group.kind == "batch":
                group.kind = "other"


def plan_axes(graph: GraphIO) -> AxisPlan:
    """Group the inputs' dynamic dims into axes, and decide whether the first dim is a batch."""
    shaped = [t for t in graph.inputs if t.dims]
    layouts = {t.name: layout for t in graph.inputs if (layout := image_layout(t))}
    batched, reason = _batch_decision(shaped)
    groups: dict[int, Group] = {}
    if batched:
        params = sorted({str(t.dims[0]) for t in shaped if t.dims[0] is not None})
        named = f" (named {', '.join(repr(p) for p in params)} in the file)" if params else ""
        why = f"dim 0 of every input ({', '.join(t.name for t in shaped)}) is dynamic{named}"
        groups[0] = Group(0, [(t.name, 0) for t in shaped], "batch", params[0] if params else None, why)
    for tensor in shaped:
        for index, dim in enumerate(tensor.dims):
            if isinstance(dim, int) or (batched and index == 0):
                continue
            kind = _place_kind(tensor, index, layouts.get(tensor.name))
            same = next(
                (g for g in groups.values() if dim is not None and g.dim_param == dim and g.kind != "batch"),
                None,
            )
            if same is not None:
                same.places.append((tensor.name, index))
                same.kind = _combined_kind(same.kind, kind)
                same.why = f"dim_param {dim!r} of {', '.join(same.inputs)}"
                continue
            gid = max(groups, default=-1) + 1
            groups[gid] = Group(gid, [(tensor.name, index)], kind, dim, _why(tensor, index, kind, dim))
    return AxisPlan(groups, batched, reason, layouts)


def image_layout(tensor: DeclaredTensor) -> str | None:
    """NCHW or NHWC for a rank-4 float (or uint8) input whose channel dim, first or last, is 1, 3 or 4."""
    if tensor.rank != 4 or tensor.dtype not in (*FLOATS, "uint8"):
        return None
    if tensor.dims[1] in CHANNELS:
        return "NCHW"
    if tensor.dims[3] in CHANNELS:
        return "NHWC"
    return None


def _batch_decision(shaped: list[DeclaredTensor]) -> tuple[bool, str]:
    if not shaped:
        return False, "no input has dims: nothing to batch"
    firsts = [t.dims[0] for t in shaped]
    if all(not isinstance(d, int) for d in firsts):
        return True, ""
    shown = ", ".join(f"{t.name} {dims_text(t.dims)}" for t in shaped)
    if all(isinstance(d, int) for d in firsts) and len(set(firsts)) == 1:
        size = firsts[0]
        if size == 1:
            return False, f"the file fixes the first dim of every input at 1 ({shown}): no batch axis"
        return False, f"the file fixes the first dim of every input at {size} ({shown}): a fixed batch"
    return False, f"the inputs' first dims are not all dynamic ({shown}): no batch axis"


def _place_kind(tensor: DeclaredTensor, index: int, layout: str | None) -> str:
    spatial = {"NCHW": {2: "height", 3: "width"}, "NHWC": {1: "height", 2: "width"}}
    if layout and index in spatial[layout]:
        return spatial[layout][index]
    if tensor.rank == 2 and index == 1 and tensor.dtype in INTS:
        return "sequence"
    return "other"


def _combined_kind(first: str, second: str) -> str:
    if {first, second} == {"height", "width"}:
        return "size"
    return min(first, second, key=KINDS.index)


def _why(tensor: DeclaredTensor, index: int, kind: str, dim_param: str | None) -> str:
    named = f"dim_param {dim_param!r}" if dim_param else "unnamed"
    if kind in ("height", "width"):
        return f"dim {index} of {tensor.name}, an {image_layout(tensor)} image ({named})"
    if kind == "sequence":
        return f"dim 1 of {tensor.name}, a rank-2 {tensor.dtype} input ({named})"
    return f"dim {index} of {tensor.name} ({named})"


def sanitized(text: str) -> str:
    """An axis name from any text: lower case letters, digits and '_', starting with a letter."""
    name = re.sub(r"_+", "_", re.sub(r"[^a-z0-9_]", "_", text.lower())).strip("_")
    return name if re.match(r"[a-z]", name) else f"t_{name}" if name else "axis"


FORMULA = re.compile(r"[()+*/%<> ]")  # an exporter's symbolic shape: floor(height/2 - 1/2)...


def meaningful(dim_param: str | None) -> bool:
    return (
        bool(dim_param)
        and not MEANINGLESS.match(dim_param)
        and not FORMULA.search(dim_param)
        and len(dim_param) <= 32
    )


def axis_names(plan: AxisPlan) -> dict[int, str]:
    """Each group's axis name, unique: batch, height/width (size when one axis is both), sequence, a
    meaningful dim_param, else <input>_dim<i>; a second claimant is prefixed with its input."""
    names: dict[int, str] = {}
    taken: set[str] = set()
    for group in plan.groups.values():
        tensor, index = group.places[0]
        if group.kind in ("batch", "size", "height", "width", "sequence"):
            wanted = group.kind
        elif meaningful(group.dim_param) and sanitized(group.dim_param) != "batch":
            wanted = sanitized(group.dim_param)
        else:
            wanted = f"{sanitized(tensor)}_dim{index}"
        names[group.gid] = unique(wanted, taken, prefix=sanitized(tensor))
    return names


def unique(wanted: str, taken: set[str], prefix: str) -> str:
    """`wanted`, or `<prefix>_<wanted>`, or that with a number: the first not yet taken (then taken)."""
    for name in (wanted, f"{prefix}_{wanted}", *(f"{prefix}_{wanted}_{n}" for n in range(2, 100))):
        if name not in taken:
            taken.add(name)
            return name
    raise AssertionError("no free axis name")


def dims_text(dims) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"
