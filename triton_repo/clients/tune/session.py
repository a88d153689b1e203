"""A whole `triton-repo tune` run: the model's published variants and their measured accuracy, the search
space, every candidate loaded, measured and unloaded on the running server, the winner and its gain over
the committed settings measured in the same run."""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass
from pathlib import Path

from triton_repo.clients.bench.load import Request
from triton_repo.clients.bench.run import Settings
from triton_repo.clients.bench.workload import (
    Variant,
    as_sent,
    axis_sizes,
    load_variant_spec,
    request_inputs,
    response_shapes,
    select_variants,
    sequence_load,
)
from triton_repo.clients.sequences import live_sequence_limit
from triton_repo.clients.tune.candidate import Form, deploy, unload_candidate
from triton_repo.clients.tune.search import FULL, Measured, exhaustive, measure_candidate, quick, slo_score
from triton_repo.clients.tune.space import Batching, Candidate, Committed, committed_candidates, search_space
from triton_repo.clients.tune.traffic import tune_traffic
from triton_repo.core.errors import CheckFailed, ServerError, TritonRepoError
from triton_repo.core.log import info, warn
from triton_repo.repo.config import parse_config
from triton_repo.repo.publish import read_manifest
from triton_repo.serve.model_control import ModelControl
from triton_repo.serve.server import Ports


@dataclass(frozen=True)
class TuneOptions:
    model: str
    repository: Path
    urls: dict[str, str]
    protocol: str
    slo_p99_ms: float
    objective: str
    search: str
    max_minutes: float
    min_accuracy: float | None
    max_concurrency: int
    cores: int
    oversubscribe: bool
    server_pid: int | None = None
    traffic: str | None = None  # a traffic sample: every candidate measured on the user's own inputs
    batch: int = 1  # rows per request (of the golden sample, or of the traffic)


@dataclass
class TuneResult:
    model: str
    measured: list[Measured]
    accuracy: dict[str, dict]  # variant -> {"metric", "value", "verdict"}
    winner: Measured | None
    baseline: Measured | None  # the best committed configuration, measured with full windows
    seconds: float
    interrupted: bool
    candidates: int  # the size of the search space
    traffic: dict | None = None  # the sample the candidates were measured on (TuneTraffic.describe)

    @property
    def gain(self) -> float | None:
        if not self.winner or not self.baseline or not self.baseline.throughput:
            return None
        return self.winner.throughput / self.baseline.throughput


def variant_accuracy(repository: Path, model: str) -> dict[str, dict]:
    """Each published variant's accuracy vs FP32 from BUILD_REPORT.json (the pair it is served from)."""
    path = repository / "BUILD_REPORT.json"
    if not path.is_file():
        raise TritonRepoError(f"{path}: no build report; build the repository first (make build-repo)")
    section = json.loads(path.read_text())["models"].get(model)
    if section is None:
        raise TritonRepoError(f"{model}: not in {path}; build it first")
    found = {}
    for row in section["variants"]:
        if row.get("triton_model"):
            value = row["accuracy"]["value"] if row["accuracy"] else None
            found[row["triton_model"]] = {
                "metric": section["metric"],
                "higher_is_better": section.get("higher_is_better", section["metric"] != "top1_drop"),
                "value": value,
                "verdict": row["verdict"],
            }
    return found


def eligible(accuracy: dict[str, dict], min_accuracy: float | None) -> dict[str, dict]:
    """Variants within a stricter budget (in the spec's metric; the FP32 reference always is)."""
    if min_accuracy is None:
        return accuracy
    keep = {}
    for name, row in accuracy.items():
        value, higher = row["value"], row.get("higher_is_better", True)
        if value is None or (value >= min_accuracy if higher else value <= min_accuracy):
            keep[name] = row
    return keep


def committed_of(config) -> Committed:
    """The settings a published config serves with."""
    threads = int(config.parameters["intra_op_threads"].string_value or 0)
    count = config.instance_group[0].count if config.instance_group else 1
    if config.HasField("sequence_batching"):
        batching = Batching(None, sequence=True)
    elif config.HasField("dynamic_batching"):
        batching = Batching(
            config.dynamic_batching.max_queue_delay_microseconds,
            tuple(config.dynamic_batching.preferred_batch_size),
        )
    else:
        batching = Batching(None)
    return Committed(count, threads, batching)


