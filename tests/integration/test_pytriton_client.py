"""NVIDIA PyTriton's ModelClient (nvidia-pytriton 0.7.0, in its own environment .venv-client) on the zoo's
repository as `make build-repo` publishes it, over gRPC and HTTP, beside tritonclient: it reads every
served model's config (over gRPC it failed with `KeyError: 'count'` on each model with warmup before the
configs carried `count: 1`), and every model answers its golden inputs within the manifest's tolerances."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.integration.conftest import ROOT, ZOO
from tests.integration.pytriton_calls import decode, encode
from triton_repo.clients.wire import as_clients_see_it
from triton_repo.core.compare import compare
from triton_repo.core.golden import load_golden, load_raw_golden, sample_case
from triton_repo.core.spec import Tolerance
from triton_repo.repo.config import parse_config

CLIENT_PYTHON = ROOT / ".venv-client" / "bin" / "python"
CALLS = ROOT / "tests" / "integration" / "pytriton_calls.py"
PROTOCOLS = ("grpc", "http")


def golden_of(repository, model: str, entry: dict):
    """The golden inputs and outputs `triton-repo infer` checks the model with, as clients send them."""
    path = repository / model / entry["golden"]
    kind = entry.get("kind", "model")
    golden = load_raw_golden(path) if kind == "ensemble" else sample_case(load_golden(path))
    return as_clients_see_it(golden, parse_config(repository / model / "config.pbtxt"))


def called(entry: dict) -> bool:
    """Models called with data: those `infer` checks (a pre/post-processing step only through its ensemble)."""
    return (
        "golden" in entry
        and "sequence" not in entry
        and entry.get("kind") not in ("preprocess", "postprocess")
    )


@pytest.fixture(scope="module")
def pytriton_answers(zoo_served, tmp_path_factory) -> dict:
    """(protocol, model) -> what PyTriton's ModelClient got: every served model's config, and the outputs of
    every model with golden data; one run of .venv-client's Python for all of them."""
    if not CLIENT_PYTHON.exists():
        pytest.skip("no client environment with PyTriton (.venv-client): run `make install`")
    manifest = json.loads((zoo_served.repository / "manifest.json").read_text())["models"]
    urls = {
        "grpc": f"grpc://127.0.0.1:{zoo_served.grpc_port}",
        "http": f"http://127.0.0.1:{zoo_served.http_port}",
    }
    inputs = {
        model: {
            name: encode(array)
            for name, array in golden_of(zoo_served.repository, model, entry).inputs.items()
        }
        for model, entry in manifest.items()
        if called(entry)
    }
    calls = [
        {"url": urls[protocol], "model": model, "inputs": inputs.get(model)}
        for protocol in PROTOCOLS
        for model in sorted(manifest)
    ]
    folder = tmp_path_factory.mktemp("pytriton")
    request, answer = folder / "request.json", folder / "answer.json"
    request.write_text(json.dumps({"calls": calls}))
    run = subprocess.run(
        [str(CLIENT_PYTHON), str(CALLS), str(request), str(answer)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, f"{CALLS.name} exited {run.returncode}\n{run.stdout}\n{run.stderr}"
    answers = json.loads(answer.read_text())
    assert answers["versions"]["nvidia-pytriton"] == "0.7.0"
    by_url = {url: protocol for protocol, url in urls.items()}
    return {(by_url[a["url"]], a["model"]): a for a in answers["answers"]}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_pytriton_model_client_reads_the_config_of_every_served_model(pytriton_answers, zoo_served, protocol):
    """Over gRPC the config comes as JSON without its zero values: a warmup without `count` failed it."""
    manifest = json.loads((zoo_served.repository / "manifest.json").read_text())["models"]
    failures = [
        f"{model}: {pytriton_answers[protocol, model]['error']}"
        for model in sorted(manifest)
        if "error" in pytriton_answers[protocol, model]
        and "warmup_counts" not in pytriton_answers[protocol, model]
    ]
    assert failures == [], f"PyTriton's ModelClient over {protocol} could not read:\n" + "\n".join(failures)
    with_warmup = 0
    for model in manifest:
        warmups = parse_config(zoo_served.repository / model / "config.pbtxt").model_warmup
        assert pytriton_answers[protocol, model]["warmup_counts"] == [1] * len(warmups), model
        with_warmup += bool(warmups)
    assert with_warmup >= len(ZOO)  # at least one variant per zoo model runs warmup


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_pytriton_model_client_gets_every_models_golden_outputs(pytriton_answers, zoo_served, protocol):
    """The ensembles from raw data (digits' pixels, minilm's text, mobilenet_v2's image bytes) and every
    variant from its golden sample, compared as `triton-repo infer` compares tritonclient's answers."""
    manifest = json.loads((zoo_served.repository / "manifest.json").read_text())["models"]
    checked, failures = [], []
    for model, entry in sorted(manifest.items()):
        if not called(entry):
            continue
        answer = pytriton_answers[protocol, model]
        if "error" in answer:
            failures.append(f"{model}: {answer['error']}")
            continue
        golden = golden_of(zoo_served.repository, model, entry)
        for name, values in entry["tolerances"].items():
            tolerance = Tolerance(**values)
            actual, expected = decode(answer["outputs"][name]), golden.outputs[name]
            diff = compare(actual, expected, tolerance)
            if actual.shape != expected.shape or not diff.passed:
                failures.append(
                    f"{model}.{name}: shape {list(actual.shape)} vs golden {list(expected.shape)}, max abs "
                    f"{diff.max_abs:.3g}, max rel {diff.max_rel:.3g}, tolerance atol {tolerance.atol} rtol {tolerance.rtol}"
                )
        checked.append(model)
    assert failures == [], f"PyTriton's ModelClient over {protocol}:\n" + "\n".join(failures)
    for name in ZOO:  # each ensemble and the variant it calls
        assert name in checked and manifest[name]["variant"] in checked
