"""Publishing into a running server: new versions under load, a bad version refused, rollback, no-op builds."""

from __future__ import annotations

import json
import shutil
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from tests.integration.conftest import TINY_SPEC, build, run_cli, serve, tree_hash, write_tiny_model
from triton_repo.core.errors import ServerError
from triton_repo.core.golden import load_golden, sample_case
from triton_repo.repo.publish import publish, read_manifest
from triton_repo.repo.writer import VERSION, StagedModel, file_hashes, staging_root
from triton_repo.serve.model_control import ModelControl

pytestmark = pytest.mark.integration

MODEL = "tiny_fp32"
OUTPUTS = ("pooled", "scores")


# The tiny model as an ONNX file (Gather, ReduceMean, Gemm, ReduceSum): the same tensors as the PyTorch
# tiny model, but its builds import no torch, so 20 of them fit under load in a short test. Exporting
# from PyTorch is tested elsewhere; publishing is tested here.
TINY_ONNX_SPEC = TINY_SPEC.replace('source: {factory: "model:build"}', "source: {onnx: model.onnx}")
TINY_ONNX_SAMPLE = """
import numpy as np


def sample():
    rng = np.random.default_rng(0)
    return {
        "ids": rng.integers(0, 50, size=(4, 6)).astype(np.int64),
        "features": rng.standard_normal((4, 4)).astype(np.float32),
    }
"""


