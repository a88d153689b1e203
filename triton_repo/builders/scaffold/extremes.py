"""The three runs a range rests on: every axis at its opt, at its max, at its min, together. A run that
fails (or would not fit the time budget) moves the axis farthest out one accepted size back, until it
runs: the spec's min/opt/max are sizes the model was seen to run with, all axes at once."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from triton_repo.builders.scaffold.search import Prober, Trial, UnitRange

Sizes = dict[int, int]  # gid -> size


@dataclass(frozen=True)
class Extremes:
    sizes: dict[str, Sizes]  # "min", "opt", "max" -> every group's size in that run
    trials: dict[str, Trial]
    notes: tuple[str, ...] = ()  # sizes lowered for the budget, or moved back because a run failed


def run_extremes(prober: Prober) -> Extremes:
    units = list({id(u): u for u in prober.units.values()}.values())
    notes: list[str] = []
    low = {g: u.low for u in units for g in u.gids}
    opt = {g: u.opt for u in units for g in u.gids}
    high = {g: u.high for u in units for g in u.gids}
    wanted = dict(high)
    reserve = prober.estimate(low) + prober.estimate(opt)
    while prober.estimate(high) > prober.deadline - time.monotonic() - reserve and _step(units, high, opt):
        pass
    if high != wanted:
        notes.append(
            f"max sizes lowered to fit the time budget: {_changes(prober, wanted, high)} "
            f"(a run at the first would take about {prober.estimate(wanted):.0f} s)"
        )
    trials = {}
    opt, trials["opt"] = _run_toward(prober, units, notes, "opt", opt, dict(prober.base))
    high, trials["max"] = _run_toward(
        prober, units, notes, "max", {g: max(high[g], opt[g]) for g in high}, opt
    )
    low, trials["min"] = _run_toward(prober, units, notes, "min", {g: min(low[g], opt[g]) for g in low}, opt)
    return Extremes({"min": low, "opt": opt, "max": high}, trials, tuple(notes))


def _run_toward(
    prober: Prober, units: list[UnitRange], notes: list[str], label: str, sizes: Sizes, toward: Sizes
) -> tuple[Sizes, Trial]:
    """Run at `sizes`; on failure step toward `toward` (which ran) until a run succeeds."""
    sizes = dict(sizes)
    first = dict(sizes)
    for _ in range(6):
        trial = prober.trial(sizes, stats=label == "opt")
        if trial.ok:
            if sizes != first:
                notes.append(
                    f"{label}: all axes at {_text(prober, first)} failed ({_first_error(prober, first)}); "
                    f"{_text(prober, sizes)} runs"
                )
            return sizes, trial
        if not _step(units, sizes, toward):
            break
    trial = prober.trial(toward, stats=label == "opt")
    notes.append(f"{label}: the {label} sizes did not run together; {label} = {_text(prober, toward)}")
    return dict(toward), trial


def _step(units: list[UnitRange], sizes: Sizes, toward: Sizes) -> bool:
    """Move the unit farthest from `toward` one accepted size closer; False when all are there."""
    apart = [u for u in units if sizes[u.gids[0]] != toward[u.gids[0]]]
    if not apart:
        return False
    unit = max(apart, key=lambda u: abs(math.log(sizes[u.gids[0]] / toward[u.gids[0]])))
    now, target = sizes[unit.gids[0]], toward[unit.gids[0]]
    ladder = sorted({*unit.usable, target})
    nearer = max(s for s in ladder if s < now) if now > target else min(s for s in ladder if s > now)
    for gid in unit.gids:
        sizes[gid] = nearer
    return True


def _text(prober: Prober, sizes: Sizes) -> str:
    """'x [4, 3, 224, 224]' for each input: the shapes those sizes give."""
    return ", ".join(f"{name} {list(shape)}" for name, shape in prober.shapes(sizes).items() if shape)


def _changes(prober: Prober, before: Sizes, after: Sizes) -> str:
    return f"{_text(prober, before)} -> {_text(prober, after)}"


def _first_error(prober: Prober, sizes: Sizes) -> str:
    shapes = prober.shapes(sizes)
    found = next((t for t in prober.trials if t.run.inputs == shapes and not t.ok), None)
    return found.run.error if found else "failed"
