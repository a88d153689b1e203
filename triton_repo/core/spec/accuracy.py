"""How a lower-precision variant is judged against FP32: a metric that decodes the outputs as the model's
task needs (detections, maps, decisions, neighbours, text, classes) and compares FP32's decoding with the
variant's, row by row, and a budget the per-row scores' bound must meet.

The metrics, their settings and their default budgets are declared here; what each computes is in
triton_repo/builders/precision/metrics/ (docs/precision.md, "Choosing the metric").
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from triton_repo.core.spec.base import FunctionRef, TensorName, _Strict

Fraction = Annotated[float, Field(ge=0, le=1)]


class ClassificationSettings(_Strict):
    """top1_agreement, top1_drop, topk_agreement: `k` is topk_agreement's k and the top-k reported beside
    the top-1 metrics."""

    k: Annotated[int, Field(ge=2)] = 5


class DetectionSettings(_Strict):
    """Detections decoded from a raw YOLO-style head (`accuracy.output`) or from separate outputs (`boxes`
    and `scores`, optionally `classes`), matched to FP32's per class at `match_iou`.

    layout: channels_first [batch, 4 (+1) + C, anchors] (Ultralytics v8 and later), anchors_first
    [batch, anchors, 4 (+1) + C] (YOLOv5); auto: the axis of fixed size is the channels. box: cxcywh
    (YOLO), xyxy or xywh, in the input's pixels. objectness: the head has an objectness channel after
    the box (YOLOv5). NMS per class (or across classes) at `nms_iou`; separate outputs are taken as
    already suppressed unless `nms_iou` is set.
    """

    layout: Literal["auto", "channels_first", "anchors_first"] = "auto"
    box: Literal["cxcywh", "xyxy", "xywh"] = "cxcywh"
    objectness: bool = False
    score_threshold: Fraction = 0.25
    nms_iou: Annotated[float, Field(gt=0, le=1)] | None = None  # None: 0.45 for a raw head, none for lists
    match_iou: Annotated[float, Field(gt=0, le=1)] = 0.5
    max_detections: Annotated[int, Field(ge=1)] = 300
    class_agnostic: bool = False  # one NMS across classes
    boxes: TensorName | None = None  # separate outputs instead of a raw head
    scores: TensorName | None = None
    classes: TensorName | None = None

    @model_validator(mode="after")
    def _outputs(self) -> DetectionSettings:
        if (self.boxes is None) != (self.scores is None):
            raise ValueError(
                "detection: give both 'boxes' and 'scores' (separate outputs), or neither (a raw head)"
            )
        if self.classes is not None and self.boxes is None:
            raise ValueError("detection: 'classes' goes with 'boxes' and 'scores'")
        return self

    @property
    def raw_head(self) -> bool:
        return self.boxes is None

    @property
    def effective_nms_iou(self) -> float | None:
        return self.nms_iou if self.nms_iou is not None or not self.raw_head else 0.45


class DenseSettings(_Strict):
    """A map per row (segmentation, text detection): thresholded (`decode: threshold`, a probability or
    logit map) or the best class per pixel (`decode: argmax` over `class_axis`). compare: iou (per row,
    of the thresholded maps or the mean over the classes either map has; two empty maps agree) or regions
    (connected regions of at least `min_area` pixels matched at `match_iou`, F1 as for detections: the
    same text regions, whatever a few stray pixels do)."""

    decode: Literal["threshold", "argmax"] = "threshold"
    threshold: float = 0.5
    class_axis: int = 1
    compare: Literal["iou", "regions"] = "iou"
    min_area: Annotated[int, Field(ge=1)] = 1  # regions smaller than this are dropped before comparing
    match_iou: Annotated[float, Field(gt=0, le=1)] = 0.5


class BinarySettings(_Strict):
    """Decisions: each value of the output above `threshold` (a probability: 0.5; a logit: 0). Agreement
    with FP32's decisions; F1 of the positive class and the largest value error beside it."""

    threshold: float = 0.5


