"""Measure every (artifact, runner) pair of a model, each in its own worker process of the serving runtime:
accuracy against the reference on the eval set, the pair's own outputs on the golden sample, and speed
in one interleaved run. Cached in <work>/<name>/precision.json."""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from triton_repo.builders.data import ModelData
from triton_repo.builders.export import ExportResult
from triton_repo.builders.precision.accuracy import AccuracyResult, eval_batch_size, measure, row_count
from triton_repo.builders.precision.artifacts import Artifact
from triton_repo.builders.precision.kinds import REFERENCE
from triton_repo.builders.precision.metrics.selfcheck import check_metric
from triton_repo.builders.precision.real_shapes import not_timed, real_shape_groups, shape_summary
from triton_repo.builders.precision.results import PrecisionResult, VariantResult, refusal, speed_inputs
from triton_repo.builders.precision.roofline import int8_fraction, matrix_flops, matrix_node_flops
from triton_repo.builders.precision.streams import as_rows, own_streams, stream_through, streams_label
from triton_repo.builders.precision.timing import THROUGHPUT_BATCH, Timing, measure_speed
from triton_repo.core.compare import compare
from triton_repo.core.errors import CheckFailed
from triton_repo.core.fingerprint import arrays_digest, sha256_file
from triton_repo.core.golden import GoldenCase, load_golden, sample_case
from triton_repo.core.golden_streams import SEQUENCE_FILE
from triton_repo.core.log import diagnostic, step, warn
from triton_repo.core.references import placeholder_eval
from triton_repo.core.spec import LoadedSpec
from triton_repo.runtimes.isolated import RUNNERS, ArtifactRunFailed, IsolatedSession, Runner, Runtime

RESULTS_FILE = "precision.json"
# Measurements kept per key: each target measures its own pairs, so a gpu build with the same work dir
# leaves the cpu build's measurements (and so its choices) as they were.
KEPT_RESULTS = 4
GATE_VERSION = 2  # raised when what a cached result holds changes (2: task metrics, their labels and bounds)
# Raised when the real-shape speed inputs change; in the key only of models that have them, so the
# others keep their measurements.
REAL_SHAPES_VERSION = 1


