"""The accuracy gate's metrics, one per task: each decodes the outputs as the task needs (core/decode.py,
shared with the served postprocess step), compares FP32's decoding with the variant's row by row, and
gives a value with the bound the gate holds to the budget (bounds.py). selfcheck.py proves a metric can
fail on a model before the gate trusts it."""

from __future__ import annotations

from triton_repo.builders.precision.metrics.base import Metric, Score
from triton_repo.builders.precision.metrics.binary import Binary
from triton_repo.builders.precision.metrics.classify import Classification
from triton_repo.builders.precision.metrics.cosine import CosineMin
from triton_repo.builders.precision.metrics.custom import Custom
from triton_repo.builders.precision.metrics.dense import Dense
from triton_repo.builders.precision.metrics.detect import Detection
from triton_repo.builders.precision.metrics.embed import Embedding
from triton_repo.builders.precision.metrics.text import Ctc
from triton_repo.core.spec import LoadedSpec

# metric name -> its class (the custom metric is built with the user's function)
METRIC_CLASSES = {
    "top1_drop": Classification,
    "top1_agreement": Classification,
    "topk_agreement": Classification,
    "cosine_min": CosineMin,
    "detection": Detection,
    "dense": Dense,
    "binary": Binary,
    "embedding": Embedding,
    "ctc": Ctc,
}


def metric_for(loaded: LoadedSpec) -> Metric:
    """The spec's metric, reading the outputs it names (a raw head or the first output by default)."""
    spec = loaded.spec
    accuracy = spec.accuracy
    settings = accuracy.settings
    if accuracy.metric == "detection" and not settings.raw_head:
        reads = tuple(n for n in (settings.boxes, settings.scores, settings.classes) if n)
    else:
        reads = (spec.accuracy_output,)
    if accuracy.metric == "custom":
        from triton_repo.core.references import load_callable

        field = "accuracy.custom.function"
        function = load_callable(loaded, accuracy.custom.function, field)
        return Custom(spec, reads, function, f"{loaded.path}: {field} {accuracy.custom.function}")
    if accuracy.metric == "ctc" and settings.alphabet is not None:
        path = loaded.resolve_file(settings.alphabet, "accuracy.ctc.alphabet")
        return Ctc(spec, reads, path.read_text(encoding="utf-8").split("\n"))
    return METRIC_CLASSES[accuracy.metric](spec, reads)


__all__ = ["METRIC_CLASSES", "Metric", "Score", "metric_for"]
