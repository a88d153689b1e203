"""Correctness client: send each model's golden inputs over gRPC and HTTP and check the outputs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from builders.golden import load_golden, sample_case
from builders.verify import compare
from clients.triton_client import TritonClient
from triton_repo.spec import Tolerance


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


def check_model(client: TritonClient, model: str, entry: dict, repository: Path) -> list[InferCheck]:
    """Golden sample in, outputs compared with the manifest's per-output tolerances."""
    golden = sample_case(load_golden(repository / model / entry["golden"]))
    tolerances = {name: Tolerance(**values) for name, values in entry["tolerances"].items()}
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
