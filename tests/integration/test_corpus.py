"""The corpus of user-shaped models (tests/corpus): built with the real CLI, served, checked over gRPC and HTTP.

One build of all of them: every precision variant of each is published or refused with its reason, none
ends the build; the served models answer their golden inputs and refuse shapes outside the spec.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.integration.conftest import ROOT, run_cli, serve
from triton_repo.repo.config import parse_config
from triton_repo.repo.publish import read_manifest

pytestmark = pytest.mark.integration

CORPUS = ROOT / "tests" / "corpus"
MODELS = sorted(p.name for p in CORPUS.iterdir() if (p / "model.yaml").is_file())


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Every corpus model built in one `triton-repo build` and served; the build's result and output."""
    base = tmp_path_factory.mktemp("corpus")
    repository, work_dir = base / "model_repository", base / "build"
    common = ["--repository", str(repository), "--work-dir", str(work_dir)]
    result = run_cli("build", "--models-dir", str(CORPUS), *common, "--speed-seconds", "1", timeout=900)
    served = serve(repository, work_dir)
    yield result, served
    run_cli("stop", "--work-dir", str(work_dir))


def rows(served) -> list[dict]:
    return json.loads((served.work_dir / "build.json").read_text())["models"]


def test_every_variant_is_published_or_refused_with_a_reason_and_the_build_goes_on(corpus):
    result, served = corpus
    assert result.returncode == 1, result.stderr  # some variants are refused: exit 1, not a crash
    assert "Traceback" not in result.stderr
    built = rows(served)
    assert sorted({row["model"] for row in built}) == MODELS  # every model went through every stage
    published = read_manifest(served.repository)["models"]
    closing = result.stderr.splitlines()[-1]
    slow = {r["candidate_for"] for r in built if r["status"].startswith("measured, not published")}
    for row in built:
        if row["triton_model"] is not None:  # the pair a served variant was chosen from
            assert row["triton_model"] in published, row
        elif row["candidate_for"] in slow:  # no faster than FP32, and not listed by name: not a refusal
            assert f"{row['candidate_for']} not published" in result.stderr.replace("\n", " "), row
            assert row["candidate_for"] not in closing, row
        elif row["candidate_for"] and row["candidate_for"] not in published:  # every candidate refused
            assert row["check"] and row["candidate_for"] in closing, row  # named in the closing line
    assert {f"{name}_fp32" for name in MODELS} <= set(published)
    for name in published:  # each published variant came from exactly one measured pair
        assert sum(row["triton_model"] == name for row in built) == (
            name.rsplit("_", 1)[-1] in ("fp32", "fp16", "bf16", "int8")
        )
    print(
        "\n"
        + "\n".join(f"{r['triton_model'] or r['model'] + ' ' + r['artifact']}: {r['check']}" for r in built)
    )


def test_a_runtime_crash_refuses_that_variant_with_one_line_and_the_others_are_published(corpus):
    """ONNX Runtime CPU segfaults running the FP16 graph of the GRU tagger: the build survives it."""
    result, served = corpus
    line = re.search(r"refused gru_tagger fp16-cpu: (.*)", result.stderr.replace("\n", " "))
    assert line, result.stderr
    assert re.match(
        r"ONNX Runtime [\d.]+ crashed \(SIGSEGV\) running model\.fp16-cpu\.onnx; it has [A-Za-z, ]+ in FP16",
        line.group(1),
    ), line.group(1)
    published = read_manifest(served.repository)["models"]
    assert "gru_tagger_fp16" not in published
    assert {"gru_tagger_fp32", "gru_tagger_int8"} <= set(published)
    report = json.loads((served.repository / "BUILD_REPORT.json").read_text())["models"]["gru_tagger"]
    fp16 = next(v for v in report["variants"] if v["artifact"] == "fp16-cpu")
    assert fp16["status"] == "refused: the runtime could not run it" and "GRU" in fp16["rule_kept_op_types"]


def test_infer_checks_every_served_corpus_model_over_grpc_and_http(corpus):
    _, served = corpus
    result = run_cli("infer", *served.common_args, *served.port_args)
    assert result.returncode == 0, result.stdout + result.stderr
    checks = json.loads((served.work_dir / "infer.json").read_text())["checks"]
    checked = {(c["model"], c["protocol"]) for c in checks}
    for model, entry in read_manifest(served.repository)["models"].items():
        if entry.get("kind") in ("preprocess", "postprocess"):  # checked through their ensemble
            continue
        assert {(model, "grpc"), (model, "http")} <= checked


