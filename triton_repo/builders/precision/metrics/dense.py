"""Dense maps (segmentation, text detection): each row's map thresholded (or its best class per pixel)
and compared with FP32's: IoU per row (two empty maps agree), or the connected regions matched at an
IoU, F1 as for detections (the same text regions, whatever a few stray pixels do)."""

from __future__ import annotations

import numpy as np

from triton_repo.builders.precision.metrics.base import Metric, Score, matched_f1, mean_score, reflect


class Dense(Metric):
    name = "dense"

    @property
    def label(self) -> str:
        return "region F1" if self.settings.compare == "regions" else "map IoU"

    def masks(self, outputs) -> np.ndarray:
        """[rows, ...] decoded: booleans (threshold) or class indices (argmax)."""
        s, maps = self.settings, np.asarray(outputs[self.reads[0]])
        if s.decode == "argmax":
            return maps.argmax(axis=s.class_axis)
        masks = maps > s.threshold
        if s.min_area > 1:
            masks = np.stack([_without_specks(m, s.min_area) for m in masks])
        return masks

    def score(self, reference, variant, labels) -> Score:
        ref, out = self.masks(reference), self.masks(variant)
        result = self._compare(ref, out)
        if labels is not None:  # against the label masks: IoU of the maps, or the mean IoU of the classes
            for side, masks in (("fp32", ref), ("variant", out)):
                result.details[f"iou_{side}_vs_labels"] = self._against(masks, labels)
        return result

    def _against(self, masks: np.ndarray, labels: np.ndarray) -> float:
        truth = labels.reshape(masks.shape) if labels.size == masks.size else labels
        if truth.shape != masks.shape:
            return float("nan")  # labels of another shape than the decoded maps: nothing to compare
        if self.settings.decode == "argmax":
            return float(np.mean([_mean_class_iou(t, m) for t, m in zip(truth, masks, strict=True)]))
        inter, union = np.sum((truth > 0) & masks), np.sum((truth > 0) | masks)
        return float(inter / union) if union else 1.0

    def _compare(self, ref: np.ndarray, out: np.ndarray) -> Score:
        s = self.settings
        if s.compare == "regions":
            counts = np.array(
                [_region_match(a, b, s.min_area, s.match_iou) for a, b in zip(ref, out, strict=True)]
            )
            return matched_f1(*counts.T, {"regions_fp32": float(counts[:, 0].sum() + counts[:, 2].sum())})
        if s.decode == "argmax":
            per_row = np.array([_mean_class_iou(a, b) for a, b in zip(ref, out, strict=True)])
            return mean_score(per_row, {"mean_class_iou": float(per_row.mean())})
        flat_ref, flat_out = ref.reshape(len(ref), -1), out.reshape(len(out), -1)
        inter = (flat_ref & flat_out).sum(axis=1).astype(np.float64)
        union = (flat_ref | flat_out).sum(axis=1).astype(np.float64)
        per_row = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
        details = {
            "pixel_iou": float(inter.sum() / union.sum()) if union.sum() else 1.0,
            "empty_rows": float(np.sum(union == 0)),
        }
        return mean_score(per_row, details)

    def damages(self, reference):
        name, s = self.reads[0], self.settings
        maps = np.asarray(reference[name])
        width = maps.shape[-1]
        shifted = np.roll(maps, max(1, width // 4), axis=-1)
        damaged = {"with every map moved by a quarter of its width": shifted}
        if s.decode == "threshold":
            damaged["with every map inverted around the threshold"] = reflect(maps, s.threshold)
        return {what: {**reference, name: array} for what, array in damaged.items()}


def _components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    from scipy import ndimage

    labelled, count = ndimage.label(mask)
    return labelled, count


def _without_specks(mask: np.ndarray, min_area: int) -> np.ndarray:
    labelled, count = _components(mask)
    if not count:
        return mask
    areas = np.bincount(labelled.ravel(), minlength=count + 1)
    keep = areas >= min_area
    keep[0] = False
    return keep[labelled]


def _region_match(ref: np.ndarray, out: np.ndarray, min_area: int, iou: float) -> tuple[int, int, int]:
    """(matched, added, missed) connected regions of at least `min_area` pixels, greedy by overlap."""
    labels_ref, count_ref = _components(ref)
    labels_out, count_out = _components(out)
    area_ref = np.bincount(labels_ref.ravel(), minlength=count_ref + 1)
    area_out = np.bincount(labels_out.ravel(), minlength=count_out + 1)
    big_ref = np.flatnonzero(area_ref >= min_area)
    big_out = np.flatnonzero(area_out >= min_area)
    big_ref, big_out = big_ref[big_ref > 0], big_out[big_out > 0]
    if not len(big_ref) or not len(big_out):
        return 0, len(big_out), len(big_ref)
    joint = np.bincount(
        labels_ref.ravel() * (count_out + 1) + labels_out.ravel(), minlength=(count_ref + 1) * (count_out + 1)
    ).reshape(count_ref + 1, count_out + 1)
    inter = joint[np.ix_(big_ref, big_out)].astype(np.float64)
    union = area_ref[big_ref][:, None] + area_out[big_out][None, :] - inter
    overlaps = inter / np.maximum(union, 1)
    matched = 0
    while overlaps.size and overlaps.max() >= iou:
        i, j = np.unravel_index(overlaps.argmax(), overlaps.shape)
        matched += 1
        overlaps[i, :], overlaps[:, j] = -1, -1
    return matched, len(big_out) - matched, len(big_ref) - matched


def _mean_class_iou(ref: np.ndarray, out: np.ndarray) -> float:
    classes = np.union1d(np.unique(ref), np.unique(out))
    ious = [np.sum((ref == c) & (out == c)) / np.sum((ref == c) | (out == c)) for c in classes]
    return float(np.mean(ious)) if ious else 1.0