def measure_pairs(
    loaded: LoadedSpec,
    exported: ExportResult,
    work_dir: Path,
    runtime: Runtime,
    pairs: dict[str, tuple[Artifact, Runner]],
    op_types: dict[str, str],
    speed_seconds: float,
    data: ModelData,
) -> PrecisionResult:
    spec = loaded.spec
    evaluation = data.get("eval") if spec.lower_precisions else None
    # the true classes, when given: top1_drop's reference, and top-1 on real labels in the report
    truth = data.get("eval_labels") if evaluation is not None else None
    runners = {e.name: runtime.label_of(e) for _, e in pairs.values()}
    # the eval set's batches at their own lengths, timed beside the opt shapes (a dynamic axis but batch)
    # (not on init's random placeholder rows: their lengths say nothing of real traffic)
    real_data = None if not_timed(spec) or placeholder_eval(loaded) else data.get("eval")
    key = _results_key(loaded, exported, pairs, evaluation, truth, runners, real_data)
    cached = _load_results(work_dir, key, pairs, exported.golden_path, op_types, runtime.label, runners)
    if cached is not None:
        return cached
    eval_inputs = evaluation.arrays if evaluation is not None else None
    labels = truth.arrays["labels"] if truth is not None else None
    stateful = spec.sequence is not None
    golden_streams = exported.golden_path.with_name(SEQUENCE_FILE) if stateful else None
    streams: dict[str, Path] = {}
    streams_ok: dict[str, bool] = {}  # an FP32 pair in f32 answers PyTorch's streams within tolerance
    threads = spec.triton.intra_op_threads or os.cpu_count() or 1
    sample = sample_case(load_golden(exported.golden_path))
    outputs = [o.name for o in spec.outputs]
    failures: dict[str, ArtifactRunFailed] = {}
    accuracy: dict[str, AccuracyResult | None] = {REFERENCE: None}
    samples: dict[str, GoldenCase] = {}
    batch1, batch8 = (
        speed_inputs(loaded, sample.inputs, 1),
        speed_inputs(loaded, sample.inputs, THROUGHPUT_BATCH),
    )
    real = real_shape_groups(loaded, real_data.arrays if real_data else None, row_count(batch8)).groups
    with contextlib.ExitStack() as stack:
        sessions = {}
        for pair, (artifact, runner) in pairs.items():
            try:
                sessions[pair] = stack.enter_context(IsolatedSession(runtime, artifact.path, threads, runner))
            except ArtifactRunFailed as error:
                failures[pair] = error
        _fail_on_reference(spec.name, failures)
        if eval_inputs is not None:
            batch = eval_batch_size(spec)

            def evaluate(session):  # a stateful model: every step of every stream, on its own state
                if stateful:
                    return as_rows(stream_through(loaded, session, eval_inputs))
                return session.run(eval_inputs, outputs, batch)

            rows = streams_label(eval_inputs) if stateful else f"{row_count(eval_inputs)} rows"
            with step(f"{spec.name}: FP32 on the eval set ({rows}, {runtime.label})"):
                try:
                    reference = evaluate(sessions[REFERENCE])
                except ArtifactRunFailed as error:
                    raise CheckFailed(f"{spec.name}: the FP32 model cannot be served: {error}") from None
            with step(
                f"{spec.name}: the accuracy gate refuses FP32's own outputs damaged ({spec.accuracy.metric})"
            ):
                check_metric(loaded, reference, labels)
            for pair in [p for p in sessions if p != REFERENCE]:
                with step(f"{spec.name}: {pair} vs FP32 on the eval set ({spec.accuracy.metric})"):
                    try:
                        result = evaluate(sessions[pair])
                    except ArtifactRunFailed as error:
                        failures[pair] = error
                        continue
                    accuracy[pair] = measure(loaded, reference, result, labels)
        for pair in [p for p in sessions if p not in failures]:
            try:
                samples[pair] = GoldenCase(
                    sample.label, sample.inputs, sessions[pair].run(sample.inputs, outputs)
                )
            except ArtifactRunFailed as error:
                failures[pair] = error
        for pair in [p for p in sessions if p not in failures and stateful]:
            try:  # what its served model must answer, chunk by chunk
                streams[pair], streams_ok[pair] = own_streams(
                    loaded, pair, pairs[pair][1], sessions[pair], work_dir, golden_streams
                )
            except ArtifactRunFailed as error:
                failures[pair] = error
        live = {pair: session for pair, session in sessions.items() if pair not in failures}
        shapes = shape_summary(spec, real)
        at_real = "".join(
            f", {axis} {low}-{high} in {len(real)} eval batches" for axis, (low, _, high) in shapes.items()
        )
        with step(
            f"{spec.name}: in-process speed, {threads} threads, {len(live)} (artifact, runtime) pairs "
            f"interleaved (opt shapes{at_real})"
        ):
            # eval batches at the opt shapes themselves (a detector's fixed-size eval images) are the batch-8
            # run already: not timed twice, which would only add noise to the run that chooses the pairs
            at_opt = all(_same_shapes(group, batch8) for group in real)
            timings, failed = measure_speed(
                live, batch1, batch8, threads, speed_seconds, real=[] if at_opt else real
            )
        timings = {
            pair: replace(
                t,
                real_shapes=shapes or None,
                real_batches=len(real) if shapes else 0,
                **({"throughput_real": t.throughput_b8, "noise_real": t.noise} if at_opt and real else {}),
            )
            for pair, t in timings.items()
        }
        failures.update(failed)
    _fail_on_reference(spec.name, failures)
    for pair, error in failures.items():
        line = refusal(spec.name, pair, pairs[pair][0].path, error)
        warn(f"refused {line}")
        accuracy[pair] = AccuracyResult.not_run(spec, line)
    flops, int8_flops = diagnostic(
        f"{spec.name}: roofline (matrix FLOPs)",
        lambda: _matrix_work(exported.onnx_path, batch1, batch8, pairs),
        default=({}, {}),
    )
    variants = {}
    for pair, (artifact, runner) in pairs.items():
        golden_ok, own = True, samples.get(pair)
        if artifact.kind == REFERENCE and own is not None and runner.precision in ("", "f32"):
            golden_ok = _matches_golden(loaded, own, sample) and streams_ok.get(pair, True)
            own = sample  # an FP32 pair serves as <name>_fp32: the served check expects PyTorch's outputs
        timing = None if pair in failures else timings.get(pair)
        variants[pair] = VariantResult(
            artifact, accuracy.get(pair), timing, own, runner, golden_ok, streams.get(pair)
        )
    measured_at = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    result = PrecisionResult(
        variants, measured_at, False, op_types, runtime.label, runners, flops, int8_flops
    )
    _save_results(work_dir, key, result)
    return result


def _matrix_work(fp32_onnx: Path, batch1, batch8, pairs) -> tuple[dict[str, float], dict[str, float]]:
    """The report's roofline inputs: matrix FLOPs at batch 1 and 8, and each INT8 artifact's INT8 share."""
    node_flops = matrix_node_flops(fp32_onnx, batch8)
    batch = row_count(batch8) if batch8 else THROUGHPUT_BATCH  # smaller when max batch is
    flops = {"1": matrix_flops(fp32_onnx, batch1), str(batch): float(sum(node_flops.values()))}
    int8_flops = {
        artifact.kind: fraction
        for artifact, _ in pairs.values()
        if artifact.kind.startswith("int8")
        and (fraction := int8_fraction(node_flops, artifact.path)) is not None
    }
    return flops, int8_flops


def _fail_on_reference(name: str, failures: dict[str, ArtifactRunFailed]) -> None:
    if REFERENCE in failures:
        raise CheckFailed(f"{name}: the FP32 model cannot be served: {failures[REFERENCE]}")


