"""BUILD_REPORT.md and BUILD_REPORT.json in the repository: per model and variant what was measured and decided."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict
from pathlib import Path

from triton_repo.builders.precision.kinds import BY_NAME, REFERENCE, split_pair
from triton_repo.builders.precision.pairs import Choice
from triton_repo.builders.precision.qad import load_stats
from triton_repo.builders.precision.real_shapes import SAME_AS_OPT, not_timed, real_shapes_note, real_speed
from triton_repo.builders.precision.results import PrecisionResult, VariantResult
from triton_repo.builders.precision.timing import NOISE_FLOOR
from triton_repo.core.log import diagnostic
from triton_repo.core.spec import LoadedSpec
from triton_repo.repo.repository import REPORT_MD, Repository, as_repository
from triton_repo.runtimes.cpu import UNKNOWN_CPU, cpu_facts

REPORT_JSON = "BUILD_REPORT.json"


def arithmetic(variant: VariantResult) -> str:
    """The arithmetic a pair's matrix work runs in: int8, bf16 or f32 (what the roofline compares with)."""
    made, runner = BY_NAME[variant.artifact.kind], variant.runner
    if made.precision == "int8":
        return "int8"
    if made.precision == "bf16" or runner.precision == "bf16":
        return "bf16"
    return "f32"  # ONNX Runtime computes an FP16 graph's matrix work in FP32 on the CPU


def not_published(choice: Choice, variant: VariantResult) -> str:
    """Why a variant the spec does not list is measured but not published (no faster than the served
    FP32), what its pair computes in, and how to publish it anyway."""
    kind = BY_NAME[split_pair(choice.pair)[0]]
    computes = {"int8": "INT8", "bf16": "BF16", "f32": "FP32"}[arithmetic(variant)]
    data = (kind.low or kind.precision).upper()
    what = f"computes in {computes}" + (f" with {data} data" if data != computes else "")
    return (
        f"{choice.versus_fp32:.2f}x the served FP32, noise {choice.noise:.0%} ({choice.pair} {what}); "
        f"list {choice.precision} in precision.variants to publish it anyway"
    )