def reseed(folder, seed: int) -> None:
    """New weights for the tiny model: its next build is a new version."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    weights = {
        "embed": rng.standard_normal((50, 8)).astype(np.float32),
        "head_w": rng.standard_normal((8, 4)).astype(np.float32) * 0.5,
        "head_b": rng.standard_normal(8).astype(np.float32) * 0.1,
        "axis2": np.array([2], dtype=np.int64),
    }
    nodes = [
        helper.make_node("Gather", ["embed", "ids"], ["tokens"]),
        helper.make_node("ReduceMean", ["tokens"], ["mean"], axes=[1], keepdims=0),
        helper.make_node("Gemm", ["features", "head_w", "head_b"], ["head"], transB=1),
        helper.make_node("Add", ["mean", "head"], ["pooled"]),
        helper.make_node("ReduceSum", ["tokens", "axis2"], ["scores"], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [
            helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 4]),
        ],
        [
            helper.make_tensor_value_info("pooled", TensorProto.FLOAT, ["batch", 8]),
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", "seq"]),
        ],
        [numpy_helper.from_array(array, name) for name, array in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(folder / "model.onnx"))


def write_tiny_onnx_model(models_dir, seed: int = 0):
    """The tiny model as an ONNX source with the weights of `seed`."""
    folder = write_tiny_model(models_dir, model_py=TINY_ONNX_SAMPLE, spec=TINY_ONNX_SPEC)
    reseed(folder, seed)
    return folder


@pytest.fixture
def live(tmp_path):
    """The tiny model built and served; its folder, the server, and the golden outputs per version."""
    models = tmp_path / "models"
    folder = write_tiny_onnx_model(models)
    repository, work_dir = tmp_path / "model_repository", tmp_path / "build"
    build(folder, repository, work_dir)
    served = serve(repository, work_dir)
    yield folder, served
    run_cli("stop", "--work-dir", str(work_dir))


def golden_of(repository, version: int):
    return sample_case(load_golden(repository / MODEL / str(version) / "golden.npz"))


def served_versions(served) -> dict[str, str]:
    client = httpclient.InferenceServerClient(f"127.0.0.1:{served.http_port}")
    try:
        return {m["version"]: m["state"] for m in client.get_model_repository_index() if m["name"] == MODEL}
    finally:
        client.close()


@dataclass
class Answer:
    sent: float
    received: float
    version: int | None  # None: the request failed
    outputs: dict = field(default_factory=dict)
    error: str = ""


class Load:
    """Clients sending the golden sample in a loop, half over gRPC and half over HTTP, recording each answer."""

    def __init__(self, served, inputs: dict[str, np.ndarray], clients: int) -> None:
        self.served, self.inputs = served, inputs
        self.answers: list[list[Answer]] = [[] for _ in range(clients)]
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(clients)]

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        time.sleep(0.5)
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=30)

    def _run(self, index: int) -> None:
        module, port = (
            (grpcclient, self.served.grpc_port) if index % 2 == 0 else (httpclient, self.served.http_port)
        )
        if module is grpcclient:
            client, timeout = module.InferenceServerClient(f"127.0.0.1:{port}"), {"client_timeout": 30}
        else:
            client, timeout = module.InferenceServerClient(f"127.0.0.1:{port}", network_timeout=30), {}
        requested = [module.InferRequestedOutput(name) for name in OUTPUTS]
        inputs = []
        for name, array in self.inputs.items():
            tensor = module.InferInput(
                name, list(array.shape), "INT64" if array.dtype == np.int64 else "FP32"
            )
            tensor.set_data_from_numpy(array)
            inputs.append(tensor)
        while not self.stop.is_set():
            sent = time.monotonic()
            try:
                result = client.infer(MODEL, inputs, outputs=requested, **timeout)
            except Exception as error:  # every failure is recorded; the test asserts there are none
                self.answers[index].append(Answer(sent, time.monotonic(), None, error=str(error)))
                time.sleep(0.01)
                continue
            response = result.get_response()
            version = response.model_version if module is grpcclient else response["model_version"]
            outputs = {name: result.as_numpy(name) for name in OUTPUTS}
            self.answers[index].append(Answer(sent, time.monotonic(), int(version), outputs))
            # Each client paces itself (20 ms between requests: 32 clients send about 1,000 requests/s
            # in all, 197,000 over 20 publishes), so every version switch has requests in flight
            # and the builds still get CPU time.
            time.sleep(0.02)
        client.close()

    @property
    def all(self) -> list[Answer]:
        return [answer for answers in self.answers for answer in answers]


PUBLISHES = 8  # each a build of the live model, loaded while 32 clients send requests (12 took 48 s)


def test_8_publishes_under_32_concurrent_clients_fail_no_request(live):
    folder, served = live
    repository = served.repository
    goldens = {1: golden_of(repository, 1)}
    published: list[tuple[float, float, int]] = []  # (build started, build returned, version)
    with Load(served, goldens[1].inputs, clients=32) as load:
        for cycle in range(1, PUBLISHES + 1):
            started = time.monotonic()
            reseed(folder, cycle)
            result = build(folder, repository, served.work_dir)
            version = read_manifest(repository)["models"][MODEL]["version"]
            assert "loaded by the running server" in result.stderr
            published.append((started, time.monotonic(), version))
            goldens[version] = golden_of(repository, version)
            time.sleep(0.3)  # let every client see the new version before the next publish
    answers = load.all
    failures = [a.error for a in answers if a.version is None]
    assert failures == [], f"{len(failures)} of {len(answers)} requests failed: {failures[:3]}"
    versions = [v for _, _, v in published]
    assert versions == list(range(2, PUBLISHES + 2))
    for answer in answers:
        # Never an older version once the newer one was READY (the build returned), never a version
        # that was not yet being published, and the outputs are that version's golden outputs.
        ready = max([1] + [v for _, done, v in published if done < answer.sent])
        started = max([1] + [v for begun, _, v in published if begun < answer.received])
        assert ready <= answer.version <= started, (answer.sent, answer.version, published)
        for name in OUTPUTS:
            np.testing.assert_allclose(answer.outputs[name], goldens[answer.version].outputs[name], atol=1e-5)
    for answers_of_one in load.answers:
        seen = [a.version for a in answers_of_one]
        assert seen == sorted(seen)  # each client only ever moves forward
    assert {a.version for a in answers} == set(range(1, PUBLISHES + 2))  # every version served some requests
    print(f"\n{len(answers)} requests over {PUBLISHES} publishes (versions 2-{PUBLISHES + 1}), 0 failed")


def staged_copy(repository, staging, broken: str) -> StagedModel:
    """The published model as a new staged version, broken on purpose: a model.py that raises, or an
    ONNX file that is not ONNX. Staged files pass the publish path's own checks; only the server's
    load can find the problem."""
    entry = read_manifest(repository)["models"][MODEL]
    target = staging / MODEL
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(repository / MODEL, target, ignore=shutil.ignore_patterns("__pycache__"))
    for version in entry["versions"][:-1]:
        shutil.rmtree(target / str(version))
    (target / str(entry["version"])).rename(target / VERSION)
    if broken == "model.py raises":
        (target / VERSION / "model.py").write_text(
            "class TritonPythonModel:\n    def initialize(self, args):\n"
            "        raise RuntimeError('this version is broken on purpose')\n"
        )
    else:
        (target / VERSION / "model.onnx").write_bytes(b"this is not an ONNX file")
    manifest_entry = {**entry, "golden": f"{VERSION}/golden.npz", "files": file_hashes(target)}
    return StagedModel(MODEL, "tiny", "fp32", target, manifest_entry)


@pytest.mark.parametrize(
    ("broken", "reason"),
    [("model.py raises", "this version is broken on purpose"), ("corrupt ONNX", "onnx")],
)
def test_a_version_that_fails_to_load_is_taken_back_and_the_old_one_keeps_serving(live, broken, reason):
    folder, served = live
    repository = served.repository
    golden = golden_of(repository, 1)
    before = tree_hash(repository)
    staging = staging_root(repository)
    staging.mkdir(exist_ok=True)
    control = ModelControl(f"http://127.0.0.1:{served.http_port}")
    with Load(served, golden.inputs, clients=8) as load:
        with pytest.raises(ServerError) as error:
            publish([staged_copy(repository, staging, broken)], repository, {}, control=control)
        time.sleep(0.5)
    shutil.rmtree(staging)
    message = str(error.value)
    assert f"could not load '{MODEL}'" in message and reason.lower() in message.lower(), message
    assert "\n" not in message
    assert tree_hash(repository) == before  # the bad version was taken out again; manifest untouched
    answers = load.all
    assert answers and [a.error for a in answers if a.version is None] == []
    assert {a.version for a in answers} == {1}
    assert served_versions(served).get("1") == "READY"
    result = run_cli("infer", *served.common_args, *served.port_args)
    assert result.returncode == 0, result.stdout + result.stderr


def test_rollback_returns_the_server_to_the_previous_version(live):
    folder, served = live
    repository = served.repository
    reseed(folder, 5)
    build(folder, repository, served.work_dir)
    assert served_versions(served) == {"1": "READY", "2": "READY"}
    with Load(served, golden_of(repository, 1).inputs, clients=4) as load:
        time.sleep(0.5)
        asked = time.monotonic()
        result = run_cli("rollback", MODEL, *served.common_args)
        rolled_back = time.monotonic()
        time.sleep(1.0)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "version 2 removed; version 1 now served" in result.stderr
    answers = load.all
    assert [a.error for a in answers if a.version is None] == []
    assert {a.version for a in answers if a.received < asked} == {2}
    assert {a.version for a in answers if a.sent > rolled_back} == {1}
    assert served_versions(served).get("1") == "READY" and served_versions(served).get("2") != "READY"
    assert read_manifest(repository)["models"][MODEL]["versions"] == [1]
    assert run_cli("infer", *served.common_args, *served.port_args).returncode == 0
    again = run_cli("rollback", MODEL, *served.common_args)
    assert again.returncode == 2 and "only version 1 is in" in again.stderr


def test_a_build_with_nothing_changed_publishes_and_loads_nothing(live):
    folder, served = live
    repository = served.repository
    before = tree_hash(repository)
    log = (served.work_dir / "server" / "tritonserver.log").read_text()
    result = build(folder, repository, served.work_dir)
    assert "nothing changed: nothing published" in result.stderr
    assert tree_hash(repository) == before
    assert (served.work_dir / "server" / "tritonserver.log").read_text().count(
        "successfully loaded"
    ) == log.count("successfully loaded")
    manifest = json.loads((repository / "manifest.json").read_text())
    assert manifest["models"][MODEL]["versions"] == [1]


def served_config(served) -> dict:
    client = httpclient.InferenceServerClient(f"127.0.0.1:{served.http_port}")
    try:
        return client.get_model_config(MODEL)
    finally:
        client.close()


def test_rollback_after_a_config_change_restores_the_old_config_and_versions_under_load(live):
    """v1 and v2 under one config; a config change publishes v3 alone (Triton serves every version with
    one config); rollback restores the old config with v1 and v2, under load, without a failed request."""
    folder, served = live
    repository = served.repository
    reseed(folder, 5)
    build(folder, repository, served.work_dir)
    spec = folder / "model.yaml"
    spec.write_text(
        spec.read_text().replace("max_queue_delay_microseconds: 2000", "max_queue_delay_microseconds: 500")
    )
    changed = build(folder, repository, served.work_dir)
    assert "published tiny_fp32 version 3" in changed.stderr
    assert read_manifest(repository)["models"][MODEL]["versions"] == [3]
    assert served_config(served)["dynamic_batching"]["max_queue_delay_microseconds"] == 500
    goldens = {3: golden_of(repository, 3)}
    with Load(served, goldens[3].inputs, clients=8) as load:
        time.sleep(0.5)
        asked = time.monotonic()
        result = run_cli("rollback", MODEL, *served.common_args)
        rolled_back = time.monotonic()
        time.sleep(1.0)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "version 3 removed; version 2 now served" in result.stderr
    answers = load.all
    failed = [a.error for a in answers if a.version is None]
    assert failed == [], f"{len(failed)} of {len(answers)} requests failed: {failed[:3]}"
    assert {a.version for a in answers if a.received < asked} == {3}
    assert {a.version for a in answers if a.sent > rolled_back} == {2}
    entry = read_manifest(repository)["models"][MODEL]
    assert entry["versions"] == [1, 2] and entry["last_version"] == 3 and "previous" not in entry
    assert served_config(served)["dynamic_batching"]["max_queue_delay_microseconds"] == 2000
    states = served_versions(served)
    assert states["1"] == states["2"] == "READY" and states.get("3") != "READY"  # 3 may still be UNLOADING
    goldens |= {v: golden_of(repository, v) for v in (1, 2)}
    for answer in answers:
        for name in OUTPUTS:
            np.testing.assert_allclose(answer.outputs[name], goldens[answer.version].outputs[name], atol=1e-5)
    assert run_cli("infer", *served.common_args, *served.port_args).returncode == 0
    # Back within the old config: v2 removed, v1 serves. A new build then gets version 4, never 3 again.
    assert "version 2 removed; version 1 now served" in run_cli("rollback", MODEL, *served.common_args).stderr
    again = run_cli("rollback", MODEL, *served.common_args)
    assert again.returncode == 2 and "nothing to roll back to" in again.stderr
    assert "published tiny_fp32 version 4" in build(folder, repository, served.work_dir).stderr