def test_unbatched_and_scalar_per_row_tensors_get_the_config_triton_needs(corpus):
    _, served = corpus
    unbatched = parse_config(served.repository / "unbatched_points_fp32" / "config.pbtxt")
    assert unbatched.max_batch_size == 0 and not unbatched.HasField("dynamic_batching")
    assert [list(t.dims) for t in unbatched.input] == [[-1, 3], [1]]
    # Triton has no scalar tensors in an unbatched model ("cannot have empty reshape"): dims [1], and the
    # python backend's template reshapes them for the graph
    scalars = [t for t in [*unbatched.input, *unbatched.output] if t.name in ("radius", "spread")]
    assert [(list(t.dims), t.HasField("reshape")) for t in scalars] == [([1], False), ([1], False)]
    assert json.loads(unbatched.parameters["scalar_tensors"].string_value) == ["radius", "spread"]
    mixed = parse_config(served.repository / "mixed_dtypes_fp32" / "config.pbtxt")
    score = next(t for t in mixed.output if t.name == "score")  # [batch] in the spec
    assert list(score.dims) == [1] and score.HasField("reshape") and list(score.reshape.shape) == []
    assert [t.data_type for t in mixed.input] == [9, 11, 1, 8]  # INT64, FP32, BOOL, INT32


OUT_OF_RANGE = [
    (
        "fcn_segmenter_fp32",
        {"image": np.zeros((1, 3, 100, 32), np.float32)},
        "input 'image' dim 2 (axis 'height') is 100, outside 16..96",
    ),
    (
        "gru_tagger_int8",
        {"ids": np.zeros((1, 65), np.int64), "feats": np.zeros((1, 65, 4), np.float32)},
        "input 'ids' dim 1 (axis 'seq') is 65, outside 1..64",
    ),
    (
        "unbatched_points_fp32",
        {"points": np.zeros((513, 3), np.float32), "radius": np.ones(1, np.float32)},
        "input 'points' dim 0 (axis 'points') is 513, outside 1..512",
    ),
    (  # inside its range, but not a size the detector takes: refused before it reaches the runtime
        "yolo_detector_fp32",
        {"images": np.zeros((1, 3, 96, 100), np.float32)},
        "input 'images' dim 3 (axis 'width') is 100, not a multiple of 32, which this model needs",
    ),
]


def _send(module, client, model: str, inputs: dict[str, np.ndarray]):
    tensors = []
    for name, array in inputs.items():
        tensor = module.InferInput(
            name, list(array.shape), {"float32": "FP32", "int64": "INT64"}[str(array.dtype)]
        )
        tensor.set_data_from_numpy(array)
        tensors.append(tensor)
    return client.infer(model, tensors)


@pytest.mark.parametrize("protocol", ["grpc", "http"])
@pytest.mark.parametrize(("model", "inputs", "message"), OUT_OF_RANGE, ids=[m for m, _, _ in OUT_OF_RANGE])
def test_a_shape_outside_the_spec_is_refused_as_invalid_argument(corpus, protocol, model, inputs, message):
    _, served = corpus
    module, port = (grpcclient, served.grpc_port) if protocol == "grpc" else (httpclient, served.http_port)
    client = module.InferenceServerClient(f"127.0.0.1:{port}")
    with pytest.raises(InferenceServerException) as info:
        _send(module, client, model, inputs)
    client.close()
    assert message in str(info.value)
    assert str(info.value.status()) == ("StatusCode.INVALID_ARGUMENT" if protocol == "grpc" else "400")


