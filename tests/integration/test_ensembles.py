"""Ensembles from the zoo, as `make build-repo` publishes them, served by the real tritonserver and called
with raw data; and ensembles of small models built here."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from tests.integration.conftest import ROOT, run_cli, tree_hash


def test_build_publishes_an_ensemble_and_its_step_for_each_zoo_model(zoo_served):
    manifest = json.loads((zoo_served.repository / "manifest.json").read_text())["models"]
    report = (zoo_served.repository / "BUILD_REPORT.md").read_text()
    for name in ("digits", "mobilenet_v2"):  # image steps: a Triton ensemble of the step and the variant
        assert manifest[name]["kind"] == "ensemble" and manifest[name].get("form", "steps") == "steps"
        step, variant = manifest[name]["steps"]  # the preprocessing, then the variant the build chose
        assert step == f"{name}_preprocess" and manifest[step]["kind"] == "preprocess"
        assert variant.startswith(f"{name}_") and manifest[variant].get("kind", "model") == "model"
        assert f"Ensemble `{name}` (raw input, `{name}_preprocess`, then `{variant}`)" in report
    # text: one python-backend model running the tokenizer and the chosen variant's ONNX file
    text = manifest["minilm"]
    assert (text["kind"], text["form"], text["steps"]) == ("ensemble", "fused", [])
    assert "minilm_preprocess" not in manifest and not (zoo_served.repository / "minilm_preprocess").exists()
    assert manifest[text["variant"]].get("kind", "model") == "model"
    version = zoo_served.repository / "minilm" / str(text["version"])
    assert text["files"][f"{text['version']}/tokenizer.json"] and (version / "tokenizer.json").is_file()
    served_onnx = zoo_served.repository / text["variant"] / str(manifest[text["variant"]]["version"])
    assert (version / "model.onnx").read_bytes() == (served_onnx / "model.onnx").read_bytes()
    assert (
        f"Ensemble `minilm` (raw input, served as one model: pre-processing and `{text['variant']}`" in report
    )


def test_the_text_model_batches_texts_of_any_length_and_answers_each_request_as_alone(zoo_served):
    """Requests of different lengths in flight together run in shared batches (fewer executions than
    requests), each answered as when sent alone; an undecodable text fails its own request only."""
    import asyncio

    import tritonclient.grpc as grpcclient
    import tritonclient.grpc.aio as aioclient

    words = [
        "the",
        "quick",
        "brown",
        "fox",
        "jumps",
        "over",
        "a",
        "lazy",
        "dog",
        "near",
        "the",
        "river",
        "bank",
        "at",
        "dawn",
    ]
    texts = [[" ".join(words[: 1 + (i * 5 + j) % len(words)]) for j in range(1 + i % 3)] for i in range(24)]

    def tensor(module, rows):
        value = module.InferInput("TEXT", [len(rows), 1], "BYTES")
        value.set_data_from_numpy(
            np.array([[r if isinstance(r, bytes) else r.encode()] for r in rows], dtype=object)
        )
        return value

    url = f"127.0.0.1:{zoo_served.grpc_port}"
    client = grpcclient.InferenceServerClient(url)
    alone = [client.infer("minilm", [tensor(grpcclient, rows)]).as_numpy("embedding") for rows in texts]
    before = client.get_inference_statistics("minilm", as_json=True)["model_stats"]

    async def together():
        aio = aioclient.InferenceServerClient(url)
        calls = [aio.infer("minilm", [tensor(aioclient, rows)]) for rows in [*texts, [b"caf\xe9 \xff"]]]
        answers = await asyncio.gather(*calls, return_exceptions=True)
        await aio.close()
        return answers

    *answers, bad = asyncio.run(together())
    after = client.get_inference_statistics("minilm", as_json=True)["model_stats"]
    client.close()
    assert "pre-processing failed: UnicodeDecodeError" in str(bad)
    for rows, single, answer in zip(texts, alone, answers, strict=True):
        got = answer.as_numpy("embedding")
        assert got.shape == (len(rows), 384)
        cosine = np.sum(got * single, axis=1) / np.linalg.norm(got, axis=1) / np.linalg.norm(single, axis=1)
        assert cosine.min() > 0.995, (rows, cosine)

    def executions(stats):
        return sum(int(s.get("execution_count", 0)) for s in stats), sum(
            int(s["inference_stats"]["success"].get("count", 0)) for s in stats
        )

    ran, answered = (a - b for a, b in zip(executions(after), executions(before), strict=True))
    assert answered >= len(texts) and ran < len(texts), (ran, answered)  # the bad one may count too


def test_infer_checks_every_ensemble_from_raw_data_over_both_protocols(zoo_served):
    result = run_cli("infer", *zoo_served.common_args, *zoo_served.port_args)
    assert result.returncode == 0, result.stdout + result.stderr
    checks = json.loads((zoo_served.work_dir / "infer.json").read_text())["checks"]
    for protocol in ("grpc", "http"):
        mine = {(c["model"], c["output"]) for c in checks if c["protocol"] == protocol and c["passed"]}
        assert ("minilm", "embedding") in mine
        assert ("mobilenet_v2", "logits") in mine and ("mobilenet_v2", "logits (class_count=5)") in mine
        assert ("digits", "logits") in mine and ("digits", "logits (class_count=5)") in mine
    assert not any(c["model"].endswith("_preprocess") for c in checks)  # checked through its ensemble


def test_standard_classification_request_returns_labelled_top_classes(zoo_served):
    """A plain HTTP/JSON request, as any Triton client sends it: class_count on the ensemble's output."""
    pixels = np.zeros((1, 8, 8), dtype=np.uint8)
    pixels[0, 1:7, 3:5] = 16  # a vertical bar
    body = {
        "inputs": [
            {"name": "PIXELS", "shape": [1, 8, 8], "datatype": "UINT8", "data": pixels.ravel().tolist()}
        ],
        "outputs": [{"name": "logits", "parameters": {"classification": 5}}],
    }
    request = urllib.request.Request(
        f"http://127.0.0.1:{zoo_served.http_port}/v2/models/digits/infer",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        answer = json.loads(response.read())
    (output,) = answer["outputs"]
    assert output["datatype"] == "BYTES" and output["shape"] == [1, 5]
    entries = [value.split(":") for value in output["data"]]
    scores = [float(score) for score, _, _ in entries]
    assert scores == sorted(scores, reverse=True)
    assert all(label == index for _, index, label in entries)  # digits' labels.txt: "0".."9"
    assert len({index for _, index, _ in entries}) == 5


def test_ensemble_rejects_an_undecodable_image_with_the_reason(zoo_served):
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    client = grpcclient.InferenceServerClient(f"127.0.0.1:{zoo_served.grpc_port}")
    tensor = grpcclient.InferInput("IMAGE", [1, 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[b"not an image"]], dtype=object))
    with pytest.raises(InferenceServerException, match="pre-processing failed: UnidentifiedImageError"):
        client.infer("mobilenet_v2", [tensor])
    client.close()