class EmbeddingSettings(_Strict):
    """Retrieval over the eval set: for each row, how many of FP32's `k` nearest neighbours (cosine) the
    variant finds among its own embeddings (recall@k); the rank correlation of all pair similarities and
    the mean and worst cosine beside it."""

    k: Annotated[int, Field(ge=1)] = 10


class CtcSettings(_Strict):
    """Text by greedy CTC decoding of scores [batch, time, classes] (`class_axis`), `blank` the blank
    class. Per row: 1 - edit distance / the longer text, against FP32's text; exact lines beside it.
    `alphabet`: a file in the model folder with the character of every class but the blank, one per
    line in class order, to compare the text with data.eval_labels' strings (character error rate)."""

    blank: Annotated[int, Field(ge=0)] = 0
    class_axis: int = -1
    alphabet: str | None = None


class CustomSettings(_Strict):
    """Your own metric: `function` (module:function in the model folder or importable) is called as
    function(reference, variant, labels) with dicts of output name -> array over the eval rows (labels:
    data.eval_labels or None) and returns one score per row; the value is their mean."""

    function: FunctionRef
    higher_is_better: bool = True


class Drop(_Strict):
    """A budget relative to FP32's own value of the metric (1 for the agreement metrics; its score on
    the labels for yours): `drop` in the metric's units, or `relative_drop` as a fraction of it."""

    drop: Annotated[float, Field(ge=0)] | None = None
    relative_drop: Annotated[float, Field(ge=0, lt=1)] | None = None

    @model_validator(mode="after")
    def _one(self) -> Drop:
        if (self.drop is None) == (self.relative_drop is None):
            raise ValueError("budget: give one of 'drop' or 'relative_drop'")
        return self


METRICS = (
    "top1_drop",
    "top1_agreement",
    "topk_agreement",
    "cosine_min",
    "detection",
    "dense",
    "binary",
    "embedding",
    "ctc",
    "custom",
)
# Each metric's section of settings (None: it has none).
SETTINGS = {
    "top1_drop": "classification",
    "top1_agreement": "classification",
    "topk_agreement": "classification",
    "cosine_min": None,
    "detection": "detection",
    "dense": "dense",
    "binary": "binary",
    "embedding": "embedding",
    "ctc": "ctc",
    "custom": "custom",
}
# What a variant must reach when the spec gives no budget; each is held by its bound, not the point value
# (triton_repo/builders/precision/accuracy.py). The custom metric has none: its units are the user's.
DEFAULT_BUDGETS = {
    "top1_drop": 1.0,
    "top1_agreement": 0.95,
    "topk_agreement": 0.9,
    "cosine_min": 0.99,
    "detection": 0.9,
    "dense": 0.9,
    "binary": 0.95,
    "embedding": 0.9,
    "ctc": 0.95,
}
LOWER_IS_BETTER = {"top1_drop"}