def test_a_shape_at_the_edge_of_the_spec_is_served(corpus):
    """The fully convolutional model at an odd height: its output-only axes follow the input's."""
    _, served = corpus
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{served.grpc_port}")
    image = np.random.default_rng(0).uniform(0, 1, (2, 3, 17, 96)).astype(np.float32)
    tensor = grpcclient.InferInput("image", list(image.shape), "FP32")
    tensor.set_data_from_numpy(image)
    mask = client.infer("fcn_segmenter_fp32", [tensor]).as_numpy("mask")
    client.close()
    assert mask.shape == (2, 2, 9, 48)


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_the_paddle_shaped_detector_is_served_at_two_image_sizes_with_its_dotted_names(corpus, protocol):
    """Its weights are Constant nodes and input-listed initializers, which once crashed the roofline."""
    import onnxruntime

    _, served = corpus
    source = CORPUS / "paddle_detector" / "model.onnx"
    reference = onnxruntime.InferenceSession(str(source), providers=["CPUExecutionProvider"])
    module, port = (grpcclient, served.grpc_port) if protocol == "grpc" else (httpclient, served.http_port)
    client = module.InferenceServerClient(f"127.0.0.1:{port}")
    rng = np.random.default_rng(7)
    for shape in [(1, 3, 16, 128), (3, 3, 96, 40)]:
        pixels = rng.standard_normal(shape).astype(np.float32)
        tensor = module.InferInput("x", list(shape), "FP32")
        tensor.set_data_from_numpy(pixels)
        served_map = client.infer("paddle_detector_fp32", [tensor]).as_numpy("sigmoid_0.tmp_0")
        expected = reference.run(["sigmoid_0.tmp_0"], {"x": pixels})[0]
        assert served_map.shape == (shape[0], 1, *shape[2:])
        np.testing.assert_allclose(served_map, expected, atol=1e-4, rtol=1e-3)
    client.close()
    report = json.loads((served.repository / "BUILD_REPORT.json").read_text())["models"]["paddle_detector"]
    fp32 = next(row for row in report["variants"] if row["artifact"] == "fp32" and row["runtime"] == "ort")
    assert fp32["gflops"] and fp32["gflops"] > 0  # the roofline measured it


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_a_scalar_input_is_one_value_per_request_and_requests_with_different_values_never_mix(
    corpus, protocol
):
    """`sr` (dims []) is served as dims [1] with reshape []: each request sends [rows, 1]; requests that the
    dynamic batcher joins are run together only when their values agree."""
    import concurrent.futures

    import onnxruntime

    _, served = corpus
    # its Conv1d needs 16 samples: AutoCast's reference run got the calibration rows, not random ones
    assert {"scalar_rate_fp16", "scalar_rate_bf16", "scalar_rate_int8"} <= set(
        read_manifest(served.repository)["models"]
    )
    config = parse_config(served.repository / "scalar_rate_fp32" / "config.pbtxt")
    sr = next(t for t in config.input if t.name == "sr")
    assert list(sr.dims) == [1] and sr.HasField("reshape") and list(sr.reshape.shape) == []
    assert json.loads(config.parameters["per_request_inputs"].string_value) == ["sr"]
    reference = onnxruntime.InferenceSession(
        str(served.work_dir / "scalar_rate" / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    module, port = (grpcclient, served.grpc_port) if protocol == "grpc" else (httpclient, served.http_port)
    rng = np.random.default_rng(3)
    requests = [
        (rng.standard_normal((rows, 128)).astype(np.float32), rate)
        for rows, rate in [(1, 8000), (3, 16000), (2, 8000), (1, 44100), (4, 16000), (2, 8000)] * 4
    ]

    def call(request):
        audio, rate = request
        client = module.InferenceServerClient(f"127.0.0.1:{port}")
        try:
            sent = {"audio": audio, "sr": np.full((len(audio), 1), rate, np.int64)}
            return _send(module, client, "scalar_rate_fp32", sent).as_numpy("score")
        finally:
            client.close()

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(call, requests))
    for (audio, rate), answer in zip(requests, answers, strict=True):
        expected = reference.run(["score"], {"audio": audio, "sr": np.array(rate, np.int64)})[0]
        np.testing.assert_allclose(answer, expected, atol=1e-5, rtol=1e-4)
    client = module.InferenceServerClient(f"127.0.0.1:{port}")
    mixed = {"audio": np.zeros((2, 128), np.float32), "sr": np.array([[16000], [8000]], np.int64)}
    with pytest.raises(InferenceServerException) as info:
        _send(module, client, "scalar_rate_fp32", mixed)
    client.close()
    assert "input 'sr' is one value per request" in str(info.value)
    assert str(info.value.status()) == ("StatusCode.INVALID_ARGUMENT" if protocol == "grpc" else "400")


def test_converted_tensor_names_are_served_unchanged_and_their_warmup_files_stay_flat(corpus):
    """tf2onnx keeps TensorFlow's names: clients call `input:0` and read `Identity:0`, over gRPC and HTTP
    (test_infer_checks_every_served_corpus_model sends them); a '/' never makes a warmup subfolder."""
    _, served = corpus
    model_dir = served.repository / "tf2onnx_names_fp32"
    config = parse_config(model_dir / "config.pbtxt")
    assert [t.name for t in config.input] == ["input:0", "2nd/temperature-scale"]
    assert [t.name for t in config.output] == ["Identity:0", "model/features/Mean:0"]
    assert config.input[0].format == config.input[0].FORMAT_NHWC
    files = {data.input_data_file for warmup in config.model_warmup for data in warmup.inputs.values()}
    assert len(files) == 2 and all("/" not in f and ":" not in f for f in files)
    assert all((model_dir / "warmup" / f).is_file() for f in files)


def test_the_detectors_int8_that_loses_every_detection_is_refused_and_its_fp16_not_published(corpus):
    """ONNX Runtime's static INT8 quantizes the packed head with one scale for pixels and scores: every
    class score rounds to 0 while the worst-row cosine stays near 1. The detection metric refuses it. Its
    fp16-cpu (FP32 arithmetic, FP16 data) is no faster than FP32: measured, reported, not published."""
    result, served = corpus
    report = json.loads((served.repository / "BUILD_REPORT.json").read_text())["models"]["yolo_detector"]
    rows = {(r["artifact"], r["runtime"]): r for r in report["variants"]}
    static = rows["int8-cpu", "ort"]
    assert not static["within_budget"] and static["accuracy"]["details"]["detections_variant"] == 0
    assert static["verdict"].startswith("detection F1 0 < 0.9"), static["verdict"]
    assert rows["fp16-cpu", "ort"]["status"].startswith("measured, not published: "), rows["fp16-cpu", "ort"]
    assert "yolo_detector_fp16 not published" in result.stderr.replace("\n", " ")
    assert "yolo_detector_fp16" not in read_manifest(served.repository)["models"]


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_the_detector_ensemble_returns_the_shapes_of_an_unseen_image_with_their_names(corpus, protocol):
    """A JPEG of a size the model never saw: letterboxed, decoded by the gate's own code, boxes on the image."""
    import importlib.util
    import io

    from PIL import Image

    from triton_repo.core.decode import box_iou

    found = importlib.util.spec_from_file_location(
        "yolo_detector_model", CORPUS / "yolo_detector" / "model.py"
    )
    detector = importlib.util.module_from_spec(found)
    found.loader.exec_module(detector)
    scene, classes = detector.scene, detector.CLASSES

    _, served = corpus
    pixels, truth = scene(np.random.default_rng(2024), 300, 200)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=95)
    module, port = (grpcclient, served.grpc_port) if protocol == "grpc" else (httpclient, served.http_port)
    client = module.InferenceServerClient(f"127.0.0.1:{port}")
    image = module.InferInput("IMAGE", [1, 1], "BYTES")
    if module is httpclient:
        image.set_data_from_numpy(np.array([[buffer.getvalue()]], dtype=object), binary_data=True)
    else:
        image.set_data_from_numpy(np.array([[buffer.getvalue()]], dtype=object))
    result = client.infer("yolo_detector", [image])
    client.close()
    count = int(result.as_numpy("COUNT")[0, 0])
    confident = result.as_numpy("SCORES")[0][:count] >= 0.5  # the gray letterbox padding, never seen in
    labels = [name.decode() for name in result.as_numpy("LABELS")[0][:count][confident]]  # training, may
    boxes = result.as_numpy("BOXES")[0][:count][confident]  # draw a low-scored guess
    assert sorted(labels) == sorted(classes[int(k)] for k in truth[:, 4])
    overlap = box_iou(boxes, truth[:, :4])
    assert (overlap.max(axis=1) > 0.7).all(), (boxes, truth)
    assert [labels[i] for i in overlap.argmax(axis=0)] == [classes[int(k)] for k in truth[:, 4]]


