"""Triton's statistics extension, sampled before and after each window, turned into time per request.

Triton accumulates, per model, the count and total nanoseconds of successful requests and of their
queue, compute-input, compute-infer and compute-output phases. Every request of a batch is charged the
whole batch's compute time, so compute_infer per request is the execution time of the batch it ran in.
"""

from __future__ import annotations

from dataclasses import dataclass

PHASES = ("queue", "compute_input", "compute_infer", "compute_output")


@dataclass(frozen=True)
class ServerSample:
    success: int
    success_ns: int
    failures: int
    phase_ns: dict[str, int]
    inferences: int
    executions: int

    @staticmethod
    def from_json(statistics: dict, model: str) -> ServerSample:
        """From `get_inference_statistics(model, as_json=True)` (gRPC) or the HTTP client's dict."""
        entries = [s for s in statistics.get("model_stats", []) if s.get("name") == model]
        if not entries:
            raise ValueError(f"the server reports no statistics for model '{model}'")
        success = failures = success_ns = inferences = executions = 0
        phases = dict.fromkeys(PHASES, 0)
        for entry in entries:  # one entry per loaded version
            stats = entry.get("inference_stats", {})
            success += int(stats.get("success", {}).get("count", 0))
            success_ns += int(stats.get("success", {}).get("ns", 0))
            failures += int(stats.get("fail", {}).get("count", 0))
            for phase in PHASES:
                phases[phase] += int(stats.get(phase, {}).get("ns", 0))
            inferences += int(entry.get("inference_count", 0))
            executions += int(entry.get("execution_count", 0))
        return ServerSample(success, success_ns, failures, phases, inferences, executions)


@dataclass(frozen=True)
class ServerDelta:
    """What the server did between two samples; times are milliseconds per successful request."""

    requests: int
    failures: int
    inferences: int
    executions: int
    total_ms: float
    phase_ms: dict[str, float]

    @staticmethod
    def between(before: ServerSample, after: ServerSample) -> ServerDelta:
        requests = after.success - before.success
        per = 1e-6 / requests if requests > 0 else float("nan")
        return ServerDelta(
            requests=requests,
            failures=after.failures - before.failures,
            inferences=after.inferences - before.inferences,
            executions=after.executions - before.executions,
            total_ms=(after.success_ns - before.success_ns) * per,
            phase_ms={p: (after.phase_ns[p] - before.phase_ns[p]) * per for p in PHASES},
        )

    @property
    def other_ms(self) -> float:
        """Server time outside the four phases (request handling, response send, scheduling)."""
        return self.total_ms - sum(self.phase_ms.values())

    @property
    def average_batch(self) -> float:
        """Inferences per model execution: how much the dynamic batcher combined."""
        return self.inferences / self.executions if self.executions > 0 else float("nan")


def combine(deltas: list[ServerDelta]) -> ServerDelta:
    """Several windows as one (time per request weighted by each window's requests)."""
    requests = sum(d.requests for d in deltas)
    answered = [d for d in deltas if d.requests > 0]

    def weighted(values: list[float]) -> float:
        if not requests:
            return float("nan")
        return float(sum(d.requests * v for d, v in zip(answered, values, strict=True)) / requests)

    return ServerDelta(
        requests=requests,
        failures=sum(d.failures for d in deltas),
        inferences=sum(d.inferences for d in deltas),
        executions=sum(d.executions for d in deltas),
        total_ms=weighted([d.total_ms for d in answered]),
        phase_ms={p: weighted([d.phase_ms[p] for d in answered]) for p in PHASES},
    )


# Custom metrics a python-backend model may export on Triton's metrics port: seconds spent and rows
# processed per stage (preprocess, runtime, postprocess), counters labelled model, version, stage.
STAGE_SECONDS = "triton_repo_stage_seconds_total"
STAGE_ROWS = "triton_repo_stage_rows_total"


@dataclass(frozen=True)
class StageTime:
    """Seconds a model spent in one of its own stages, and the rows it processed there (a delta)."""

    model: str
    stage: str
    seconds: float
    rows: float


def parse_stage_metrics(text: str) -> dict[tuple[str, str], tuple[float, float]]:
    """(model, stage) -> (seconds, rows) from Prometheus exposition text, summed over versions; the
    families are absent (an empty dict) when no model exports them."""
    found: dict[tuple[str, str], list[float]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith((STAGE_SECONDS + "{", STAGE_ROWS + "{")):
            continue
        name, _, rest = line.partition("{")
        labels_text, _, value_text = rest.rpartition("}")
        labels = _labels(labels_text)
        try:
            value = float(value_text.split()[0])
        except (IndexError, ValueError):
            continue
        key = (labels.get("model", ""), labels.get("stage", ""))
        found.setdefault(key, [0.0, 0.0])[0 if name == STAGE_SECONDS else 1] += value
    return {key: (seconds, rows) for key, (seconds, rows) in found.items()}


def _labels(text: str) -> dict[str, str]:
    """`a="x",b="y"` (Prometheus label syntax, with its escapes) into a dict."""
    labels, i = {}, 0
    while i < len(text):
        equals = text.find("=", i)
        if equals < 0 or equals + 1 >= len(text) or text[equals + 1] != '"':
            break
        key, value, j = text[i:equals].strip(" ,"), [], equals + 2
        while j < len(text) and text[j] != '"':
            if text[j] == "\\" and j + 1 < len(text):
                j += 1
                value.append({"n": "\n"}.get(text[j], text[j]))
            else:
                value.append(text[j])
            j += 1
        labels[key] = "".join(value)
        i = j + 1
    return labels


def stage_deltas(
    before: dict[tuple[str, str], tuple[float, float]],
    after: dict[tuple[str, str], tuple[float, float]],
    models: set[str],
) -> list[StageTime]:
    """What each stage of `models` did between two scrapes (a counter that went down restarted: skipped)."""
    deltas = []
    for (model, stage), (seconds, rows) in after.items():
        if model not in models:
            continue
        was_seconds, was_rows = before.get((model, stage), (0.0, 0.0))
        if seconds >= was_seconds and rows >= was_rows:
            deltas.append(StageTime(model, stage, seconds - was_seconds, rows - was_rows))
    return deltas


def combine_stages(windows: list[list[StageTime]]) -> list[StageTime]:
    """Several windows' stage times as one (sums), in order of first appearance."""
    total: dict[tuple[str, str], list[float]] = {}
    for window in windows:
        for s in window:
            entry = total.setdefault((s.model, s.stage), [0.0, 0.0])
            entry[0] += s.seconds
            entry[1] += s.rows
    return [StageTime(model, stage, seconds, rows) for (model, stage), (seconds, rows) in total.items()]
