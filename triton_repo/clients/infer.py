"""Correctness client: send each model's golden inputs over gRPC and HTTP and check the outputs."""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from triton_repo.clients.triton_client import TritonClient
from triton_repo.clients.wire import as_clients_see_it
from triton_repo.core.compare import compare
from triton_repo.core.fingerprint import sha256_file
from triton_repo.core.golden import load_golden, load_raw_golden, sample_case
from triton_repo.core.spec import Tolerance


@dataclass(frozen=True)
class InferCheck:
    model: str
    protocol: str
    output: str
    max_abs: float
    max_rel: float
    tolerance: Tolerance
    passed: bool
    error: str = ""


CLASS_COUNT = 5


def check_model(client: TritonClient, model: str, entry: dict, repository: Path) -> list[InferCheck]:
    """Golden sample in, outputs compared with the manifest's per-output tolerances.

    An ensemble gets its raw golden inputs (text, image bytes, pixels). Every output with a labels file
    is also asked for its top classes through Triton's classification extension. A pre-processing
    or post-processing step model is checked through its ensemble.
    """
    from triton_repo.repo.config import parse_config

    kind = entry.get("kind", "model")
    if kind in ("preprocess", "postprocess"):
        return []
    tolerances = {name: Tolerance(**values) for name, values in entry["tolerances"].items()}
    if "sequence" in entry:  # a stateful model: its golden streams, chunk by chunk, as sequences
        from triton_repo.clients.sequences import stream_check

        served = _served_outputs(repository / model / "config.pbtxt", tolerances)
        if not client.is_model_ready(model):
            return [_failure(client, model, served, "model is not ready on the server")]
        return [
            InferCheck(
                model,
                client.protocol,
                f"{name} ({label})",
                w.max_abs,
                w.max_rel,
                served[name],
                w.passed,
                w.error,
            )
            for name, label, w in stream_check(client, model, repository, entry, served)
        ]
    path = repository / model / entry["golden"]
    golden = load_raw_golden(path) if kind == "ensemble" else sample_case(load_golden(path))
    golden = as_clients_see_it(golden, parse_config(repository / model / "config.pbtxt"))
    checks = _check_outputs(client, model, golden, tolerances)
    if all(c.passed for c in checks):
        for name, filename in labelled_outputs(entry).items():
            labels = (repository / model / filename).read_text(encoding="utf-8").splitlines()
            checks.append(check_classification(client, model, golden, name, tolerances[name], labels))
    return checks


def _served_outputs(config_path: Path, tolerances: dict[str, Tolerance]) -> dict[str, Tolerance]:
    """The tolerances of the outputs clients receive (a stateful model's next state stays in the server)."""
    from triton_repo.repo.config import parse_config

    returned = {o.name for o in parse_config(config_path).output}
    return {name: t for name, t in tolerances.items() if name in returned}


def labelled_outputs(entry: dict) -> dict[str, str]:
    """Output -> labels file of a manifest entry (older entries name one file, for the first output)."""
    labels = entry.get("labels")
    if isinstance(labels, str):
        return {next(iter(entry["tolerances"])): labels}
    return dict(labels or {})


def check_classification(
    client: TritonClient, model: str, golden, output: str, tolerance: Tolerance, labels: list[str]
) -> InferCheck:
    """class_count=5: every row's 'score:index:label' strings must be the golden top 5, in order."""
    label = f"{output} (class_count={CLASS_COUNT})"
    try:
        result = client.infer(model, golden.inputs, [output], class_count=CLASS_COUNT)[output]
    except Exception as error:  # noqa: BLE001 - a failed request is a failed check
        return InferCheck(
            model, client.protocol, label, float("inf"), float("inf"), tolerance, False, str(error)
        )
    expected = golden.outputs[output]
    worst = 0.0
    for row, entries in enumerate(result.reshape(len(expected), -1)):
        parsed = [v.decode() if isinstance(v, bytes) else str(v) for v in entries]
        fields = [p.split(":", 2) for p in parsed]
        indices = [int(f[1]) for f in fields]
        order = np.argsort(-expected[row], kind="stable")[:CLASS_COUNT]
        scores = expected[row][indices]
        worst = max(worst, float(np.max(np.abs(scores - [float(f[0]) for f in fields]))))
        wrong_label = next((f for f in fields if len(f) < 3 or f[2] != labels[int(f[1])]), None)
        if wrong_label or not np.allclose(
            expected[row][order], scores, atol=tolerance.atol, rtol=tolerance.rtol
        ):
            problem = (
                f"row {row}: got {parsed}, golden top {CLASS_COUNT} {[f'{i}:{labels[i]}' for i in order]}"
            )
            return InferCheck(model, client.protocol, label, worst, float("nan"), tolerance, False, problem)
    return InferCheck(model, client.protocol, label, worst, 0.0, tolerance, True)