def model_report(loaded: LoadedSpec, result: PrecisionResult, target, choices: dict[str, Choice]) -> dict:
    """One model's section: a row per (artifact, runtime) pair, whether (and as what) it is served on
    `target` (a builders.targets.Target)."""
    spec = loaded.spec
    suffix = target.report_suffix
    chosen = {c.pair: precision for precision, c in choices.items() if c.pair and c.published}
    unpublished = {c.pair: c for c in choices.values() if c.pair and not c.published}
    candidates = target.candidates
    candidate_of = {pair: precision for precision in choices for pair in candidates[precision]}
    reference = result.variants[REFERENCE].timing
    facts = diagnostic(f"{spec.name}: instruction-set report", cpu_facts, default=UNKNOWN_CPU)
    rows = []
    for pair, variant in result.variants.items():
        kind, runner = split_pair(pair)
        precision = chosen.get(pair) or candidate_of.get(pair)
        accuracy = variant.accuracy
        built = kind == REFERENCE or bool(variant.artifact.key)  # a stand-in for a failed build has no key
        if pair in chosen:
            status = "published"
        elif pair in unpublished:
            status = "measured, not published: " + not_published(unpublished[pair], variant)
        elif precision is None:
            status = f"not served on the {target.name} target"
        elif accuracy is not None and accuracy.failure:
            status = "refused: " + ("the runtime could not run it" if built else "its quantizer failed")
        elif not variant.servable:
            status = "refused: outside budget"
        else:
            served = choices[precision].pair
            faster = result.variants[served].timing.throughput_b8 >= variant.timing.throughput_b8
            status = f"measured: within budget, {served} " + (
                "is faster" if faster else "chosen (this one is faster within the noise)"
            )
        timing = variant.timing
        kept_by_rule = sorted(
            node for node, op in result.op_types.items() if op in variant.artifact.kept_op_types
        )
        qad = None
        if BY_NAME[kind].qad_high and built:
            qad = diagnostic(
                f"{spec.name}: {kind} QAD statistics", lambda v=variant: load_stats(v.artifact.path), None
            )
        role = BY_NAME[kind].qad_role if qad and BY_NAME[kind].qad_role else BY_NAME[kind].role
        flops = result.flops.get(str(timing.batch)) if timing else None
        achieved = flops * timing.throughput_b8 / timing.batch / 1e9 if timing and flops else None
        peak, peak_how = (None, "")
        if timing:
            peak, peak_how = diagnostic(
                f"{spec.name}: roofline peak of {pair}",
                lambda v=variant, t=timing: facts.peak_gflops(arithmetic(v), t.threads),
                default=(None, ""),
            )
        rows.append(
            {
                "artifact": kind,
                "runtime": runner,
                "runtime_label": result.runners.get(runner, result.runtime),
                "role": role,
                "file": variant.artifact.path.name,
                "triton_model": f"{spec.name}_{precision}{suffix}" if pair in chosen else None,
                "candidate_for": precision,
                "status": status,
                "within_budget": variant.servable if precision else variant.passed,
                "verdict": variant.verdict,
                "accuracy": asdict(accuracy) if accuracy else None,
                "size_mb": round(variant.artifact.path.stat().st_size / 1e6, 2) if built else None,
                "latency_ms_batch1": round(timing.latency_ms_b1, 3) if timing else None,
                "throughput_batch": timing.batch if timing else None,
                "throughput_per_s": round(timing.throughput_b8, 1) if timing else None,
                "throughput_noise": round(timing.noise, 4) if timing else None,
                "speedup_vs_fp32": round(timing.throughput_b8 / reference.throughput_b8, 2)
                if timing
                else None,
                **real_speed(timing, reference, not_timed(spec) == SAME_AS_OPT),
                "gflops": float(f"{achieved:.3g}") if achieved else None,
                "peak_gflops": round(peak, 1) if peak else None,
                "peak_estimate": peak_how,
                "kept_nodes": list(variant.artifact.kept),
                "kept_op_types": [result.op_types.get(node, "?") for node in variant.artifact.kept],
                "rule_kept_nodes": kept_by_rule,
                "rule_kept_op_types": [result.op_types[node] for node in kept_by_rule],
                "rule": variant.artifact.kept_because,
                "int8_matrix_flops": round(result.int8_flops[kind], 4) if kind in result.int8_flops else None,
                "qad": asdict(qad) if qad else None,
            }
        )
    return {
        "spec": str(loaded.path),
        "target": target.name,
        "metric": spec.accuracy.metric if spec.accuracy else None,
        "budget": spec.accuracy.effective_budget if spec.accuracy else None,
        "budget_rule": spec.accuracy.describe_budget() if spec.accuracy else None,
        "higher_is_better": spec.accuracy.higher_is_better if spec.accuracy else True,
        "threads": reference.threads,
        "speed_rounds": reference.rounds,
        "noise_floor": NOISE_FLOOR,  # a throughput difference within max(each pair's noise, this) is a tie
        "speed_real_shapes": real_shapes_note(spec, reference),
        "runtime": result.runtime,
        "engines": result.runners,
        "cpu": {
            "model": facts.model,
            "vendor": facts.vendor,
            "mhz": facts.mhz,
            "instruction_sets": list(facts.flags),
        },
        "choices": {p: _choice_entry(c, result) for p, c in choices.items()},
        "measured_at": result.measured_at,
        "variants": rows,
    }


def _choice_entry(choice: Choice, result: PrecisionResult) -> dict:
    if choice.published:
        return {"pair": choice.pair, "why": choice.why, "published": True}
    why = f"not published: {not_published(choice, result.variants[choice.pair])}; {choice.why}"
    return {"pair": choice.pair, "why": why, "published": False}