def _matches_golden(loaded: LoadedSpec, own: GoldenCase, golden: GoldenCase) -> bool:
    """The pair's outputs equal PyTorch's within each output's tolerance (what <name>_fp32 promises)."""
    return all(
        compare(own.outputs[o.name], golden.outputs[o.name], o.tolerance).passed for o in loaded.spec.outputs
    )


def _results_key(
    loaded: LoadedSpec, exported: ExportResult, pairs, evaluation, truth, runners, real_data
) -> str:
    """Everything the measurements depend on: artifacts and runners, eval data (for accuracy, and for
    speed at real shapes) and labels, golden sample, settings, and the runtimes' versions."""
    spec = loaded.spec
    payload = {
        "gate": GATE_VERSION,
        "pairs": {pair: [artifact.key, runner.name] for pair, (artifact, runner) in pairs.items()},
        "fp32": exported.onnx_sha256,
        "eval": evaluation.digest if evaluation is not None else arrays_digest(None),
        "labels": truth.digest if truth is not None else arrays_digest(None),
        "golden": sha256_file(exported.golden_path),
        **(
            {"streams": sha256_file(exported.golden_path.with_name(SEQUENCE_FILE))}
            if spec.sequence is not None
            else {}
        ),
        "accuracy": spec.accuracy.model_dump(mode="json") if spec.accuracy else None,
        "tolerances": [o.tolerance.model_dump() for o in spec.outputs],
        "threads": spec.triton.intra_op_threads,
        "axes": {name: r.model_dump() for name, r in spec.axes.items()},
        "engines": runners,
        **({"real_shapes": [REAL_SHAPES_VERSION, real_data.digest]} if real_data is not None else {}),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _sample_file(pair: str) -> str:
    return f"{pair.replace('@', '.')}.sample.npz"


def _save_results(work_dir: Path, key: str, result: PrecisionResult) -> None:
    data = {
        "key": key,
        "measured_at": result.measured_at,
        "runtime": result.runtime,
        "engines": result.runners,
        "flops": result.flops,
        "int8_flops": result.int8_flops,
        "variants": {
            pair: {
                "engine": v.runner.name,
                "accuracy": asdict(v.accuracy) if v.accuracy else None,
                "timing": asdict(v.timing) if v.timing else None,
                "golden_ok": v.golden_ok,
                "sample_outputs": _sample_file(pair) if v.sample else None,
                "streams": str(v.streams) if v.streams else None,
            }
            for pair, v in result.variants.items()
        },
    }
    for pair, variant in result.variants.items():
        if variant.sample is not None:
            np.savez(work_dir / _sample_file(pair), **variant.sample.outputs)
    kept = [entry for entry in _saved_entries(work_dir) if entry.get("key") != key]
    tmp = work_dir / (RESULTS_FILE + ".tmp")
    tmp.write_text(json.dumps({"results": [data, *kept][:KEPT_RESULTS]}, indent=2))
    tmp.replace(work_dir / RESULTS_FILE)


def _saved_entries(work_dir: Path) -> list[dict]:
    """The remembered measurements, newest first (a file from before they were kept per key: its one)."""
    try:
        data = json.loads((work_dir / RESULTS_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return []
    return data.get("results", []) if "results" in data else [data]


def _load_results(work_dir: Path, key: str, pairs, golden_path: Path, op_types, runtime: str, runners):
    found = [
        e
        for e in _saved_entries(work_dir)
        if e.get("key") == key and set(e.get("variants", {})) == set(pairs)
    ]
    if not found:
        return None
    data = found[0]
    sample = sample_case(load_golden(golden_path))
    variants = {}
    for pair, entry in data["variants"].items():
        own = None
        if entry["sample_outputs"]:
            try:
                with np.load(work_dir / entry["sample_outputs"], allow_pickle=False) as archive:
                    own = GoldenCase(sample.label, sample.inputs, {n: archive[n] for n in archive.files})
            except OSError:
                return None  # a sample file went missing: measure again
        streams = Path(entry["streams"]) if entry.get("streams") else None
        if streams is not None and not streams.is_file():
            return None  # a streams file went missing: measure again
        variants[pair] = VariantResult(
            pairs[pair][0],
            _accuracy_of(entry["accuracy"]),
            Timing(**entry["timing"]) if entry["timing"] else None,
            own,
            RUNNERS[entry["engine"]],
            entry["golden_ok"],
            streams,
        )
    return PrecisionResult(
        variants,
        data["measured_at"],
        True,
        op_types,
        runtime,
        runners,
        data["flops"],
        data.get("int8_flops", {}),
    )


def _accuracy_of(entry: dict | None) -> AccuracyResult | None:
    if not entry:
        return None
    return AccuracyResult(**(entry | {"worst_rows": tuple(entry.get("worst_rows", ()))}))


def _same_shapes(group: dict[str, np.ndarray], batch8: dict[str, np.ndarray]) -> bool:
    return all(name in batch8 and array.shape == batch8[name].shape for name, array in group.items())