def _check_outputs(
    client: TritonClient, model: str, golden, tolerances: dict[str, Tolerance]
) -> list[InferCheck]:
    try:
        if not client.is_model_ready(model):
            return [_failure(client, model, tolerances, "model is not ready on the server")]
        outputs = client.infer(model, golden.inputs, list(tolerances))
    except Exception as error:  # noqa: BLE001 - a failed request is a failed check, reported in the table
        return [
            _failure(client, model, tolerances, str(error).splitlines()[0] if str(error) else repr(error))
        ]
    checks = []
    for name, tolerance in tolerances.items():
        actual = outputs.get(name)
        if actual is None:
            checks.append(
                InferCheck(
                    model,
                    client.protocol,
                    name,
                    float("inf"),
                    float("inf"),
                    tolerance,
                    False,
                    "output missing",
                )
            )
            continue
        diff = compare(actual, golden.outputs[name], tolerance)
        expected_shape = golden.outputs[name].shape
        error = (
            ""
            if actual.shape == expected_shape
            else f"shape {list(actual.shape)} vs golden {list(expected_shape)}"
        )
        checks.append(
            InferCheck(
                model, client.protocol, name, diff.max_abs, diff.max_rel, tolerance, diff.passed, error
            )
        )
    return checks


def _failure(client: TritonClient, model: str, tolerances: dict[str, Tolerance], message: str) -> InferCheck:
    name, tolerance = next(iter(tolerances.items()))
    return InferCheck(model, client.protocol, name, float("inf"), float("inf"), tolerance, False, message)


RESULTS_FILE = "infer.json"


def save_checks(
    work_dir: Path, repository: Path, models: list[str], urls: dict, checks: list[InferCheck]
) -> Path:
    """`<work>/infer.json`: every check, and what they covered (the repository, its manifest's digest, the
    models asked for), so `last_check` can tell whether a later build left the checked repository as it was."""
    results = [
        {
            **{k: v for k, v in vars(c).items() if k != "tolerance"},
            "atol": c.tolerance.atol,
            "rtol": c.tolerance.rtol,
        }
        for c in checks
    ]
    record = {
        "repository": str(repository.resolve()),
        "manifest_sha256": sha256_file(repository / "manifest.json"),
        "checked_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "models": sorted(models),
        "protocols": sorted({c.protocol for c in checks}),
        "passed": all(c.passed for c in checks),
        "urls": urls,
        "checks": results,
    }
    work_dir.mkdir(parents=True, exist_ok=True)
    path = work_dir / RESULTS_FILE
    tmp = path.with_name(RESULTS_FILE + ".tmp")
    tmp.write_text(json.dumps(record, indent=2))
    tmp.replace(path)
    return path


def last_check(work_dir: Path, repository: Path, models: list[str], protocols: list[str]) -> tuple[bool, str]:
    """Whether the last recorded check passed `models` over `protocols` on this repository as it is now
    (same manifest: any published change rewrites it), and one line saying so or why not."""
    path = work_dir / RESULTS_FILE
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return False, f"no check of {repository} on record ({path})"
    if record.get("repository") != str(repository.resolve()) or "manifest_sha256" not in record:
        return False, f"the last check ({path}) was of another repository"
    if record["manifest_sha256"] != sha256_file(repository / "manifest.json"):
        return False, f"{repository} changed since the last check ({record['checked_at']})"
    if not record["passed"]:
        return False, f"the last check of {repository} ({record['checked_at']}) failed"
    missing = sorted(set(models) - set(record["models"])) + sorted(set(protocols) - set(record["protocols"]))
    if missing:
        return False, f"the last check of {repository} did not cover {', '.join(missing)}"
    return True, (
        f"{repository} is unchanged since its last check passed ({len(record['checks'])} checks over "
        f"{' and '.join(record['protocols'])}, {record['checked_at']}, {path}): not checked again"
    )
