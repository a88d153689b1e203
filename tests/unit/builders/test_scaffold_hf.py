"""A Hugging Face folder for `init` (`read_folder`), on tiny models saved here with save_pretrained (random
weights, offline): the task its architecture serves, its inputs and labels, the network.py init writes (run
here from the layout init gives it: network.py beside hf/), a sentence-transformers folder's pooling and
normalisation, a ViT's image steps, and one-line refusals."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from triton_repo.builders.scaffold.hugging_face import read_folder
from triton_repo.builders.scaffold.torch_source import GivenInput
from triton_repo.core.errors import SpecError

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

TINY_BERT = {
    "vocab_size": 64,
    "hidden_size": 16,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "intermediate_size": 32,
    "max_position_embeddings": 32,
}
TINY_VIT = {
    "hidden_size": 16,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "intermediate_size": 32,
    "image_size": 32,
    "patch_size": 8,
}
TEXT_INPUTS = (GivenInput("input_ids", (2, 16), "int64"), GivenInput("attention_mask", (2, 16), "int64"))
IDS = [[5, 6, 7, 8, 9, 10], [11, 12, 13, 40, 41, 42]]
MASK = [[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]]  # the second row's last three tokens are padding


def hf_folder(tmp_path: Path) -> Path:
    """tmp_path/model/hf: where init puts the Hugging Face files, network.py beside them."""
    folder = tmp_path / "model" / "hf"
    folder.mkdir(parents=True)
    return folder


def run_network(hf, found, *arguments):
    """Write the network.py init generates beside hf/, import it, build() and run it."""
    path = hf.parent / "network.py"
    path.write_text(found.network_py)
    spec = importlib.util.spec_from_file_location(f"network_{hf.parent.parent.name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    network = module.build()
    assert not network.training
    with torch.no_grad():
        return network(*arguments)


def refusal(folder: Path) -> str:
    with pytest.raises(SpecError) as raised:
        read_folder(folder)
    text = str(raised.value)
    assert "\n" not in text, text
    return text


def text_classifier(hf: Path, **config):
    model = transformers.BertForSequenceClassification(transformers.BertConfig(**TINY_BERT, **config))
    model.eval().save_pretrained(hf)
    return model


def test_a_sequence_classifier_with_named_classes_is_text_classification_returning_logits(tmp_path):
    hf = hf_folder(tmp_path)
    names = {0: "negative", 1: "neutral", 2: "positive"}
    model = text_classifier(hf, num_labels=3, id2label=names, label2id={v: k for k, v in names.items()})
    found = read_folder(hf)
    assert (found.architecture, found.task, found.output) == (
        "BertForSequenceClassification",
        "text classification",
        "logits",
    )
    assert found.labels == ("negative", "neutral", "positive")
    assert found.inputs == TEXT_INPUTS and found.image is None
    assert "AutoModelForSequenceClassification" in found.network_py
    assert "def forward(self, input_ids, attention_mask):" in found.network_py
    assert "return self.model(input_ids=input_ids, attention_mask=attention_mask).logits" in found.network_py
    ids, mask = torch.tensor(IDS), torch.tensor(MASK)
    logits = run_network(hf, found, ids, mask)
    with torch.no_grad():
        expected = model(input_ids=ids, attention_mask=mask).logits
    assert logits.shape == (2, 3)
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)


def test_a_token_classifier_keeps_its_tag_names_off_the_per_token_output(tmp_path):
    hf = hf_folder(tmp_path)
    tags = {0: "O", 1: "B-PER", 2: "I-PER"}
    config = transformers.BertConfig(
        **TINY_BERT, num_labels=3, id2label=tags, label2id={v: k for k, v in tags.items()}
    )
    transformers.BertForTokenClassification(config).eval().save_pretrained(hf)
    found = read_folder(hf)
    assert found.task == "token classification" and found.labels == ()  # class_count ranks one vector per row
    assert any("tag names (id2label) stay in hf/config.json" in note for note in found.notes)


def test_a_classifier_with_the_default_label_i_names_gives_no_labels(tmp_path):
    hf = hf_folder(tmp_path)
    text_classifier(hf, num_labels=2)
    assert read_folder(hf).labels == ()  # transformers 5 leaves the default names out of config.json
    config = json.loads((hf / "config.json").read_text())
    config["id2label"] = {"0": "LABEL_0", "1": "LABEL_1"}  # as transformers 4 writes them
    (hf / "config.json").write_text(json.dumps(config))
    found = read_folder(hf)
    assert (found.task, found.labels) == ("text classification", ())
    assert found.tokenizer is None
    assert "no tokenizer.json: clients send token ids (no text ensemble)" in found.notes


def test_a_tokenizer_json_beside_the_weights_and_the_pad_token_id_are_read(tmp_path):
    from tokenizers import Tokenizer, models

    hf = hf_folder(tmp_path)
    text_classifier(hf, num_labels=2, pad_token_id=3)
    vocabulary = {"[PAD]": 3, "[UNK]": 1, "hello": 2}
    Tokenizer(models.WordLevel(vocabulary, unk_token="[UNK]")).save(str(hf / "tokenizer.json"))
    found = read_folder(hf)
    assert (found.tokenizer, found.pad_id) == ("hf/tokenizer.json", 3)
    assert not any("no tokenizer.json" in note for note in found.notes)


def sentence_transformer(hf: Path, mode: str | None, normalize: bool):
    """A BertModel saved as sentence-transformers saves one: modules.json, 1_Pooling/, 2_Normalize/."""
    model = transformers.BertModel(transformers.BertConfig(**TINY_BERT)).eval()
    model.save_pretrained(hf)
    if mode is None:
        return model
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    if normalize:
        modules.append(
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}
        )
        (hf / "2_Normalize").mkdir()
    (hf / "modules.json").write_text(json.dumps(modules))
    pooling = {
        "word_embedding_dimension": TINY_BERT["hidden_size"],
        "pooling_mode_cls_token": mode == "cls",
        "pooling_mode_mean_tokens": mode == "mean",
        "pooling_mode_max_tokens": mode == "max",
        "pooling_mode_mean_sqrt_len_tokens": mode == "sqrt",
        "pooling_mode_lasttoken": mode == "last",
        "pooling_mode_weightedmean_tokens": mode == "weighted",
    }
    (hf / "1_Pooling").mkdir()
    (hf / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    return model


def pooled_by_hand(model, mode: str, normalize: bool):
    ids, mask = torch.tensor(IDS), torch.tensor(MASK)
    with torch.no_grad():
        hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
    if mode == "cls":
        pooled = hidden[:, 0]
    elif mode == "max":
        pooled = torch.stack([hidden[row, : int(m.sum())].max(dim=0).values for row, m in enumerate(mask)])
    elif mode == "last":
        pooled = torch.stack([hidden[row, int(m.sum()) - 1] for row, m in enumerate(mask)])
    elif mode == "sqrt":
        pooled = torch.stack(
            [hidden[row, : int(m.sum())].sum(dim=0) / m.sum().sqrt() for row, m in enumerate(mask)]
        )
    else:
        pooled = torch.stack([hidden[row, : int(m.sum())].mean(dim=0) for row, m in enumerate(mask)])
    return pooled / pooled.norm(dim=1, keepdim=True) if normalize else pooled


@pytest.mark.parametrize(
    ("mode", "normalize", "pooling_line"),
    [
        ("mean", True, "pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)"),
        ("cls", True, "pooled = hidden[:, 0]"),
        ("max", False, "pooled = hidden.masked_fill(mask == 0, -1e9).amax(dim=1)"),
        ("last", True, "pooled = hidden[torch.arange(hidden.shape[0]), last]"),
        ("sqrt", False, "/ mask.sum(dim=1).clamp(min=1e-9).sqrt()"),
    ],
    ids=["mean-normalised", "cls-normalised", "max", "lasttoken", "mean-sqrt-len"],
)
def test_a_sentence_transformers_folder_is_an_embedding_pooled_and_normalised_as_its_modules_say(
    tmp_path, mode, normalize, pooling_line
):
    hf = hf_folder(tmp_path)
    model = sentence_transformer(hf, mode, normalize)
    found = read_folder(hf)
    assert (found.task, found.output, found.labels, found.inputs) == (
        "embedding",
        "embedding",
        (),
        TEXT_INPUTS,
    )
    assert "transformers.AutoModel\n" in found.network_py
    assert pooling_line in found.network_py
    ending = "return nn.functional.normalize(pooled, p=2.0, dim=1)" if normalize else "return pooled\n"
    assert ending in found.network_py
    then = ", then L2 normalisation" if normalize else ""
    mode = {"last": "last token", "sqrt": "mean sqrt len"}.get(mode, mode)
    assert f"embedding: {mode} pooling (sentence-transformers' 1_Pooling){then}" in found.notes
    rows = run_network(hf, found, torch.tensor(IDS), torch.tensor(MASK))
    assert rows.shape == (2, TINY_BERT["hidden_size"])
    by_hand = pooled_by_hand(
        model, {"last token": "last", "mean sqrt len": "sqrt"}.get(mode, mode), normalize
    )
    torch.testing.assert_close(rows, by_hand, atol=1e-5, rtol=1e-4)
    if normalize:
        torch.testing.assert_close(rows.norm(dim=1), torch.ones(2))


def test_a_bare_encoder_without_modules_json_is_an_embedding_mean_pooled_over_the_mask(tmp_path):
    hf = hf_folder(tmp_path)
    model = sentence_transformer(hf, None, False)
    found = read_folder(hf)
    assert (found.architecture, found.task) == ("BertModel", "embedding")
    assert "no sentence-transformers pooling given: mean over the attention mask" in found.notes
    assert "normalize" not in found.network_py
    rows = run_network(hf, found, torch.tensor(IDS), torch.tensor(MASK))
    torch.testing.assert_close(rows, pooled_by_hand(model, "mean", False), atol=1e-5, rtol=1e-4)


def test_a_vit_classifier_takes_pixel_values_sized_from_its_config(tmp_path):
    hf = hf_folder(tmp_path)
    config = {**TINY_VIT, "image_size": 48, "patch_size": 16, "num_channels": 1, "num_labels": 4}
    model = transformers.ViTForImageClassification(transformers.ViTConfig(**config)).eval()
    model.save_pretrained(hf)
    found = read_folder(hf)
    assert (found.task, found.output, found.labels) == ("image classification", "logits", ())
    assert found.inputs == (GivenInput("pixel_values", (2, 1, 48, 48), "float32"),)
    assert "pixel_values [batch, 1, 48, 48] from config.json's image_size" in found.notes
    assert "def forward(self, pixel_values):" in found.network_py
    assert found.image == {"resize": 48, "size": 48, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}
    pixels = torch.randn(2, 1, 48, 48, generator=torch.Generator().manual_seed(0))
    logits = run_network(hf, found, pixels)
    with torch.no_grad():
        torch.testing.assert_close(logits, model(pixel_values=pixels).logits, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    ("processor", "image"),
    [
        (
            {
                "size": {"height": 32, "width": 32},
                "image_mean": [0.5, 0.5, 0.5],
                "image_std": [0.5, 0.5, 0.5],
            },
            {"resize": 32, "size": 32, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]},
        ),
        (
            {
                "size": {"shortest_edge": 40},
                "crop_size": {"height": 32, "width": 32},
                "image_mean": [0.485, 0.456, 0.406],
                "image_std": [0.229, 0.224, 0.225],
            },
            {"resize": 40, "size": 32, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
        ),
    ],
    ids=["vit-height-width", "clip-shortest-edge-and-crop"],
)
def test_a_vits_image_steps_are_read_from_its_preprocessor_config(tmp_path, processor, image):
    hf = hf_folder(tmp_path)
    config = transformers.ViTConfig(**TINY_VIT, num_labels=2)
    transformers.ViTForImageClassification(config).save_pretrained(hf)
    (hf / "preprocessor_config.json").write_text(json.dumps(processor))
    found = read_folder(hf)
    assert found.inputs == (GivenInput("pixel_values", (2, 3, 32, 32), "float32"),)
    assert found.image == image


def test_an_architecture_init_does_not_read_is_refused_in_one_line(tmp_path):
    hf = hf_folder(tmp_path)
    (hf / "config.json").write_text(
        json.dumps({"architectures": ["LlamaForCausalLM"], "model_type": "llama"})
    )
    (hf / "model.safetensors").write_bytes(b"")
    message = refusal(hf)
    assert "architecture 'LlamaForCausalLM' is not one init reads" in message
    assert "*ForSequenceClassification" in message and "optimum-cli export onnx" in message


def test_a_folder_without_weights_is_refused_in_one_line(tmp_path):
    hf = hf_folder(tmp_path)
    transformers.BertConfig(**TINY_BERT).save_pretrained(hf)
    assert sorted(p.name for p in hf.iterdir()) == ["config.json"]
    message = refusal(hf)
    assert "a Hugging Face folder without weights (model.safetensors or pytorch_model.bin)" in message
    assert "save_pretrained()" in message


def test_a_pooling_init_does_not_write_is_refused_not_taken_for_mean(tmp_path):
    hf = hf_folder(tmp_path)
    sentence_transformer(hf, "weighted", normalize=False)
    message = refusal(hf)
    assert "pooling ['pooling_mode_weightedmean_tokens'] is not one init writes" in message


@pytest.mark.parametrize(
    ("architecture", "config"),
    [
        ("GPT2LMHeadModel", {"model_type": "gpt2", "vocab_size": 64}),  # a language model's head
        ("ViTModel", {"model_type": "vit", "image_size": 32}),  # an image encoder: no text inputs
        ("CLIPModel", {"model_type": "clip", "text_config": {}, "vision_config": {}}),
        ("T5Model", {"model_type": "t5", "vocab_size": 64, "is_encoder_decoder": True}),
    ],
)
def test_a_bare_model_that_is_not_a_text_encoder_is_refused_not_served_as_an_embedding(
    tmp_path, architecture, config
):
    hf = hf_folder(tmp_path)
    (hf / "config.json").write_text(json.dumps({"architectures": [architecture], **config}))
    (hf / "model.safetensors").write_bytes(b"")
    assert f"architecture '{architecture}' is not one init reads" in refusal(hf)


def test_a_convnext_style_crop_pct_resizes_above_the_crop_as_its_processor_does(tmp_path):
    hf = hf_folder(tmp_path)
    config = transformers.ViTConfig(**TINY_VIT, num_labels=2)
    transformers.ViTForImageClassification(config).save_pretrained(hf)
    processor = {
        "size": {"shortest_edge": 224},
        "crop_pct": 0.875,
        "image_mean": [0.5] * 3,
        "image_std": [0.5] * 3,
    }
    (hf / "preprocessor_config.json").write_text(json.dumps(processor))
    assert (read_folder(hf).image["resize"], read_folder(hf).image["size"]) == (256, 224)