def _tiny_linear(models: Path, ensemble: str) -> Path:
    folder = models / "lin"
    folder.mkdir(parents=True)
    (folder / "model.py").write_text(
        textwrap.dedent(
            """
            import numpy as np
            import torch


            def build():
                torch.manual_seed(0)
                return torch.nn.Linear(4, 3).eval()


            def sample():
                return {"x": np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)}


            def raw():
                return np.arange(8, dtype=np.uint8).reshape(2, 4)
            """
        )
    )
    (folder / "model.yaml").write_text(
        textwrap.dedent(
            """
            name: lin
            source: {factory: "model:build"}
            axes: {batch: {min: 1, opt: 2, max: 4}}
            inputs: [{name: x, dtype: float32, dims: [batch, 4]}]
            outputs: [{name: y, dtype: float32, dims: [batch, 3]}]
            data: {sample: "model:sample"}
            """
        )
        + ensemble
    )
    return folder


@pytest.mark.parametrize(
    ("ensemble", "message"),
    [
        (
            "ensemble: {preprocess: {kind: image, output: x, resize: 2, size: 2, mean: [0, 0, 0], "
            'std: [1, 1, 1]}, samples: "model:raw"}',
            "ensemble lin: lin_preprocess output 'x' FP32 [3, 2, 2] does not fit lin_fp32 input 'x' FP32 [4]",
        ),
        (
            'ensemble: {preprocess: {kind: pixels, output: x, dims: [2, 3]}, samples: "model:raw"}',
            "ensemble.preprocess.dims [2, 3] has 6 pixels, but input 'x' takes [4]",
        ),
    ],
)
def test_an_ensemble_that_does_not_fit_its_model_stops_the_build_naming_both_ends(
    tmp_path, ensemble, message
):
    folder = _tiny_linear(tmp_path / "models", ensemble + "\n")
    repository = tmp_path / "repo"
    result = run_cli("build", str(folder), "--repository", str(repository), "--work-dir", str(tmp_path / "w"))
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not repository.exists() or not any(p.name.startswith("lin") for p in repository.iterdir())