# PyTorch sources init reads as they are (folder <name>_pt): a checkpoint with its factory and an image
# input guessed from the first Conv2d; token ids guessed from an Embedding, whose TorchScript export fixes
# the sequence (so the dynamo exporter is chosen); a batch_first LSTM; two inputs and a 0-d scalar given;
# a stateful LSTM whose batch is dim 1 of its states and whose outputs are named for them.
TORCH_SOURCES = {
    "pretrained_classifier": ("checkpoint.pt", ()),
    "decoder_block": (None, ()),
    "lstm_forecaster": (None, ()),
    "gru_tagger": (None, ("ids:2x16:int64", "feats:2x16x4")),
    "scalar_rate": (None, ("audio:2x16000", "sr::int64")),
    "lstm_state": (None, ("series:3x10x3", "h0:2x3x16", "c0:2x3x16")),  # batch 3: not the 2 layers
}


def test_init_writes_for_every_corpus_models_onnx_file_and_pytorch_source_a_spec_that_builds_and_serves(
    corpus, tmp_path
):
    """Every corpus model reduced to its ONNX file (the file itself for an ONNX source, the build's export
    for a PyTorch one), and five PyTorch sources as users hold them: `triton-repo init` writes each folder,
    and, untouched, one `build` publishes FP32 for all of them and `infer` passes over gRPC and HTTP. What
    init found is checked on a few."""
    _, served = corpus
    models = tmp_path / "models"
    for name in MODELS:
        source = CORPUS / name / "model.onnx"
        if not source.is_file():
            source = served.work_dir / name / "model.onnx"  # exported from its PyTorch factory
        run_cli("init", str(source), str(models / name), check=True, timeout=300)
    for name, (checkpoint, inputs) in TORCH_SOURCES.items():
        factory = f"{CORPUS / name / 'model.py'}:build"
        given = [f"--input={text}" for text in inputs]
        source = [str(CORPUS / name / checkpoint), "--factory", factory] if checkpoint else [factory]
        run_cli("init", *source, str(models / f"{name}_pt"), *given, check=True, timeout=300)
    texts = {path.parent.name: path.read_text() for path in models.glob("*/model.yaml")}
    assert "metric: detection" in texts["yolo_detector"] and "anchors: {min:" in texts["yolo_detector"]
    assert "max_batch_size: 0" in texts["unbatched_points"]
    assert "metric: dense" in texts["paddle_detector"] and "format: NCHW" in texts["paddle_detector"]
    assert "name: 'input:0'" in texts["tf2onnx_names"] and "format: NHWC" in texts["tf2onnx_names"]
    assert "metric: binary" in texts["scalar_rate"]
    assert (
        "source: {factory: 'network:build', checkpoint: checkpoint.pt}" in texts["pretrained_classifier_pt"]
    )
    assert "format: NCHW" in texts["pretrained_classifier_pt"]
    assert "exporter: dynamo" in texts["decoder_block_pt"] and "max: 128}" in texts["decoder_block_pt"]
    assert "{name: sr, dtype: int64, dims: []}" in texts["scalar_rate_pt"]
    assert "{name: feats, dtype: float32, dims: [batch, sequence, 4]}" in texts["gru_tagger_pt"]
    for name in (
        "lstm_state",
        "vad_stream",
        "lstm_state_pt",
    ):  # streams: checked by infer over both protocols
        assert "sequence: {strategy: oldest" in texts[name] and "batch: {min: 1" in texts[name], texts[name]
    assert "sequence: {strategy: direct" in texts["unbatched_state"]
    assert "{name: h0, dtype: float32, dims: [2, batch, 16]}" in texts["lstm_state_pt"]
    assert "{name: h_out, dtype: float32, dims: [2, batch, 16]}" in texts["lstm_state_pt"]
    repository, work_dir = tmp_path / "repository", tmp_path / "build"
    common = ["--repository", str(repository), "--work-dir", str(work_dir)]
    run_cli("build", "--models-dir", str(models), *common, "--speed-seconds", "0.5", check=True, timeout=900)
    names = [*MODELS, *(f"{name}_pt" for name in TORCH_SOURCES)]
    assert sorted(read_manifest(repository)["models"]) == sorted(f"{name}_fp32" for name in names)
    fresh = serve(repository, work_dir)
    try:
        checked = run_cli("infer", *common, *fresh.port_args, check=True)
        said = re.search(r"all (\d+) checks passed \(grpc, http\)", checked.stdout + checked.stderr)
        assert said and int(said.group(1)) >= 2 * len(names), checked.stdout[-2000:]
    finally:
        run_cli("stop", "--work-dir", str(work_dir))


