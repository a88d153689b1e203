"""The spine end to end: build with the CLI, serve with the real tritonserver, check over gRPC and HTTP."""

from __future__ import annotations

import concurrent.futures
import json
import socket

import numpy as np
import onnxruntime as ort
import pytest

from tests.integration.conftest import REPOSITORY, run_cli, start_server, tree_hash
from triton_repo.clients.triton_client import TritonClient
from triton_repo.core.golden import load_golden, sample_case, save_golden
from triton_repo.serve.server import free_ports

pytestmark = pytest.mark.integration


def test_infer_passes_for_every_model_over_grpc_and_http(tiny_served):
    result = run_cli("infer", *tiny_served.common_args, *tiny_served.port_args)
    assert result.returncode == 0, result.stdout + result.stderr
    checks = json.loads((tiny_served.work_dir / "infer.json").read_text())["checks"]
    assert {(c["protocol"], c["output"]) for c in checks} == {
        ("grpc", "pooled"),
        ("grpc", "scores"),
        ("http", "pooled"),
        ("http", "scores"),
    }
    assert all(c["passed"] and c["max_abs"] <= 1e-5 for c in checks)


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_concurrent_requests_with_different_sequence_lengths_get_their_own_answers(tiny_served, protocol):
    """Dynamic batching may put requests of different seq lengths in one execute(); each must get its own result."""
    onnx_path = tiny_served.repository / "tiny_fp32" / "1" / "model.onnx"
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    port = tiny_served.grpc_port if protocol == "grpc" else tiny_served.http_port
    rng = np.random.default_rng(1)
    requests = [
        {
            "ids": rng.integers(0, 50, size=(batch, seq)).astype(np.int64),
            "features": rng.standard_normal((batch, 4)).astype(np.float32),
        }
        for batch, seq in [(1, 3), (2, 5), (3, 3), (1, 32), (4, 1), (2, 5)] * 4
    ]

    def call(inputs):
        client = TritonClient(protocol, f"127.0.0.1:{port}")
        try:
            return client.infer("tiny_fp32", inputs, ["pooled", "scores"])
        finally:
            client.close()

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(call, requests))
    for inputs, answer in zip(requests, answers, strict=True):
        expected_pooled, expected_scores = session.run(["pooled", "scores"], inputs)
        np.testing.assert_allclose(answer["pooled"], expected_pooled, atol=1e-5, rtol=1e-4)
        np.testing.assert_allclose(answer["scores"], expected_scores, atol=1e-5, rtol=1e-4)


def test_served_config_is_what_the_builder_wrote(tiny_served):
    """The server runs our config as written (auto-complete is disabled): dims, batching, warmup."""
    import tritonclient.http as http

    client = http.InferenceServerClient(f"127.0.0.1:{tiny_served.http_port}")
    config = client.get_model_config("tiny_fp32")
    client.close()
    assert config["max_batch_size"] == 16
    # Triton's JSON renders int64 dims as strings; compare them as integers.
    assert [(i["name"], i["data_type"], [int(d) for d in i["dims"]]) for i in config["input"]] == [
        ("ids", "TYPE_INT64", [-1]),
        ("features", "TYPE_FP32", [4]),
    ]
    assert config["dynamic_batching"]["preferred_batch_size"] == [4, 8]
    assert [w["batch_size"] for w in config["model_warmup"]] == [1, 4]


def test_infer_fails_with_exit_1_when_the_served_outputs_do_not_match(tiny_served, tmp_path):
    """A repository whose golden outputs disagree with the model must fail the check, naming the model."""
    golden_path = tiny_served.repository / "tiny_fp32" / "1" / "golden.npz"
    original = golden_path.read_bytes()
    sample = sample_case(load_golden(golden_path))
    tampered = {name: value + 0.5 for name, value in sample.outputs.items()}
    try:
        save_golden([type(sample)(sample.label, sample.inputs, tampered)], golden_path)
        result = run_cli("infer", *tiny_served.common_args, *tiny_served.port_args, "--protocol", "grpc")
    finally:
        golden_path.write_bytes(original)
    assert result.returncode == 1
    assert "tiny_fp32" in result.stderr and "FAIL" in result.stdout
    assert "max abs diff 0.5" in result.stderr


def test_infer_rejects_an_unknown_model_name(tiny_served):
    result = run_cli("infer", *tiny_served.common_args, *tiny_served.port_args, "--model", "nope_fp32")
    assert result.returncode == 2
    assert "nope_fp32" in result.stderr and "tiny_fp32" in result.stderr


