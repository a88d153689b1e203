"""What a model's raw outputs mean to its task: detections from a YOLO-style head (threshold, NMS), greedy
CTC text, thresholded maps, top-k classes, decisions.

One source for two users: the accuracy gate decodes FP32's and each variant's outputs with it before
comparing them, and an ensemble's postprocess step runs the same file inside tritonserver (it is copied
beside the python backend's model.py). So it imports numpy and the standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BOX_FORMATS = ("cxcywh", "xyxy", "xywh")
MAX_CANDIDATES = 3000  # boxes above the score threshold that enter NMS, best first


@dataclass(frozen=True)
class Detections:
    """One image's detections: boxes [n, 4] as x1, y1, x2, y2 in the model input's pixels, scores [n],
    classes [n] (int), highest score first."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))


def to_xyxy(boxes: np.ndarray, box_format: str) -> np.ndarray:
    """Boxes [n, 4] in `box_format` as x1, y1, x2, y2."""
    boxes = np.asarray(boxes, np.float32)
    if box_format == "xyxy":
        return boxes
    if box_format == "cxcywh":
        half = boxes[:, 2:4] / 2
        return np.concatenate([boxes[:, 0:2] - half, boxes[:, 0:2] + half], axis=1)
    if box_format == "xywh":
        return np.concatenate([boxes[:, 0:2], boxes[:, 0:2] + boxes[:, 2:4]], axis=1)
    raise ValueError(f"box format {box_format!r}: expected one of {BOX_FORMATS}")


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box of `a` [n, 4] with every box of `b` [m, 4] (xyxy): [n, m]."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float, limit: int | None = None) -> np.ndarray:
    """Indices of the boxes greedy non-maximum suppression keeps, highest score first (ties by index);
    it stops once `limit` are kept (the ones it would keep first)."""
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size and (limit is None or len(keep) < limit):
        best = order[0]
        keep.append(best)
        if order.size == 1:
            break
        overlap = box_iou(boxes[best : best + 1], boxes[order[1:]])[0]
        order = order[1:][overlap <= iou]
    return np.asarray(keep, np.int64)


def select(
    boxes: np.ndarray,
    scores: np.ndarray,
    classes: np.ndarray,
    score_threshold: float,
    nms_iou: float,
    max_detections: int,
    class_agnostic: bool = False,
) -> Detections:
    """Candidates above `score_threshold`, per-class NMS (or across classes), the best `max_detections`."""
    keep = np.flatnonzero(scores > score_threshold)
    if len(keep) > MAX_CANDIDATES:  # the best ones, as Ultralytics caps what enters NMS
        keep = keep[np.argsort(-scores[keep], kind="stable")[:MAX_CANDIDATES]]
    boxes, scores, classes = boxes[keep], scores[keep], classes[keep]
    if not len(scores):
        return Detections.empty()
    if class_agnostic:
        kept = nms(boxes, scores, nms_iou, max_detections)
    else:  # offset each class's boxes so that boxes of different classes never overlap (one NMS pass)
        span = float(np.abs(boxes).max()) + 1.0
        kept = nms(boxes + (classes.astype(np.float64) * 2 * span)[:, None], scores, nms_iou, max_detections)
    return Detections(
        boxes[kept].astype(np.float32), scores[kept].astype(np.float32), classes[kept].astype(np.int64)
    )


