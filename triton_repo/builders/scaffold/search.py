"""Which sizes each axis accepts: a base run with every axis at a cheap size, then each axis (height and
width of an image together) at candidate sizes with the others at the base; a multiple-of constraint
when non-multiples are refused and multiples run; dims that must agree merged into one axis; and a
range (min, opt, max) per axis, within the time budget."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from triton_repo.builders.scaffold.axes import AxisPlan, Place
from triton_repo.builders.scaffold.child import ChildRunner, Shapes
from triton_repo.builders.scaffold.onnx_io import GraphIO
from triton_repo.builders.scaffold.record import ProbeRun, ValueStats

CANDIDATES = {
    "batch": (1, 2, 4, 8, 16),
    "spatial": (31, 32, 33, 48, 64, 96, 128, 224, 256, 320, 640),
    "sequence": (1, 7, 16, 64, 128, 256, 512),
    "other": (1, 2, 7, 16, 64, 128, 256),
}
ODD_PROBES = (31, 33)  # spatial sizes tried to find a multiple-of constraint, never chosen as a min
SEARCH_SHARE = 0.6  # of the time budget, for the candidates; the rest for the min, opt and max runs
MAX_BATCH = 16


@dataclass
class Trial:
    sizes: dict[Place, int]  # the size of every dynamic input dim in this run
    run: ProbeRun
    seconds: float
    stats: dict[str, ValueStats | None] | None = None

    @property
    def ok(self) -> bool:
        return self.run.error is None


@dataclass
class UnitRange:
    """What probing found for groups probed together (height and width of one image, or one axis)."""

    gids: list[int]
    family: str
    accepted: dict[int, float] = field(default_factory=dict)  # size -> seconds
    refused: dict[int, str] = field(default_factory=dict)  # size -> the runtime's reason
    skipped: list[int] = field(default_factory=list)  # not tried: over the time budget
    multiple_of: int = 1
    evidence: tuple[int, str] | None = None  # a refused non-multiple and why
    usable: list[int] = field(default_factory=list)  # accepted, multiples, within low..high
    low: int = 0
    opt: int = 0
    high: int = 0


class Prober:
    def __init__(self, graph: GraphIO, plan: AxisPlan, runner: ChildRunner, seconds: float) -> None:
        self.graph, self.plan, self.runner = graph, plan, runner
        self.started = time.monotonic()
        self.deadline = self.started + seconds
        self.search_deadline = self.started + seconds * SEARCH_SHARE
        self.trials: list[Trial] = []
        self._seen: dict[tuple, Trial] = {}
        self.base: dict[int, int] = {}
        self.per_element = 0.0
        self.units: dict[int, UnitRange] = {}  # gid -> the range of its unit
        self.notes: list[str] = []

    # --- running ---------------------------------------------------------------------------------------

    def shapes(self, sizes: dict[int, int]) -> Shapes:
        shapes = {}
        for tensor in self.graph.inputs:
            dims = []
            for index, dim in enumerate(tensor.dims or ()):
                group = self.plan.group_of((tensor.name, index))
                dims.append(dim if group is None else sizes[group.gid])
            shapes[tensor.name] = tuple(dims)
        return shapes

    def trial(self, sizes: dict[int, int], stats: bool = False, timeout: float | None = None) -> Trial:
        """A run at these axis sizes (each shape run once; again only to add the output statistics)."""
        shapes = self.shapes(sizes)
        key = tuple(sorted(shapes.items()))
        seen = self._seen.get(key)
        if seen is not None and (not stats or seen.stats is not None or not seen.ok):
            return seen
        timeout = timeout or max(5.0, self.deadline - time.monotonic())
        result = self.runner.run(shapes, timeout, stats)
        places = {p: sizes[g.gid] for g in self.plan.groups.values() for p in g.places}
        trial = Trial(places, ProbeRun(shapes, result.outputs, result.error), result.seconds, result.stats)
        if seen is None:
            self.trials.append(trial)
        else:  # the same run, now with statistics: one record per shape
            self.trials[self.trials.index(seen)] = trial
        self._seen[key] = trial
        return trial

    def estimate(self, sizes: dict[int, int]) -> float:
        return self.per_element * sum(math.prod(shape) for shape in self.shapes(sizes).values())

    def affordable(self, sizes: dict[int, int], until: float) -> bool:
        return time.monotonic() + self.estimate(sizes) <= until

    # --- the base run ----------------------------------------------------------------------------------

    def find_base(self) -> Trial | None:
        """Every axis at a cheap size that runs: the point each axis is varied from."""
        choices = {gid: self._bases(gid) for gid in self.plan.groups}
        for attempt in range(4):
            sizes = {gid: sizes[min(attempt, len(sizes) - 1)] for gid, sizes in choices.items()}
            timeout = max(30.0, self.deadline - time.monotonic())
            trial = self.trial(sizes, timeout=timeout)
            if trial.ok:
                self.base = sizes
                elements = sum(math.prod(s) for s in trial.run.inputs.values())
                self.per_element = max(trial.seconds, 1e-4) / max(elements, 1)
                return trial
        return None

    def _bases(self, gid: int) -> list[int]:
        family = self.plan.groups[gid].family
        hint = [self.hint(gid)] if self.hint(gid) and family != "batch" else []
        if family == "spatial":
            return list(dict.fromkeys(s for s in (*hint, 64, self.graph.example_size, 224, 32, 320) if s))
        return list(
            dict.fromkeys(
                [*hint, *{"batch": [1, 2], "sequence": [16, 128, 1], "other": [16, 8, 1, 64]}[family]]
            )
        )

    def hint(self, gid: int) -> int | None:
        """The size the source ran this axis at (init's PyTorch export), if it said."""
        return self.graph.examples.get(self.plan.groups[gid].dim_param or "")

    # --- each axis ---------------------------------------------------------------------------------------

    def probe_axes(self) -> None:
        pending = self._units()
        while pending:
            unit = [g for g in pending.pop(0) if g in self.plan.groups]
            if unit:
                found = self._probe_unit(unit, pending)
                self._settle(found)
                self._check_non_square(found)
                for gid in found.gids:
                    self.units[gid] = found

    def _units(self) -> list[list[int]]:
        """Height and width of each image together, then every other axis, the batch last."""
        units, placed = [], set()
        for name in self.plan.layouts:
            unit = [
                g.gid
                for g in self.plan.groups.values()
                if g.family == "spatial" and name in g.inputs and g.gid not in placed
            ]
            placed |= set(unit)
            units += [unit] if unit else []
        rest = [g for g in self.plan.groups.values() if g.gid not in placed]
        last = [[g.gid] for g in rest if g.kind == "batch"]
        return units + [[g.gid] for g in rest if g.kind != "batch"] + last

    def _probe_unit(self, gids: list[int], pending: list[list[int]]) -> UnitRange:
        family = self.plan.groups[gids[0]].family
        found = UnitRange(gids, family)
        base = self.base[gids[0]]
        found.accepted[base] = 0.0
        partner_tries = 0 if family == "batch" else 2  # refusals that may come from a dim to agree with
        in_a_row = 0
        example = [self.graph.example_size] if family == "spatial" else []
        example += [self.hint(gids[0])] if family != "batch" else []
        candidates = sorted({*CANDIDATES[family], *example} - {None, base})
        for index, size in enumerate(candidates):
            sizes = {**self.base, **{g: size for g in gids}}
            if not self.affordable(sizes, self.search_deadline):
                found.skipped = candidates[index:]
                break
            trial = self.trial(sizes)
            if trial.ok:
                found.accepted[size], in_a_row = trial.seconds, 0
                continue
            found.refused[size], in_a_row = trial.run.error or "", in_a_row + 1
            if partner_tries:
                partner_tries -= 1
                partner = self._partner(gids, size, trial)
                if partner is not None:
                    pending[:] = [[g for g in unit if g != partner] for unit in pending]
                    return self._probe_unit(gids, pending)  # again, as one axis with its partner
            if family == "batch" or (family != "spatial" and in_a_row >= 2 and size > max(found.accepted)):
                break
        return found

    def _partner(self, gids: list[int], size: int, failed: Trial) -> int | None:
        """A dynamic dim of another input that must have the same size: alone at `size` the model fails,
        both at `size` it runs. Merged into the first group of `gids`; its gid, or None."""
        groups = self.plan.groups
        inputs = {name for g in gids for name in groups[g].inputs}
        family = groups[gids[0]].family
        others = [
            g for g in groups.values() if g.gid not in gids and g.kind != "batch" and set(g.inputs) - inputs
        ]
        others.sort(key=lambda g: g.family != family)
        for other in others[:6]:
            trial = self.trial({**self.base, **{g: size for g in gids}, other.gid: size})
            if not trial.ok:
                continue
            mine, theirs = _places_text(groups[gids[0]].places), _places_text(other.places)
            self.notes.append(
                f"{mine} and {theirs} must agree: with the first at {size} and the second at "
                f"{self.base[other.gid]} the model fails ({failed.run.error}); equal, it runs"
            )
            self.plan.merge(gids[0], other.gid, f"must agree with {theirs}")
            self.base.pop(other.gid)
            return other.gid
        return None

    def _settle(self, found: UnitRange) -> None:
        """multiple_of, and low..high: the accepted multiples from the smallest up to the first refusal."""
        found.multiple_of = self._multiple_of(found)
        step = found.multiple_of
        accepted = sorted(s for s in found.accepted if s % step == 0)
        nice = [s for s in accepted if found.family != "spatial" or s not in ODD_PROBES] or accepted
        low = high = nice[0]
        for size in sorted({*found.accepted, *found.refused}):
            if size < low or size % step:
                continue
            if size in found.refused or (found.family == "batch" and size > MAX_BATCH):
                break
            high = size
        found.usable = [s for s in nice if low <= s <= high]
        found.low, found.high = low, high
        found.opt = _preferred_opt(
            found.family, found.usable, self.graph.example_size, self.base[found.gids[0]]
        )
        if found.family != "batch" and self.hint(found.gids[0]) in found.usable:
            found.opt = self.hint(found.gids[0])

    def _multiple_of(self, found: UnitRange) -> int:
        """m > 1 when sizes that are not multiples of m were refused above the smallest that ran, and
        every multiple tried ran; a multiple of m/2 is tried when no refusal tells m from m/2."""
        for _ in range(3):
            accepted = sorted(found.accepted)
            if found.family == "spatial" and len(set(accepted) - set(ODD_PROBES)) > 1:
                # an odd probe may run by chance (a Resize that floors): the others decide the step
                accepted = sorted(set(accepted) - set(ODD_PROBES))
            inside = sorted(r for r in found.refused if r < accepted[-1])
            step = math.gcd(*accepted) if len(accepted) > 1 else 1
            above = [r for r in inside if r > accepted[0]]
            if step == 1 or not above or any(r % step == 0 for r in inside):
                return 1
            found.evidence = (above[0], found.refused[above[0]])
            half = step // 2
            if step % 2 or any(r % half == 0 for r in inside) or 3 * half >= accepted[-1]:
                return step
            sizes = {**self.base, **{g: 3 * half for g in found.gids}}
            if not self.affordable(sizes, self.search_deadline):
                return step
            trial = self.trial(sizes)
            if not trial.ok:
                found.refused[3 * half] = trial.run.error or ""
                return step
            found.accepted[3 * half] = trial.seconds
        return 1

    def _check_non_square(self, found: UnitRange) -> None:
        """Height and width at different sizes; when only equal sizes run, they are one axis (size)."""
        groups = self.plan.groups
        heights = [g for g in found.gids if groups[g].kind == "height"]
        widths = [g for g in found.gids if groups[g].kind == "width"]
        if not heights or not widths or len(found.usable) < 2:
            return
        tall, wide = found.usable[0], found.usable[1]
        trial = self.trial({**self.base, **{g: tall for g in heights}, **{g: wide for g in widths}})
        if trial.ok:
            return
        for height, width in zip(heights, widths, strict=False):
            self.plan.merge(height, width, "width must equal height")
            self.base.pop(width)
            found.gids.remove(width)
        self.notes.append(
            f"height and width are one axis: {tall}x{wide} failed ({trial.run.error}); equal sizes run"
        )


def _preferred_opt(family: str, usable: list[int], example: int | None, base: int) -> int:
    wanted = {"batch": 4, "sequence": 128, "spatial": 224}.get(family, base)
    if family == "spatial" and example in usable:
        return example
    if wanted in usable:
        return wanted
    below = [s for s in usable if s <= wanted]
    return below[-1] if below else usable[0]


def _places_text(places: list[Place]) -> str:
    return " and ".join(f"{name} dim {index}" for name, index in places)
