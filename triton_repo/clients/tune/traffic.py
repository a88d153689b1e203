"""What tune sends each candidate when given a traffic sample (`tune --traffic FILE`): the user's own
inputs, cut into requests as `bench --traffic` cuts them, so the instances, batcher and variant are chosen
for the traffic the model really gets. Tensor rows go to the variant candidates; raw data (texts, images)
goes to the model clients call: a fused-model candidate, or a candidate ensemble of the published
pre-processing step and the candidate variant."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from triton_repo.clients.bench.load import Request
from triton_repo.clients.bench.traffic import TrafficPlan, load_traffic, plan_traffic, traffic_targets
from triton_repo.clients.bench.workload import Variant, load_variant_spec
from triton_repo.clients.tune.candidate import Form

ENSEMBLE = ""  # the key of the one plan every candidate shares when the traffic goes to the ensemble


@dataclass(frozen=True)
class TuneTraffic:
    """A traffic sample as tune sends it: how candidates are called, the requests (per variant for tensor
    rows, one set for the ensemble's raw data), and what the report calls it."""

    path: Path
    form: Form
    plans: dict[str, TrafficPlan]
    rows: int
    batch: int

    def plan_for(self, variant: str) -> TrafficPlan:
        return self.plans.get(variant) or self.plans[ENSEMBLE]

    @property
    def label(self) -> str:
        """`traffic=<file> (N rows; ...)`, as bench prints it."""
        return next(iter(self.plans.values())).label

    def describe(self) -> dict:
        """What results.json and the report say about the traffic."""
        return {
            "file": str(self.path),
            "rows": self.rows,
            "label": self.label,
            "batch": self.batch,
            "sent_to": {"variant": "variants", "fused": "fused model", "steps": "ensemble"}[self.form.kind],
            "note": next(iter(self.plans.values())).note,
        }

    def request(self, protocol: str, url: str, model: str, variant: str) -> Request:
        """Every request of the sample to `model` (the candidate, or what calls it), cycled through."""
        plan = self.plan_for(variant)
        return Request(protocol, url, model, plan.requests[0], plan.outputs, traffic=plan.requests)


def tune_traffic(
    manifest: dict, repository: Path, model: str, path: Path, batch: int, variants: list[Variant]
) -> TuneTraffic:
    """Check the sample against what `model` takes (as bench does) and decide how candidates are called:
    its ensemble when the rows are raw data it takes, else each of `variants`."""
    traffic = load_traffic(path)
    targets = traffic_targets(manifest, repository, [model], traffic)
    ensemble = next((t for t in targets if t.entry.get("kind") == "ensemble"), None)
    if ensemble is None:
        plans = {v.name: plan_traffic(v, load_variant_spec(v), traffic, batch, repository) for v in variants}
        return TuneTraffic(traffic.path, Form(), plans, traffic.rows, batch)
    plan = plan_traffic(ensemble, load_variant_spec(ensemble), traffic, batch, repository)
    kind = "fused" if ensemble.entry.get("form") == "fused" else "steps"
    form = Form(kind, repository / ensemble.name, ensemble.entry.get("variant", ""))
    return TuneTraffic(traffic.path, form, {ENSEMBLE: plan}, traffic.rows, batch)