def read_report(repository: Repository | Path) -> dict:
    """The repository's BUILD_REPORT.json as the last build left it ({} when none, or damaged): what
    it chose, so this build keeps what is within the noise. (A Path: that local folder's.)"""
    return _parsed(as_repository(repository).read_file(REPORT_JSON))


def _parsed(raw: bytes | None) -> dict:
    try:
        return json.loads(raw) if raw else {}
    except ValueError:  # not JSON, or not text: a damaged report is rewritten from scratch
        return {}


def served_before(report: dict, name: str, target: str) -> tuple[dict[str, str], str | None]:
    """What the last build on `target` chose for model `name`: each precision's pair, and the variant
    its ensemble called."""
    model = report.get("models", {}).get(name)
    if not model or model.get("target") != target:
        return {}, None
    pairs = {p: c["pair"] for p, c in model.get("choices", {}).items() if c.get("pair")}
    return pairs, (model.get("ensemble") or {}).get("variant")


def write_report(repository: Repository, models: dict[str, dict]) -> None:
    """Merge these models into the repository's report (other models' sections, of this or another
    builder, are kept) and write BUILD_REPORT.json and BUILD_REPORT.md at its root; the read and the
    write are one step against other publishers (Repository.update_files)."""

    def merged(raw: bytes | None) -> dict[str, bytes]:
        report = _parsed(raw) or {"format": 1, "models": {}}
        report["models"].update(models)
        report["models"] = dict(sorted(report["models"].items()))
        markdown = diagnostic(f"{REPORT_MD} tables", lambda: render_markdown(report), default=None)
        if markdown is None:
            markdown = (
                f"# Build report\n\nThis report could not be rendered; {REPORT_JSON} holds every number.\n"
            )
        return {REPORT_JSON: (json.dumps(report, indent=2) + "\n").encode(), REPORT_MD: markdown.encode()}

    repository.update_files(REPORT_JSON, merged)


