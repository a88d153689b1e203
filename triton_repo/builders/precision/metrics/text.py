"""Text by greedy CTC decoding: FP32's and the variant's token sequences per row, compared by edit
distance: 1 - edits / the longer text, pooled over characters; exact lines beside it."""

from __future__ import annotations

import numpy as np

from triton_repo.builders.precision.metrics.base import Metric, Score, pooled
from triton_repo.core.decode import ctc_greedy


class Ctc(Metric):
    name = "ctc"
    label = "CTC character agreement"

    def __init__(self, spec, reads, alphabet: list[str] | None = None):
        super().__init__(spec, reads)
        self.alphabet = alphabet  # the characters of the classes but the blank, in class order

    def text(self, tokens: tuple[int, ...]) -> str:
        blank = self.settings.blank
        return "".join(
            self.alphabet[t - (t > blank)] if t - (t > blank) < len(self.alphabet) else "?" for t in tokens
        )

    def texts(self, outputs) -> list[tuple[int, ...]]:
        s = self.settings
        return ctc_greedy(outputs[self.reads[0]], s.blank, s.class_axis)

    def score(self, reference, variant, labels) -> Score:
        ref, out = self.texts(reference), self.texts(variant)
        edits = np.array([edit_distance(a, b) for a, b in zip(ref, out, strict=True)], np.float64)
        longer = np.array([max(len(a), len(b)) for a, b in zip(ref, out, strict=True)], np.float64)
        characters = float(sum(len(a) for a in ref))
        details = {
            "exact_lines": float(np.mean([a == b for a, b in zip(ref, out, strict=True)])),
            "cer_vs_fp32": float(edits.sum() / characters) if characters else 0.0,
            "characters_fp32": characters,
        }
        if labels is not None and self.alphabet is not None:  # against the true text of each line
            truth = [tuple(line) for line in labels]
            for side, found in (("fp32", ref), ("variant", out)):
                read = [tuple(self.text(tokens)) for tokens in found]
                wrong = sum(edit_distance(t, r) for t, r in zip(truth, read, strict=True))
                details[f"cer_{side}_vs_labels"] = wrong / max(1, sum(len(t) for t in truth))
                details[f"lines_{side}_vs_labels"] = float(
                    np.mean([t == r for t, r in zip(truth, read, strict=True)])
                )
        return pooled(longer - edits, longer, details)

    def damages(self, reference):
        name, axis = self.reads[0], self.settings.class_axis
        scores = np.asarray(reference[name])
        return {
            "with every character read as the next class": {**reference, name: np.roll(scores, 1, axis=axis)}
        }

    def fix(self) -> str:
        return "give data.eval rows with text in them (FP32 reads almost nothing on the eval set)"


def edit_distance(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    """Levenshtein distance between two token sequences."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]
