"""Detection: FP32's and the variant's detections (threshold, NMS) matched per class at an IoU; F1 of the
matches pooled over the eval images, with precision, recall and the largest score shift beside it."""

from __future__ import annotations

import numpy as np

from triton_repo.builders.precision.metrics.base import Metric, Score, matched_f1
from triton_repo.core.decode import Detections, box_iou, head_detections, listed_detections
from triton_repo.core.spec import detection_layout


class Detection(Metric):
    name = "detection"
    label = "detection F1"

    def decode(self, outputs) -> list[Detections]:
        """Each row's detections, as the served postprocess step decodes them."""
        s = self.settings
        if s.raw_head:
            head = outputs[self.reads[0]]
            dims = next(o for o in self.spec.outputs if o.name == self.reads[0]).dims[1:]
            return head_detections(
                head,
                detection_layout(s, dims),
                s.box,
                s.objectness,
                s.score_threshold,
                s.effective_nms_iou,
                s.max_detections,
                s.class_agnostic,
            )
        classes = outputs[s.classes] if s.classes else None
        return listed_detections(
            outputs[s.boxes],
            outputs[s.scores],
            classes,
            s.box,
            s.score_threshold,
            s.nms_iou,
            s.max_detections,
        )

    def score(self, reference, variant, labels) -> Score:
        found_ref, found_out = self.decode(reference), self.decode(variant)
        counts = np.array(
            [match(r, o, self.settings.match_iou) for r, o in zip(found_ref, found_out, strict=True)]
        )
        tp, fp, fn, shift = counts.T if len(counts) else np.zeros((4, 0))
        details = {
            "detections_fp32": float(sum(len(r) for r in found_ref)),
            "detections_variant": float(sum(len(o) for o in found_out)),
            "max_score_shift": float(shift.max(initial=0.0)),
        }
        if labels is not None:  # mAP@0.5 of FP32 and the variant against the labelled boxes
            details["map50_fp32"] = average_precision(found_ref, labels, self.settings.match_iou)
            details["map50_variant"] = average_precision(found_out, labels, self.settings.match_iou)
        return matched_f1(tp, fp, fn, details)

    def damages(self, reference):
        s = self.settings
        if not s.raw_head:
            boxes = reference[s.boxes]
            moved = np.array(boxes, copy=True)
            width = moved[..., 2] - moved[..., 0] if s.box == "xyxy" else moved[..., 2]
            moved[..., 0] += width  # a box moved right by its own width matches nothing
            if s.box == "xyxy":
                moved[..., 2] += width
            return {"with every box moved by its width": {**reference, s.boxes: moved}}
        name = self.reads[0]
        head = np.asarray(reference[name])
        dims = next(o for o in self.spec.outputs if o.name == name).dims[1:]
        channels_first = detection_layout(s, dims) == "channels_first"
        rows = head if channels_first else head.transpose(0, 2, 1)  # [batch, channels, anchors]
        first = 5 if s.objectness else 4
        moved = rows.copy()
        width = moved[:, 2] - moved[:, 0] if s.box == "xyxy" else moved[:, 2]
        moved[:, 0] += width
        if s.box == "xyxy":
            moved[:, 2] += width
        relabelled = rows.copy()
        relabelled[:, first:] = np.roll(rows[:, first:], 1, axis=1)
        back = (lambda a: a) if channels_first else (lambda a: a.transpose(0, 2, 1))
        damaged = {
            "with every box moved by its width": back(moved),
            "with every detection given the next class": back(relabelled),
        }
        if rows.shape[1] - first == 1:
            del damaged["with every detection given the next class"]  # one class: nothing to swap
        return {what: {**reference, name: np.ascontiguousarray(array)} for what, array in damaged.items()}


def match(reference: Detections, variant: Detections, iou: float) -> tuple[int, int, int, float]:
    """(matched, added, missed, largest score shift of a match): each variant detection, best score
    first, takes the unmatched FP32 detection of its class it overlaps most, if at `iou` or more."""
    matched, shift = 0, 0.0
    for cls in np.union1d(reference.classes, variant.classes):
        ref = np.flatnonzero(reference.classes == cls)
        out = np.flatnonzero(variant.classes == cls)
        if not len(ref) or not len(out):
            continue
        out = out[np.argsort(-variant.scores[out], kind="stable")]
        overlaps = box_iou(variant.boxes[out], reference.boxes[ref])
        free = np.ones(len(ref), bool)
        for i, candidate in enumerate(out):
            options = np.where(free, overlaps[i], -1.0)
            best = int(options.argmax())
            if options[best] >= iou:
                free[best] = False
                matched += 1
                shift = max(shift, abs(float(variant.scores[candidate]) - float(reference.scores[ref[best]])))
    return matched, len(variant) - matched, len(reference) - matched, shift


def average_precision(found: list[Detections], truth: np.ndarray, iou: float) -> float:
    """Mean over the labelled classes of the all-point interpolated average precision (PASCAL VOC 2010
    and later) of `found` against `truth` [boxes, 6] (row, x1, y1, x2, y2, class) at `iou`."""
    classes = np.unique(truth[:, 5]).astype(int) if len(truth) else np.zeros(0, int)
    precisions = []
    for cls in classes:
        wanted = truth[truth[:, 5] == cls]
        scored = [
            (float(s), row, box)
            for row, d in enumerate(found)
            for s, c, box in zip(d.scores, d.classes, d.boxes, strict=True)
            if c == cls
        ]
        scored.sort(key=lambda item: -item[0])
        used: set[int] = set()
        hits = []
        for _, row, box in scored:
            candidates = np.flatnonzero(wanted[:, 0] == row)
            overlaps = box_iou(box[None], wanted[candidates, 1:5])[0] if len(candidates) else np.zeros(0)
            order = [
                candidates[j]
                for j in np.argsort(-overlaps)
                if overlaps[j] >= iou and candidates[j] not in used
            ]
            hits.append(bool(order))
            if order:
                used.add(order[0])
        hit = np.array(hits, bool)
        recall = np.cumsum(hit) / len(wanted)
        precision = np.cumsum(hit) / np.arange(1, len(hit) + 1)
        envelope = np.maximum.accumulate(np.concatenate([precision, [0.0]])[::-1])[::-1]
        steps = np.diff(np.concatenate([[0.0], recall]))
        precisions.append(float(np.sum(steps * envelope[: len(steps)])))
    return float(np.mean(precisions)) if precisions else 0.0