def test_removing_the_ensemble_from_the_spec_retires_it_on_the_next_build(tmp_path):
    ensemble = (
        'ensemble: {preprocess: {kind: pixels, output: x, dims: [4], scale: 0.5}, samples: "model:raw"}\n'
    )
    folder = _tiny_linear(tmp_path / "models", ensemble)
    repository, work_dir = tmp_path / "repo", tmp_path / "w"
    args = ("build", str(folder), "--repository", str(repository), "--work-dir", str(work_dir))
    run_cli(*args, check=True)
    assert (repository / "lin").is_dir() and (repository / "lin_preprocess").is_dir()
    before = tree_hash(repository / "lin_fp32")
    (folder / "model.yaml").write_text((folder / "model.yaml").read_text().replace(ensemble, ""))
    run_cli(*args, check=True)
    manifest = json.loads((repository / "manifest.json").read_text())["models"]
    assert sorted(manifest) == ["lin_fp32"]
    assert not (repository / "lin").exists() and not (repository / "lin_preprocess").exists()
    assert tree_hash(repository / "lin_fp32") == before


# --- the client applications in examples/, run as a user runs them -------------------------

EXAMPLES = ROOT / "examples"


def example(name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """The two sample photographs as PNG and JPEG files."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    folder = tmp_path_factory.mktemp("photos")
    paths = []
    for index, photo in enumerate(load_sample_images().images):
        for suffix in ("png", "jpg"):
            path = folder / f"photo{index}.{suffix}"
            Image.fromarray(photo).save(path)
            paths.append(str(path))
    return paths


def test_text_examples_return_the_same_unit_embeddings_over_grpc_and_http(zoo_served):
    sentences = ["A cat sits on the mat.", "Stocks fell sharply today.", "The train was late again."]
    results = {}
    for name, port in (
        ("embed_text_grpc.py", zoo_served.grpc_port),
        ("embed_text_http.py", zoo_served.http_port),
    ):
        run = example(name, "--url", f"127.0.0.1:{port}", "--json", *sentences)
        assert run.returncode == 0, run.stderr
        results[name] = np.array(json.loads(run.stdout))
    grpc, http = results.values()
    assert grpc.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(grpc, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(grpc, http, atol=1e-6)
    assert float(grpc[0] @ grpc[1]) < 0.9  # different sentences, different embeddings


def test_image_examples_agree_over_grpc_http_and_shared_memory(zoo_served, photos):
    outputs = {}
    for name, port, extra in (
        ("classify_image_grpc.py", zoo_served.grpc_port, []),
        ("classify_image_http.py", zoo_served.http_port, []),
        ("classify_image_shm.py", zoo_served.grpc_port, ["--repository", str(zoo_served.repository)]),
    ):
        run = example(name, "--url", f"127.0.0.1:{port}", "--json", *extra, *photos)
        assert run.returncode == 0, run.stderr
        outputs[name] = json.loads(run.stdout)
    grpc = outputs["classify_image_grpc.py"]
    assert [entry["file"] for entry in grpc] == photos
    labels = (zoo_served.repository / "mobilenet_v2" / "labels.txt").read_text().splitlines()
    for entry in grpc:
        assert len(entry["classes"]) == 5
        assert all(c["label"] == labels[c["index"]] for c in entry["classes"])
    for name in ("classify_image_http.py", "classify_image_shm.py"):
        assert [[c["index"] for c in e["classes"]] for e in outputs[name]] == [
            [c["index"] for c in e["classes"]] for e in grpc
        ], name


def test_the_image_example_names_the_cat_in_a_photograph(zoo_served):
    """The trained MobileNetV2 behind the ensemble, from an encoded photo to ImageNet's class name."""
    import skimage

    cat = Path(skimage.__file__).parent / "data" / "chelsea.png"
    run = example("classify_image_grpc.py", "--url", f"127.0.0.1:{zoo_served.grpc_port}", "--json", str(cat))
    assert run.returncode == 0, run.stderr
    (entry,) = json.loads(run.stdout)
    assert entry["classes"][0]["label"] == "Egyptian cat" and entry["classes"][0]["index"] == 285


def test_digits_example_classifies_a_real_digit(zoo_served, tmp_path):
    from sklearn.datasets import load_digits

    digits = load_digits()
    chosen = [i for i in range(40) if digits.target[i] in (0, 1, 2)][:3]
    path = tmp_path / "digits.npy"
    np.save(path, digits.images[chosen].astype(np.uint8))
    run = example("classify_digits_grpc.py", "--url", f"127.0.0.1:{zoo_served.grpc_port}", str(path))
    assert run.returncode == 0, run.stderr
    rows = [line.split("\t") for line in run.stdout.splitlines()]
    best = {int(row): label for row, _, _, label in reversed(rows)}  # the first line per row is its best
    assert [best[i] for i in range(3)] == [str(digits.target[i]) for i in chosen]


def test_async_example_keeps_many_requests_in_flight_without_failures(zoo_served):
    run = example(
        "embed_many_async.py",
        "--url",
        f"127.0.0.1:{zoo_served.grpc_port}",
        "--requests",
        "48",
        "--in-flight",
        "12",
    )
    assert run.returncode == 0, run.stderr
    assert "requests=48 ok=48 failed=0 in_flight=12" in run.stdout


def test_examples_name_an_unreachable_server_and_exit_2(photos):
    from triton_repo.serve.server import free_ports

    (port,) = free_ports(1)
    run = example("classify_image_grpc.py", "--url", f"127.0.0.1:{port}", photos[0])
    assert run.returncode == 2
    assert f"127.0.0.1:{port}" in run.stderr and "Traceback" not in run.stderr


# --- Triton's image_client.py contract (triton-inference-server/client, src/python/examples) -----------


def parse_model(metadata: dict, config: dict) -> dict:
    """image_client.py's parse_model, on the JSON form both protocols give: one input, one FP32 output
    that is a vector, an input of 3 dims besides the batch, laid out FORMAT_NCHW or FORMAT_NHWC."""
    assert len(metadata["inputs"]) == 1 and len(metadata["outputs"]) == 1
    assert len(config["input"]) == 1
    output = metadata["outputs"][0]
    assert output["datatype"] == "FP32"
    batched = config.get("max_batch_size", 0) > 0
    assert sum(1 for d in output["shape"][1 if batched else 0 :] if int(d) > 1) <= 1, (
        "output must be a vector"
    )
    shape = [int(d) for d in metadata["inputs"][0]["shape"]]
    assert len(shape) == 3 + batched
    layout = config["input"][0].get("format", "FORMAT_NONE")
    assert layout in ("FORMAT_NCHW", "FORMAT_NHWC"), f"unexpected input format {layout}"
    dims = shape[1:] if batched else shape
    c, h, w = dims if layout == "FORMAT_NCHW" else (dims[2], dims[0], dims[1])
    return {
        "input": metadata["inputs"][0]["name"],
        "output": output["name"],
        "c": c,
        "h": h,
        "w": w,
        "format": layout,
        "dtype": metadata["inputs"][0]["datatype"],
        "batched": batched,
    }


def preprocess(path: str, model: dict) -> np.ndarray:
    """image_client.py's preprocess with INCEPTION scaling: L or RGB, resized, CHW when the layout says so."""
    from PIL import Image

    image = Image.open(path).convert("L" if model["c"] == 1 else "RGB").resize((model["w"], model["h"]))
    array = np.array(image).astype(np.float32)
    if array.ndim == 2:
        array = array[:, :, None]
    array = array / 127.5 - 1
    return np.transpose(array, (2, 0, 1)) if model["format"] == "FORMAT_NCHW" else array


@pytest.mark.parametrize("protocol", ["grpc", "http"])
@pytest.mark.parametrize("name", ["mobilenet_v2_fp32", "digits_fp32"])
def test_a_client_following_image_client_py_classifies_with_class_count(zoo_served, photos, protocol, name):
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    module, port = (
        (grpcclient, zoo_served.grpc_port) if protocol == "grpc" else (httpclient, zoo_served.http_port)
    )
    client = module.InferenceServerClient(f"127.0.0.1:{port}")
    as_json = {"as_json": True} if protocol == "grpc" else {}
    metadata = client.get_model_metadata(name, **as_json)
    config = client.get_model_config(name, **as_json)
    config = config.get("config", config)  # gRPC wraps it in {"config": ...}
    model = parse_model(metadata, config)
    batch = np.stack([preprocess(path, model) for path in photos[:2]])
    tensor = module.InferInput(model["input"], list(batch.shape), model["dtype"])
    tensor.set_data_from_numpy(batch)
    requested = module.InferRequestedOutput(model["output"], class_count=3)
    result = client.infer(name, [tensor], outputs=[requested]).as_numpy(model["output"])
    logits = client.infer(name, [tensor]).as_numpy(model["output"])
    client.close()
    labels = (zoo_served.repository / name / "labels.txt").read_text().splitlines()
    assert result.shape == (2, 3)
    for row, entries in enumerate(result):
        fields = [(e.decode() if isinstance(e, bytes) else e).split(":", 2) for e in entries]
        indices = [int(index) for _, index, _ in fields]
        assert indices == list(np.argsort(-logits[row], kind="stable")[:3])
        assert [label for _, _, label in fields] == [labels[i] for i in indices]
        np.testing.assert_allclose([float(score) for score, _, _ in fields], logits[row][indices], rtol=1e-5)