def render_markdown(report: dict) -> str:
    lines = [
        "# Build report",
        "",
        "Every (artifact, runtime) pair is measured against FP32 (ONNX Runtime) on the model's eval set with the",
        "spec's metric; one outside its budget, or that the runtime crashed or failed on, is not published. Each",
        "runs in a worker process of the serving environment (ONNX Runtime's CPU execution provider, or OpenVINO",
        "at f32 or bf16 inference precision). Speed is in-process, every pair of a model timed in one interleaved",
        "run: median latency at batch 1, throughput at batch 8 (other axes at their opt size), and the matrix",
        "work's GFLOP/s against this CPU's estimated peak for the pair's arithmetic. A model with a dynamic axis",
        "besides batch is also timed, in the same run, at real shapes: batches of 8 eval rows each cut to its",
        "longest row (`real inf/s`, and `x FP32 real` against FP32 on ONNX Runtime at those shapes). A served",
        "variant is the fastest of its candidate pairs within budget. Generated by `triton-repo build`; do not edit.",
        "",
    ]
    for name, model in report["models"].items():
        cpu = model.get("cpu", {})
        lines += [
            f"## {name}",
            "",
            f"Metric `{model['metric']}`, budget {model.get('budget_rule') or model['budget']}; {model['threads']} threads; "
            f"{', '.join(model.get('engines', {}).values()) or model.get('runtime', '')}; "
            f"measured {model['measured_at']} on {cpu.get('model', 'this CPU')} "
            f"({', '.join(cpu.get('instruction_sets', [])) or 'no matrix extensions found'}).",
            "",
        ]
        real = any(row.get("real_shapes") for row in model["variants"])
        if model.get("speed_real_shapes"):
            lines += [f"Speed at real shapes: {model['speed_real_shapes']}.", ""]
        lines += [
            "| artifact | runtime | Triton model | accuracy vs FP32 | max abs diff | MB | batch 1 ms | batch 8 inf/s "
            "| x FP32 | " + ("real inf/s | x FP32 real | " if real else "") + "GFLOP/s (% of est. peak) "
            "| kept nodes | status |",
            "|---|---|---|---|---|---|---|---|---|" + ("---|---|" if real else "") + "---|---|---|",
        ]
        for row in model["variants"]:
            max_abs = max(row["accuracy"]["max_abs"].values(), default=0.0) if row["accuracy"] else 0.0
            latency, rate = row["latency_ms_batch1"], row["throughput_per_s"]
            kept = len(row["kept_nodes"]) + len(row.get("rule_kept_nodes", []))
            gflops, peak = row.get("gflops"), row.get("peak_gflops")
            roofline = f"{gflops:.0f} ({100 * gflops / peak:.0f}%)" if gflops and peak else "—"
            lines.append(
                f"| {row['artifact']} | {row.get('runtime', 'ort')} | {row['triton_model'] or '—'} | "
                f"{row['verdict']} | {max_abs:.3g} | {_number(row['size_mb'], '.1f')} | {_number(latency, '.2f')} | "
                f"{_number(rate, '.0f')} | {_number(row.get('speedup_vs_fp32'), '.2f')} | "
                + (_real_cells(row) if real else "")
                + f"{roofline} | {kept} | {row['status']} |"
            )
        lines += _choice_lines(model)
        lines += _labelled_lines(model)
        lines += _details_lines(model)
        lines += _int8_lines(model)
        lines += _kept_lines(model)
        if model.get("ensemble"):
            ensemble = model["ensemble"]
            after = f", then `{ensemble['postprocess']}`" if ensemble.get("postprocess") else ""
            steps = (
                f"served as one model: pre-processing and `{ensemble['variant']}`'s ONNX file in one process"
                if ensemble.get("form") == "fused"
                else f"`{name}_preprocess`, then `{ensemble['variant']}`{after}"
            )
            lines += ["", f"Ensemble `{ensemble['triton_model']}` (raw input, {steps}): {ensemble['why']}."]
        lines.append("")
    return "\n".join(lines)


def _real_cells(row: dict) -> str:
    """The row's real-shape throughput and its ratio to FP32 at real shapes, as two table cells."""
    rate, ratio = row.get("throughput_real_per_s"), row.get("speedup_real_vs_fp32")
    return f"{_number(rate, '.0f')} | {_number(ratio, '.2f')} | "


def _labelled_lines(model: dict) -> list[str]:
    """Top-1 against the true classes of the labelled eval rows, FP32 beside each pair (when labels exist)."""
    measured = [
        (row, row["accuracy"]["details"])
        for row in model["variants"]
        if row["accuracy"] and "top1_variant" in row["accuracy"]["details"]
    ]
    if not measured:
        return []
    details = measured[0][1]
    pairs = ", ".join(
        f"{row['artifact']}@{row.get('runtime', 'ort')} {100 * d['top1_variant']:.1f}% "
        f"(agrees with FP32 on {100 * d['top1_agreement']:.1f}% of all eval rows)"
        for row, d in measured
    )
    return [
        "",
        f"Top-1 against the true class on the {int(details['labelled_rows'])} labelled eval rows: "
        f"FP32 {100 * details['top1_fp32']:.1f}%; {pairs}.",
    ]


def _details_lines(model: dict) -> list[str]:
    """What each pair's metric shows beside its value (precision and recall of detections, neighbours
    found from FP32's index, the largest value error, ...), for every pair measured."""
    shown = [
        (row, {k: v for k, v in row["accuracy"]["details"].items() if k not in _LABELLED})
        for row in model["variants"]
        if row["accuracy"] and row["accuracy"].get("details") and not row["accuracy"].get("failure")
    ]
    shown = [(row, details) for row, details in shown if details]
    if not shown:
        return []
    lines = ["", "Beside the gated value (the same eval rows):", ""]
    for row, details in shown:
        worst = row["accuracy"].get("worst_rows") or []
        listed = ", ".join(f"{k.replace('_', ' ')} {_short(v)}" for k, v in details.items())
        lines.append(
            f"- {row['artifact']}@{row.get('runtime', 'ort')}: {listed}"
            + (f"; farthest rows {', '.join(map(str, worst[:5]))}" if worst else "")
        )
    return lines