def test_serve_refuses_a_second_server_on_the_same_work_dir(tiny_served):
    result = run_cli("serve", *tiny_served.common_args, "--detach")
    assert result.returncode == 2
    assert "already running" in result.stderr


def test_serve_names_a_busy_port(tiny_served, tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        busy = holder.getsockname()[1]
        result = run_cli(
            "serve",
            "--repository",
            str(tiny_served.repository),
            "--work-dir",
            str(tmp_path),
            "--http-port",
            str(busy),
            "--detach",
        )
    assert result.returncode == 2
    assert f"port {busy} (http)" in result.stderr and "--http-port" in result.stderr


def test_serve_reports_a_model_that_fails_to_load_with_the_log_tail(tiny_served, tmp_path):
    broken = tmp_path / "repo"
    import shutil

    shutil.copytree(tiny_served.repository / "tiny_fp32", broken / "tiny_fp32")
    (broken / "tiny_fp32" / "1" / "model.onnx").write_bytes(b"this is not an onnx file")
    result, _ = start_server(broken, tmp_path / "w", check=False)
    assert result.returncode == 2, result.stderr
    assert "before it was ready" in result.stderr
    assert "tiny_fp32" in result.stderr  # the log tail names the model that failed


def test_stop_without_a_running_server_is_harmless(tmp_path):
    result = run_cli("stop", "--work-dir", str(tmp_path))
    assert result.returncode == 0
    assert "no server" in result.stderr


def test_a_zoo_model_rebuilt_with_nothing_changed_publishes_nothing_while_served(zoo_served):
    """`make build-repo` again on the served zoo (the default work dir keeps the first build's stages):
    every stage is reused and the repository is left as it was. The zoo's served answers are checked by
    `infer` in test_ensembles."""
    before = tree_hash(REPOSITORY)
    rebuild = run_cli("build", "models/digits")  # as `make build-repo` names it: its defaults, from the root
    assert rebuild.returncode == 0, rebuild.stdout + rebuild.stderr
    assert "cached" in rebuild.stdout and "unchanged" in rebuild.stdout
    assert tree_hash(REPOSITORY) == before  # a rebuild with nothing changed publishes nothing


def test_serve_refuses_a_repository_file_changed_after_publishing(tiny_served, tmp_path):
    import shutil

    copy = tmp_path / "repo"
    shutil.copytree(tiny_served.repository, copy)
    edited = copy / "tiny_fp32" / "1" / "model.py"
    edited.write_text(edited.read_text() + "\n# edited by hand\n")
    before = tree_hash(copy)
    result, _ = start_server(copy, tmp_path / "w", check=False)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"{edited} was modified after it was published" in result.stderr
    assert "starting tritonserver" not in result.stderr  # refused before anything was loaded
    assert tree_hash(copy) == before


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_client_fails_at_once_on_not_found_and_invalid_argument_with_the_servers_message(
    tiny_served, protocol
):
    port = tiny_served.grpc_port if protocol == "grpc" else tiny_served.http_port
    client = TritonClient(protocol, f"127.0.0.1:{port}", timeout_s=10)
    good = {"ids": np.zeros((1, 3), dtype=np.int64), "features": np.zeros((1, 4), dtype=np.float32)}
    with pytest.raises(Exception, match="unknown model"):
        client.infer("no_such_model", good, ["pooled"])
    bad = {**good, "features": np.zeros((1, 5), dtype=np.float32)}  # dims [4] in the config
    with pytest.raises(Exception, match="features"):
        client.infer("tiny_fp32", bad, ["pooled"])
    assert client.retries == 0
    assert client.infer("tiny_fp32", good, ["pooled"])["pooled"].shape == (1, 8)
    client.close()


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_client_retries_an_unreachable_server_a_bounded_number_of_times(protocol):
    from triton_repo.clients.triton_client import RetryPolicy
    from triton_repo.core.errors import ServerError

    (port,) = free_ports(1)
    policy = RetryPolicy(attempts=3, first_delay_s=0.01, max_delay_s=0.02)
    client = TritonClient(protocol, f"127.0.0.1:{port}", timeout_s=5, retry=policy)
    with pytest.raises(ServerError, match=f"cannot reach Triton at 127.0.0.1:{port}"):
        client.is_model_ready("tiny_fp32")
    assert client.retries == 2