class Accuracy(_Strict):
    """How a lower-precision variant is judged against FP32 on the eval set: `metric`, its settings in the
    section of the same name, and `budget` (a value, or a drop from FP32's own)."""

    metric: Literal[METRICS]
    budget: float | Drop | None = None
    output: TensorName | None = None  # the output the metric reads; default: the first output
    classification: ClassificationSettings | None = None
    detection: DetectionSettings | None = None
    dense: DenseSettings | None = None
    binary: BinarySettings | None = None
    embedding: EmbeddingSettings | None = None
    ctc: CtcSettings | None = None
    custom: CustomSettings | None = None

    @field_validator("budget", mode="before")
    @classmethod
    def _budget(cls, value):
        if isinstance(value, dict):  # a drop: its own errors, not the union's
            return Drop.model_validate(value)
        return value

    @model_validator(mode="after")
    def _settings_of_its_metric(self) -> Accuracy:
        own = SETTINGS[self.metric]
        for section in set(SETTINGS.values()) - {None, own}:
            if getattr(self, section) is not None:
                raise ValueError(
                    f"accuracy.{section} configures another metric; metric {self.metric} reads "
                    + (f"accuracy.{own}" if own else "no settings section")
                )
        if self.metric == "custom" and self.custom is None:
            raise ValueError(
                "metric custom needs accuracy.custom.function (module:function returning per-row scores)"
            )
        if self.metric == "custom" and self.budget is None:
            raise ValueError("metric custom needs a budget (its units are yours): a value, or {drop: ...}")
        if self.metric == "top1_drop" and isinstance(self.budget, Drop):
            raise ValueError("top1_drop's budget is already a drop from FP32 (in points): give a number")
        if isinstance(self.budget, float) and not math.isfinite(self.budget):
            raise ValueError(f"budget {self.budget} must be a finite number")
        if self.detection is not None and not self.detection.raw_head and self.output is not None:
            raise ValueError(
                "accuracy.output names a raw detection head, accuracy.detection.boxes/scores separate "
                "outputs: give one of them"
            )
        return self

    @property
    def settings(self):
        """The metric's settings (its section, or the defaults); None for a metric without settings."""
        section = SETTINGS[self.metric]
        if section is None:
            return None
        given = getattr(self, section)
        if given is not None:
            return given
        return {
            "classification": ClassificationSettings,
            "detection": DetectionSettings,
            "dense": DenseSettings,
            "binary": BinarySettings,
            "embedding": EmbeddingSettings,
            "ctc": CtcSettings,
        }[section]()

    @property
    def higher_is_better(self) -> bool:
        if self.metric == "custom":
            return self.custom.higher_is_better
        return self.metric not in LOWER_IS_BETTER

    def threshold(self, own: float) -> float:
        """The value a variant's bound must reach, given FP32's own value of the metric."""
        budget = self.budget if self.budget is not None else DEFAULT_BUDGETS[self.metric]
        if isinstance(budget, Drop):
            loss = budget.drop if budget.drop is not None else abs(own) * budget.relative_drop
            return own - loss if self.higher_is_better else own + loss
        return float(budget)

    @property
    def effective_budget(self) -> float:
        """The threshold for a metric whose FP32 value is its best (1 for the agreement metrics; a drop
        budget of a custom metric is resolved against FP32's own value when measured)."""
        return self.threshold(1.0 if self.metric != "top1_drop" else 0.0)

    def stricter(self, margin: float) -> Accuracy:
        """The same metric with a budget `margin` harder to meet (search-precision's margin)."""
        budget = self.budget if self.budget is not None else DEFAULT_BUDGETS[self.metric]
        if isinstance(budget, Drop):
            field = "drop" if budget.drop is not None else "relative_drop"
            tighter = max(0.0, getattr(budget, field) - margin)
            return self.model_copy(update={"budget": budget.model_copy(update={field: tighter})})
        shifted = budget + margin if self.higher_is_better else budget - margin
        return self.model_copy(update={"budget": shifted})

    def describe_budget(self) -> str:
        budget = self.budget if self.budget is not None else DEFAULT_BUDGETS[self.metric]
        if isinstance(budget, Drop):
            if budget.drop is not None:
                return f"FP32's own - {budget.drop:g}"
            return f"FP32's own - {100 * budget.relative_drop:g}%"
        return f"{budget:g}"