_LABELLED = {"top1_fp32", "top1_variant", "labelled_rows"}


def _short(value: float) -> str:
    return f"{value:.0f}" if float(value).is_integer() and abs(value) >= 1 else f"{value:.4g}"


def _choice_lines(model: dict) -> list[str]:
    """Which pair each served variant is, why, and how the roofline's peak was estimated."""
    lines = ["", "Served variants (the fastest candidate pair within budget):", ""]
    for precision, choice in model.get("choices", {}).items():
        lines.append(
            f"- {precision}: {choice['pair'] or 'none'}{' — ' + choice['why'] if choice['why'] else ''}"
        )
    estimates = sorted({row["peak_estimate"] for row in model["variants"] if row.get("peak_estimate")})
    if estimates:
        lines += [
            "",
            "Estimated peaks: " + "; ".join(estimates) + " (the clock /proc/cpuinfo reports; cores that run "
            "faster under load show more than 100%).",
        ]
    return lines


def _int8_lines(model: dict) -> list[str]:
    """How much of each INT8 artifact's matrix work is INT8, and how a distilled one was trained."""
    lines = []
    seen = set()
    for row in model["variants"]:
        share = row.get("int8_matrix_flops")
        if share is None or row["artifact"] in seen:
            continue
        seen.add(row["artifact"])
        line = f"- {row['artifact']}: {100 * share:.0f}% of the matrix FLOPs (batch 8) in INT8"
        qad = row.get("qad")
        if qad:
            loss = ""
            if qad["first_loss"] is not None and qad["last_loss"] is not None:
                loss = f", {qad['loss']} loss {qad['first_loss']:.4g} -> {qad['last_loss']:.4g}"
            line += (
                f"; distilled (QAD) {qad['steps']} steps in {qad['seconds'] / 60:.1f} min{loss}, "
                f"{qad['quantized_modules']} modules quantized, {len(qad['kept_modules'])} kept"
                + (f" ({qad['stopped']})" if qad["stopped"] else "")
            )
        lines.append(line)
    return ["", "INT8 artifacts:", "", *lines] if lines else []


def _kept_lines(model: dict, listed: int = 8) -> list[str]:
    """Nodes kept in higher precision: listed when few, else counted by op type (the JSON has them all)."""
    lines = []
    ruled = [row for row in model["variants"] if row.get("rule_kept_nodes")]
    if ruled:
        lines += ["", "Nodes kept in FP32 by rule, whatever precision.yaml says:", ""]
        for row in ruled:
            lines.append(
                f"- {row['artifact']}: {len(row['rule_kept_nodes'])} nodes "
                f"({_by_op(row['rule_kept_op_types'])}): {row['rule']}"
            )
    rows = [row for row in model["variants"] if row["kept_nodes"]]
    if not rows:
        return lines
    lines += ["", "Nodes kept in higher precision (from precision.yaml):", ""]
    for row in rows:
        nodes = row["kept_nodes"]
        if len(nodes) <= listed:
            lines += [f"- {row['artifact']}: `{node}`" for node in nodes]
        else:
            lines.append(
                f"- {row['artifact']}: {len(nodes)} nodes ({_by_op(row['kept_op_types'])}); "
                f"all of them in {REPORT_JSON} and the model's precision.yaml"
            )
    return lines


def _number(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def _by_op(op_types: list[str]) -> str:
    return ", ".join(f"{count} {op}" for op, count in Counter(op_types).most_common())