def run_tune(options: TuneOptions, control) -> TuneResult:
    started = time.perf_counter()
    manifest = read_manifest(options.repository)
    variants = [
        v
        for v in select_variants(manifest, options.repository, [options.model])
        if v.source_model == options.model
    ]
    if not variants:
        raise TritonRepoError(f"tune: '{options.model}' has no published variant in {options.repository}")
    accuracy = eligible(variant_accuracy(options.repository, options.model), options.min_accuracy)
    variants = [v for v in variants if v.name in accuracy]
    if not variants:
        raise TritonRepoError(
            f"tune: no variant of {options.model} is within --min-accuracy {options.min_accuracy} "
            f"({accuracy and 'see BUILD_REPORT.md' or 'nothing measured'})"
        )
    loaded = load_variant_spec(variants[0])
    spec = loaded.spec
    published = parse_config(options.repository / variants[0].name / "config.pbtxt")
    committed = committed_of(published)
    opt_batch = min(spec.axes["batch"].opt, spec.effective_max_batch_size) if spec.batched else 0
    names = {v.name: v.precision for v in variants}
    # a stateful model keeps its sequence batcher: the candidates vary the variant, instances and threads,
    # and every level is a number of live sequences (no more than the batcher holds)
    stateful = spec.sequence is not None
    max_concurrency = options.max_concurrency
    if stateful:
        if options.batch != 1:
            raise TritonRepoError(
                f"--batch {options.batch}: {options.model} is stateful; it is sent one row per chunk"
            )
        max_concurrency = min(max_concurrency, live_sequence_limit(published)[0])
    traffic = (
        tune_traffic(
            manifest, options.repository, options.model, Path(options.traffic), options.batch, variants
        )
        if options.traffic
        else None
    )
    candidates = search_space(
        names,
        options.cores,
        0 if stateful else spec.effective_max_batch_size,
        opt_batch,
        committed,
        options.oversubscribe,
    )
    baselines = committed_candidates(names, committed)
    by_name = {v.name: v for v in variants}
    url = options.urls[options.protocol]
    sizes = axis_sizes(loaded, 1 if stateful else options.batch, {})
    counter = itertools.count(1)
    described = traffic.describe() if traffic else None
    deadline = started + options.max_minutes * 60
    info(
        f"{options.model}: {len(candidates)} candidates ({len(names)} variants within budget), "
        f"{options.search} search, SLO p99 <= {options.slo_p99_ms:g} ms, objective {options.objective}"
        + (f", on {described['label']} sent to the {described['sent_to']}" if described else "")
    )
    if described and described["note"]:
        info(f"  {described['note']}")
    measured: list[Measured] = []
    best: list[Measured] = []

    def request_to(name: str, variant: Variant) -> Request:
        """What model `name` (the candidate, or what calls it) is sent: the traffic, the golden streams
        of a stateful model, or the golden request."""
        if traffic:
            return traffic.request(options.protocol, url, name, variant.name)
        outputs = response_shapes(loaded, sizes)
        if stateful:
            sequences = sequence_load(variant, 1, [max_concurrency], False, None)
            return Request(options.protocol, url, name, sequences.chunks[0][0], outputs, sequences=sequences)
        golden = request_inputs(loaded, variant.version_dir / "golden.npz", sizes, "golden")
        return Request(options.protocol, url, name, as_sent(loaded, golden), outputs)

    def measure(candidate: Candidate, settings: Settings) -> Measured:
        variant = by_name[candidate.variant]
        deployed = deploy(
            control,
            traffic.form if traffic else Form(),
            options.repository / variant.name,
            int(variant.version_dir.name),
            candidate,
            next(counter),
        )
        if deployed.failure:
            warn(f"skipped {candidate.label}: {deployed.failure}")
            result = Measured(
                candidate,
                "full" if settings is FULL else "quick",
                failure=deployed.failure,
                model=deployed.called,
            )
            measured.append(result)
            return result
        try:
            result = measure_candidate(
                request_to(deployed.called, variant),
                candidate,
                options.slo_p99_ms,
                settings,
                max_concurrency,
                lambda _: None,
                options.server_pid,
            )
        finally:
            for model in deployed.loaded:
                unload_candidate(control, model)
        result.model = deployed.called
        measured.append(result)
        if not best or slo_score(result, options.objective) > slo_score(best[0], options.objective):
            best[:] = [result]
        info(_line(len(measured), result, best[0], options))
        return result

    interrupted = False
    try:
        out_of_time = lambda: time.perf_counter() > deadline  # noqa: E731 - a one-line predicate
        if options.search == "exhaustive":
            exhaustive(list(dict.fromkeys([*baselines, *candidates])), measure, out_of_time)
        else:
            quick(candidates, baselines, measure, options.objective, out_of_time)
    except KeyboardInterrupt:
        interrupted = True
        warn(f"interrupted: {len(measured)} measurements kept; the results so far are written")
    full = [m for m in measured if m.settings == "full" and not m.failure]
    winner = max(full, key=lambda m: slo_score(m, options.objective), default=None)
    if winner is not None and winner.best is None:
        winner = None
    committed_full = [m for m in full if m.candidate in baselines and m.best]
    baseline = max(committed_full, key=lambda m: slo_score(m, options.objective), default=None)
    return TuneResult(
        options.model,
        measured,
        {name: accuracy[name] for name in names},
        winner,
        baseline,
        time.perf_counter() - started,
        interrupted,
        len(candidates),
        described,
    )


def _line(number: int, result: Measured, best: Measured, options: TuneOptions) -> str:
    if result.best is None:
        reached = f"lowest p99 {result.lowest_p99:.1f} ms" if result.lowest_p99 is not None else "no answer"
        outcome = f"no concurrency meets the SLO ({reached})"
    else:
        outcome = (
            f"{result.throughput:,.1f} inf/s at c={result.best.level.concurrency}, p99 {result.p99:.1f} ms"
        )
    return (
        f"[{number}] {result.settings:<5} {result.candidate.label}: {outcome} "
        f"(best so far: {best.candidate.label}, {best.throughput:,.1f} inf/s)"
    )


def no_slo_met(result: TuneResult, slo_p99_ms: float) -> CheckFailed:
    reached = [m for m in result.measured if m.lowest_p99 is not None]
    closest = min(reached, key=lambda m: m.lowest_p99, default=None)
    if closest is None:
        return CheckFailed(
            f"tune: no candidate of {result.model} could be measured; see the skipped lines above"
        )
    return CheckFailed(
        f"tune: no candidate of {result.model} meets p99 <= {slo_p99_ms:g} ms; the lowest p99 reached was "
        f"{closest.lowest_p99:.1f} ms ({closest.candidate.label} at concurrency 1); raise --slo-p99"
    )


def running_server(ports: Ports) -> ModelControl:
    """Model control of the server on `ports`, which must be answering: tune loads candidates into it."""
    control = ModelControl(f"http://127.0.0.1:{ports.http}", timeout=300)
    if control.ready_versions() is None:
        raise ServerError(
            f"no tritonserver answers at {control.http_url}; start it with `make serve` (tune loads candidates into it)"
        )
    return control