def check_accuracy(spec) -> None:
    """What the spec alone shows about its gate: the outputs it reads exist and reach clients, and have
    the shape the metric decodes. What only data shows (a metric FP32's damaged outputs pass) is checked
    by the build before any variant is measured (triton_repo/builders/precision/metrics/selfcheck.py)."""
    accuracy = spec.accuracy
    outputs = {o.name: o for o in spec.outputs}
    if accuracy.metric == "top1_drop" and spec.data.eval_labels is None:
        raise ValueError("accuracy.metric top1_drop needs data.eval_labels (the true class per eval row)")
    named = {"accuracy.output": accuracy.output}
    if accuracy.detection is not None:
        named |= {
            f"accuracy.detection.{f}": getattr(accuracy.detection, f) for f in ("boxes", "scores", "classes")
        }
    for field, name in named.items():
        if name is not None and name not in outputs:
            raise ValueError(f"{field} '{name}' is not an output (outputs: {list(outputs)})")
    states = spec.state_tensors
    read = [n for n in named.values() if n is not None] or [spec.outputs[0].name]
    for name in read:
        if name in states:
            served = [o.name for o in spec.served_outputs]
            raise ValueError(
                f"accuracy reads '{name}', the state a stateful model carries to its next step: the server "
                f"keeps it and clients never receive it; gate an output clients receive ({served}) with "
                "accuracy.output"
            )
    settings = accuracy.settings
    gated = outputs[read[0]]
    dims = gated.dims[1:] if spec.batched else gated.dims
    shown = f"output '{gated.name}' {gated.dims}"
    fixed = [d for d in dims if isinstance(d, int)]
    if accuracy.metric == "cosine_min" and len(fixed) == len(dims) and math.prod(fixed) == 1:
        raise ValueError(
            f"cosine_min over {shown} is 1 whatever the value (the cosine of one number is its sign): "
            "use metric: binary for a probability or logit, or a metric of your own (metric: custom)"
        )
    if accuracy.metric in ("top1_drop", "top1_agreement", "topk_agreement"):
        if not dims or (len(fixed) == len(dims) and math.prod(fixed) < 2):
            raise ValueError(f"{accuracy.metric} reads a score per class; {shown} has no class axis")
        if accuracy.metric == "topk_agreement" and len(fixed) == len(dims) and math.prod(fixed) <= settings.k:
            raise ValueError(
                f"topk_agreement with k {settings.k} over {shown}: k must be smaller than the classes "
                "(set accuracy.classification.k)"
            )
    if accuracy.metric == "detection" and settings.raw_head:
        if len(dims) != 2:
            raise ValueError(
                f"detection reads a raw head [batch, 4 (+1) + classes, anchors] or [batch, anchors, ...]; "
                f"{shown} is not of rank 3 (separate outputs: set accuracy.detection.boxes and scores)"
            )
        if settings.layout == "auto" and sum(isinstance(d, int) for d in dims) != 1:
            raise ValueError(
                f"detection: cannot tell the channel axis of {shown}: set accuracy.detection.layout to "
                "channels_first ([batch, 4 + classes, anchors]) or anchors_first ([batch, anchors, 4 + classes])"
            )
        channels = dims[0] if detection_layout(settings, dims) == "channels_first" else dims[1]
        first = 5 if settings.objectness else 4
        if isinstance(channels, int) and channels <= first:
            raise ValueError(
                f"detection: {shown} has {channels} channels, but a box{' and objectness' if settings.objectness else ''} "
                f"take {first}: no class scores left (check accuracy.detection.layout and objectness)"
            )
    if accuracy.metric == "ctc" and len(dims) != 2:
        raise ValueError(f"ctc reads scores [batch, time, classes]; {shown} is not of rank 3")
    if accuracy.metric == "dense":
        if len(dims) < 2:
            raise ValueError(
                f"dense reads a map per row ([batch, (channels,) height, width]); {shown} is not one"
            )
        if settings.decode == "argmax" and not -len(gated.dims) <= settings.class_axis < len(gated.dims):
            raise ValueError(f"accuracy.dense.class_axis {settings.class_axis} is outside {shown}")
    if accuracy.metric == "ctc" and not -len(gated.dims) <= settings.class_axis < len(gated.dims):
        raise ValueError(f"accuracy.ctc.class_axis {settings.class_axis} is outside {shown}")


def detection_layout(settings: DetectionSettings, dims: list) -> str:
    """channels_first or anchors_first: as set, else the non-batch axis of fixed size is the channels."""
    if settings.layout != "auto":
        return settings.layout
    return "channels_first" if isinstance(dims[0], int) else "anchors_first"
