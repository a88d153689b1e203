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