def test_init_refuses_what_it_cannot_read_and_never_overwrites(tmp_path):
    checkpoint = CORPUS / "pretrained_classifier" / "checkpoint.pt"
    refused = run_cli("init", str(checkpoint), str(tmp_path / "pretrained"))
    assert refused.returncode == 2
    assert "a PyTorch checkpoint holds weights, not the network" in refused.stderr
    assert "--factory FILE.py:FUNCTION" in refused.stderr
    wrong = f"{CORPUS / 'lstm_forecaster' / 'model.py'}:build"
    unfit = run_cli("init", str(checkpoint), "--factory", wrong, str(tmp_path / "unfit"))
    assert unfit.returncode == 2 and "does not fit the factory's model: missing keys" in unfit.stderr
    assert len(unfit.stderr.strip().splitlines()) == 1 and not (tmp_path / "unfit").exists()
    text = tmp_path / "notes.txt"
    text.write_text("not a model\n")
    assert "not an ONNX model" in run_cli("init", str(text), str(tmp_path / "notes")).stderr
    folder = tmp_path / "onnx_spatial"
    folder.mkdir()
    (folder / "model.yaml").write_text("# mine\n")
    kept = run_cli("init", str(CORPUS / "onnx_spatial" / "model.onnx"), str(folder))
    assert kept.returncode == 2 and "init never overwrites your files" in kept.stderr
    assert (folder / "model.yaml").read_text() == "# mine\n" and not (folder / "model.py").exists()
