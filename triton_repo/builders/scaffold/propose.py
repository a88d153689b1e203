"""How to judge a variant of a probed model: the task metric its outputs look like, and the other readings
when the shapes allow several (written as commented choices, never hidden)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from triton_repo.builders.scaffold.record import ModelProbe, ProbedTensor

DETECTION_NAMES = re.compile(r"box|bbox|det", re.IGNORECASE)
SCORE_NAMES = re.compile(r"score|conf|prob", re.IGNORECASE)
CLASS_NAMES = re.compile(r"class|label", re.IGNORECASE)
EMBEDDING_NAMES = re.compile(r"embed|feature|pool|vector|hidden|encod", re.IGNORECASE)


@dataclass(frozen=True)
class Proposal:
    """The accuracy section init writes: `metric`, its `settings` section, the `output` it reads."""

    metric: str
    output: str
    settings: dict = field(default_factory=dict)
    why: str = ""
    alternatives: tuple[str, ...] = ()  # each a one-line commented choice


def propose_metric(probe: ModelProbe) -> Proposal:
    """The metric for the output that carries the task (the first one, unless separate detection
    outputs are recognised)."""
    separate = _separate_detections(probe.outputs)
    if separate is not None:
        return separate
    output = probe.outputs[0]
    for propose in (_detection_head, _dense_map, _sequence_scores, _vector):
        found = propose(probe, output)
        if found is not None:
            return found
    return Proposal(
        "cosine_min",
        output.name,
        why=f"{output.name} {_shape(output)} matches no task shape init knows: the worst cosine to FP32's",
        alternatives=("metric: custom  # your own score per row: accuracy.custom.function",),
    )


def _shape(tensor: ProbedTensor) -> str:
    return "[" + ", ".join(str(d) for d in tensor.dims) + "]"


def _rest(probe: ModelProbe, tensor: ProbedTensor) -> list[int | str]:
    """The dims after the batch (all of them for an unbatched model)."""
    dims = list(tensor.dims)
    return dims[1:] if probe.batched and dims else dims


def _separate_detections(outputs: tuple[ProbedTensor, ...]) -> Proposal | None:
    boxes = [o for o in outputs if DETECTION_NAMES.search(o.name) and o.dims and o.dims[-1] == 4]
    scores = [o for o in outputs if SCORE_NAMES.search(o.name) and o not in boxes]
    if not boxes or not scores:
        return None
    settings = {"boxes": boxes[0].name, "scores": scores[0].name, "box": "xyxy"}
    classes = [o for o in outputs if CLASS_NAMES.search(o.name) and o not in boxes + scores]
    if classes:
        settings["classes"] = classes[0].name
    return Proposal(
        "detection",
        boxes[0].name,
        settings,
        why=f"separate outputs {boxes[0].name} (4 coordinates per box) and {scores[0].name}: detections "
        "matched to FP32's per class",
        alternatives=("box: xyxy is a guess: set cxcywh or xywh if your boxes are centre or corner+size",),
    )


def _detection_head(probe: ModelProbe, output: ProbedTensor) -> Proposal | None:
    """[batch, 4 + classes, anchors] or [batch, anchors, 4 + classes] with anchors following the image."""
    rest = _rest(probe, output)
    if len(rest) != 2:
        return None
    following = {name for name, axis in probe.axes.items() if axis.output_only}
    channels_first = isinstance(rest[0], int) and 5 <= rest[0] <= 600 and rest[1] in following
    # [batch, steps, classes] of a text recogniser has the same shape: its rows are class probabilities,
    # and its steps follow the width only
    softmax = output.stats is not None and output.stats.rows_sum_to_one
    anchors_first = (
        isinstance(rest[1], int)
        and 5 <= rest[1] <= 600
        and rest[0] in following
        and not softmax
        and _follows_the_image(probe, str(rest[0]))
    )
    if not (channels_first or anchors_first):
        return None
    channels = rest[0] if channels_first else rest[1]
    settings = {"layout": "channels_first" if channels_first else "anchors_first", "box": "cxcywh"}
    alternatives = [
        "objectness: true  # if channel 5 is an objectness score (YOLOv5 heads: 5 + classes channels)",
        "score_threshold: 0.25  # the score a detection needs; set it as your application does",
    ]
    return Proposal(
        "detection",
        output.name,
        settings,
        why=f"{output.name} {_shape(output)}: a raw detection head ({channels} channels = 4 box + "
        f"{channels - 4} class scores, one column per anchor, the anchors following the image size)",
        alternatives=tuple(alternatives),
    )


def _follows_the_image(probe: ModelProbe, axis: str) -> bool:
    """An output axis named for anchors, or found to follow both the height and the width."""
    why = probe.axes[axis].why.lower()
    return axis.startswith("anchor") or ("height" in why and "width" in why)


def _image_axes(probe: ModelProbe) -> set[str]:
    return {name for name in ("height", "width") if name in probe.axes}


def _dense_map(probe: ModelProbe, output: ProbedTensor) -> Proposal | None:
    """A map as large as the image, or a fixed fraction of it: [batch, classes, height, width]."""
    rest = _rest(probe, output)
    spatial = _image_axes(probe) | {n for n, a in probe.axes.items() if a.output_only}
    if len(rest) != 3 or not (isinstance(rest[1], str) and rest[1] in spatial and rest[2] in spatial):
        return None
    classes = rest[0]
    stats = output.stats
    if classes == 1:
        probability = stats is not None and stats.minimum >= 0 and stats.maximum <= 1
        threshold = 0.5 if probability else 0.0
        return Proposal(
            "dense",
            output.name,
            {"decode": "threshold", "threshold": threshold, "compare": "iou"},
            why=f"{output.name} {_shape(output)}: one map per image, "
            + ("values in [0, 1] (probabilities): thresholded at 0.5" if probability else "logits: at 0"),
            alternatives=(
                "compare: regions  # with min_area: the same regions (text lines, objects), not pixels",
            ),
        )
    return Proposal(
        "dense",
        output.name,
        {"decode": "argmax", "class_axis": 1, "compare": "iou"},
        why=f"{output.name} {_shape(output)}: {classes} class maps per image: the best class per pixel, "
        "IoU per class",
    )


def _sequence_scores(probe: ModelProbe, output: ProbedTensor) -> Proposal | None:
    """[batch, time, classes]: CTC text when the time axis follows the input and classes are many."""
    rest = _rest(probe, output)
    if len(rest) != 2 or not isinstance(rest[1], int) or rest[1] < 10 or isinstance(rest[0], int):
        return None
    inputs_are_tokens = all(t.dtype.startswith("int") for t in probe.inputs)
    stats = output.stats
    scores = stats is not None and (stats.rows_sum_to_one or stats.maximum <= 0)  # probabilities, log-probs
    if inputs_are_tokens or not scores:
        return Proposal(
            "cosine_min",
            output.name,
            why=f"{output.name} {_shape(output)}: one vector per step: the worst cosine to FP32's",
            alternatives=(
                "metric: ctc  # if these are CTC class scores per step (text recognition)",
                "metric: custom  # your own score per row (accuracy.custom.function)",
            ),
        )
    return Proposal(
        "ctc",
        output.name,
        {"blank": 0, "class_axis": -1},
        why=f"{output.name} {_shape(output)}: {rest[1]} class scores per step along {rest[0]}: greedy CTC "
        "text, compared character by character",
        alternatives=(
            "blank: 0 is a guess: Paddle OCR puts the blank first, others last (blank: classes - 1)",
            "metric: cosine_min  # if these are not CTC scores",
        ),
    )


def _vector(probe: ModelProbe, output: ProbedTensor) -> Proposal | None:
    """[batch, n]: a decision (n = 1), an embedding, or class scores."""
    rest = _rest(probe, output)
    if probe.batched and not rest:  # [batch]: one value per row
        rest = [1]
    if len(rest) != 1 or not isinstance(rest[0], int):
        return None
    size, stats = rest[0], output.stats
    if size == 1:
        probability = stats is not None and stats.minimum >= 0 and stats.maximum <= 1
        return Proposal(
            "binary",
            output.name,
            {"threshold": 0.5 if probability else 0.0},
            why=f"{output.name} {_shape(output)}: one value per row, "
            + ("a probability: decisions at 0.5" if probability else "a logit: decisions at 0"),
        )
    unit = stats is not None and stats.rows_unit_norm
    if unit or (EMBEDDING_NAMES.search(output.name) and not (stats and stats.rows_sum_to_one)):
        return Proposal(
            "embedding",
            output.name,
            {"k": 10},
            why=f"{output.name} {_shape(output)}: "
            + ("rows of norm 1" if unit else "named as features")
            + ": an embedding, judged by the nearest neighbours it finds",
            alternatives=("metric: top1_agreement  # if these are class scores",),
        )
    softmax = stats is not None and stats.rows_sum_to_one
    return Proposal(
        "top1_agreement",
        output.name,
        {"k": min(5, size)},
        why=f"{output.name} {_shape(output)}: {size} class "
        + ("probabilities (rows sum to 1)" if softmax else "scores")
        + ": the top class agrees with FP32's",
        alternatives=("metric: embedding  # if these are features, not classes",),
    )