def head_detections(
    head: np.ndarray,
    layout: str,
    box_format: str = "cxcywh",
    objectness: bool = False,
    score_threshold: float = 0.25,
    nms_iou: float = 0.45,
    max_detections: int = 300,
    class_agnostic: bool = False,
) -> list[Detections]:
    """Each image's detections from a raw YOLO-style head [batch, 4 (+1) + C, anchors] (`layout`
    "channels_first", as Ultralytics v8 and later export) or [batch, anchors, 4 (+1) + C]
    ("anchors_first", YOLOv5): box, then objectness when the head has it (score = objectness x class
    score), then one score per class."""
    head = np.asarray(head, np.float32)
    if head.ndim != 3:
        raise ValueError(f"a detection head is [batch, channels, anchors]; got shape {list(head.shape)}")
    rows = head.transpose(0, 2, 1) if layout == "channels_first" else head
    first = 5 if objectness else 4
    if rows.shape[2] <= first:
        raise ValueError(
            f"a detection head with{'' if objectness else 'out'} objectness needs more than {first} channels; "
            f"got {rows.shape[2]} (is the layout {layout!r} right?)"
        )
    found = []
    for image in rows:
        class_scores = image[:, first:]
        if objectness:
            class_scores = class_scores * image[:, 4:5]
        classes = class_scores.argmax(axis=1)
        scores = class_scores[np.arange(len(classes)), classes]
        found.append(
            select(
                to_xyxy(image[:, :4], box_format),
                scores,
                classes,
                score_threshold,
                nms_iou,
                max_detections,
                class_agnostic,
            )
        )
    return found


def listed_detections(
    boxes: np.ndarray,
    scores: np.ndarray,
    classes: np.ndarray | None,
    box_format: str = "xyxy",
    score_threshold: float = 0.25,
    nms_iou: float | None = None,
    max_detections: int = 300,
) -> list[Detections]:
    """Each image's detections from separate outputs: boxes [batch, n, 4], scores [batch, n] with classes
    [batch, n], or scores [batch, n, C] (the best class per box). NMS only when `nms_iou` is given (most
    models with such outputs have done it already)."""
    boxes = np.asarray(boxes, np.float32)
    scores = np.asarray(scores, np.float32)
    found = []
    for row in range(boxes.shape[0]):
        row_scores = scores[row]
        if row_scores.ndim == 2:
            row_classes = row_scores.argmax(axis=1)
            row_scores = row_scores[np.arange(len(row_classes)), row_classes]
        elif classes is not None:
            row_classes = np.asarray(classes[row]).reshape(-1).astype(np.int64)
        else:
            row_classes = np.zeros(len(row_scores), np.int64)
        found.append(
            select(
                to_xyxy(boxes[row].reshape(-1, 4), box_format),
                row_scores.reshape(-1),
                row_classes,
                score_threshold,
                1.0 if nms_iou is None else nms_iou,
                max_detections,
            )
        )
    return found


def ctc_greedy(scores: np.ndarray, blank: int = 0, class_axis: int = -1) -> list[tuple[int, ...]]:
    """Each row's token ids by greedy CTC decoding: the best class per time step, repeats merged, blanks
    dropped. `scores` [batch, time, classes] (or the class axis elsewhere), logits or probabilities."""
    scores = np.moveaxis(np.asarray(scores), class_axis, -1)
    if scores.ndim != 3:
        raise ValueError(f"CTC scores are [batch, time, classes]; got shape {list(scores.shape)}")
    best = scores.argmax(axis=-1)
    texts = []
    for steps in best:
        merged = steps[np.concatenate([[True], steps[1:] != steps[:-1]])]
        texts.append(tuple(int(t) for t in merged if t != blank))
    return texts


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """The `k` best classes of each row [batch, C], best first (ties by class index)."""
    scores = np.asarray(scores).reshape(len(scores), -1)
    k = min(k, scores.shape[1])
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def decisions(values: np.ndarray, threshold: float) -> np.ndarray:
    """Boolean decisions: value above the threshold (a probability above 0.5, a logit above 0)."""
    return np.asarray(values) > threshold


def letterbox_to_image(
    boxes: np.ndarray, scale: float, pad_x: float, pad_y: float, width: float, height: float
):
    """Boxes in the model input's (letterboxed) pixels back in the original image's, clipped to it."""
    out = (np.asarray(boxes, np.float32) - np.array([pad_x, pad_y, pad_x, pad_y], np.float32)) / scale
    return np.clip(out, 0, np.array([width, height, width, height], np.float32))
