"""A Hugging Face transformers folder (config.json and weights, read offline) for `init`: which task its
architecture serves, the module that returns that task's tensors (logits, or a sentence-transformers
embedding with the folder's own pooling), the inputs to run it with, its tokenizer and labels."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from triton_repo.builders.scaffold.torch_source import GivenInput
from triton_repo.core.errors import SpecError

FOLDER = "hf"  # where the Hugging Face files go in the model folder
EXAMPLE_TOKENS = 16
TASKS = {  # architecture suffix: (task, Auto class, what forward returns)
    "ForSequenceClassification": ("text classification", "AutoModelForSequenceClassification", "logits"),
    "ForTokenClassification": ("token classification", "AutoModelForTokenClassification", "logits"),
    "ForImageClassification": ("image classification", "AutoModelForImageClassification", "logits"),
}
POOLING = {  # sentence-transformers' pooling_mode_<key> -> how the network pools
    "mean_tokens": "mean",
    "cls_token": "cls",
    "max_tokens": "max",
    "lasttoken": "last token",
    "mean_sqrt_len_tokens": "mean sqrt len",
}
WEIGHTS = (
    "model.safetensors",
    "pytorch_model.bin",
    "model.safetensors.index.json",
    "pytorch_model.bin.index.json",
)


@dataclass(frozen=True)
class HfModel:
    folder: Path
    architecture: str
    task: str
    network_py: str  # the factory init writes: the folder's model, returning the task's tensor
    inputs: tuple[GivenInput, ...]
    output: str
    tokenizer: str | None  # tokenizer.json inside the model folder (hf/tokenizer.json)
    pad_id: int
    labels: tuple[str, ...]  # class names from id2label, when they say more than LABEL_<i>
    image: dict | None  # resize, size, mean, std from preprocessor_config.json
    notes: tuple[str, ...]


def read_folder(folder: Path) -> HfModel:
    """The task and module for a Hugging Face folder, or a one-line refusal."""
    config = _json(folder / "config.json")
    if not any((folder / name).is_file() for name in WEIGHTS):
        raise SpecError(
            f"{folder}: a Hugging Face folder without weights ({' or '.join(WEIGHTS[:2])}); init reads the "
            "model offline: save it with save_pretrained() into this folder"
        )
    architecture = (config.get("architectures") or [""])[0]
    sentence = (folder / "modules.json").is_file()
    found = next(((suffix, task) for suffix, task in TASKS.items() if architecture.endswith(suffix)), None)
    tokenizer = f"{FOLDER}/tokenizer.json" if (folder / "tokenizer.json").is_file() else None
    notes = [f"{folder.name}: {architecture or config.get('model_type', '?')} from config.json"]
    if found is not None and not sentence:
        task, auto, output = found[1]
    elif sentence or _text_encoder(architecture, config):
        task, auto, output = "embedding", "AutoModel", "embedding"
    else:
        known = ", ".join(f"*{suffix}" for suffix in TASKS)
        raise SpecError(
            f"{folder}: architecture '{architecture or '?'}' is not one init reads (sentence embeddings, "
            f"*Model, {known}): export it to ONNX (optimum-cli export onnx) and run init on model.onnx"
        )
    image = task == "image classification"
    if image:
        channels, side = int(config.get("num_channels", 3)), _side(config)
        inputs = (GivenInput("pixel_values", (2, channels, side, side), "float32"),)
        notes.append(f"pixel_values [batch, {channels}, {side}, {side}] from config.json's image_size")
    else:
        shape = (2, EXAMPLE_TOKENS)
        inputs = (GivenInput("input_ids", shape, "int64"), GivenInput("attention_mask", shape, "int64"))
        if tokenizer is None:
            notes.append("no tokenizer.json: clients send token ids (no text ensemble)")
    body, pooling_note = _forward_body(folder, task)
    if pooling_note:
        notes.append(pooling_note)
    labels = _labels(config) if task not in ("embedding", "token classification") else ()
    if task == "token classification" and _labels(config):
        # Triton's class_count ranks one vector of class scores per row, not one per token
        notes.append(
            "the tag names (id2label) stay in hf/config.json: a per-token output takes no labels file"
        )
    return HfModel(
        folder=folder,
        architecture=architecture,
        task=task,
        network_py=NETWORK.format(
            architecture=architecture or "the model",
            task=task,
            auto=auto,
            arguments=", ".join(given.name for given in inputs),
            body=body,
        ),
        inputs=inputs,
        output=output,
        tokenizer=tokenizer,
        pad_id=int(config.get("pad_token_id") or 0),
        labels=labels,
        image=_image_steps(folder, config) if image else None,
        notes=tuple(notes),
    )


NOT_ENCODERS = (
    "LMHeadModel",
    "DoubleHeadsModel",
    "PreTrainedModel",
    "ForCausalLM",
    "ForConditionalGeneration",
)


def _text_encoder(architecture: str, config: dict) -> bool:
    """A bare text encoder (BertModel, RobertaModel...): its hidden states pooled are an embedding. Not a
    language model's head, an encoder-decoder, or a vision or multimodal model."""
    if not architecture.endswith("Model") or architecture.endswith(NOT_ENCODERS):
        return False
    other = ("image_size", "vision_config", "text_config", "audio_config", "num_mel_bins")
    return (
        "vocab_size" in config
        and not config.get("is_encoder_decoder")
        and not any(k in config for k in other)
    )


def _json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise SpecError(f"{path}: not readable as JSON ({error})") from None
    if not isinstance(value, dict):
        raise SpecError(f"{path}: not a Hugging Face config (a JSON object)")
    return value


def _side(config: dict) -> int:
    size = config.get("image_size", 224)
    return int(size[0] if isinstance(size, list | tuple) else size)


def _labels(config: dict) -> tuple[str, ...]:
    id2label = config.get("id2label") or {}
    try:
        names = [str(id2label[key]) for key in sorted(id2label, key=int)]
    except (TypeError, ValueError):
        return ()
    if not names or all(name == f"LABEL_{i}" for i, name in enumerate(names)):
        return ()  # the default names say nothing a class index does not
    return tuple(names)


def _forward_body(folder: Path, task: str) -> tuple[str, str]:
    if task == "image classification":
        return "return self.model(pixel_values=pixel_values).logits", ""
    call = "self.model(input_ids=input_ids, attention_mask=attention_mask)"
    if task != "embedding":
        return f"return {call}.logits", ""
    modes, normalize, said = _pooling(folder)
    lines = [f"hidden = {call}.last_hidden_state"]
    lines.append("mask = attention_mask.unsqueeze(-1).to(hidden.dtype)")
    if modes == "cls":
        lines.append("pooled = hidden[:, 0]")
    elif modes == "max":
        lines.append("pooled = hidden.masked_fill(mask == 0, -1e9).amax(dim=1)")
    elif modes == "last token":
        lines.append("last = attention_mask.sum(dim=1).clamp(min=1) - 1  # right padding")
        lines.append("pooled = hidden[torch.arange(hidden.shape[0]), last]")
    elif modes == "mean sqrt len":
        lines.append("pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9).sqrt()")
    else:
        lines.append("pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)")
    lines.append("return nn.functional.normalize(pooled, p=2.0, dim=1)" if normalize else "return pooled")
    return "\n        ".join(lines), said


def _pooling(folder: Path) -> tuple[str, bool, str]:
    """The sentence-transformers pooling (mean, cls or max) and whether it normalises."""
    modules = _json_list(folder / "modules.json")
    kinds = [str(m.get("type", "")) for m in modules]
    normalize = any(kind.endswith(".Normalize") for kind in kinds)
    pooling = next((m for m in modules if str(m.get("type", "")).endswith(".Pooling")), None)
    if pooling is None:
        return "mean", normalize, "no sentence-transformers pooling given: mean over the attention mask"
    settings = _json(folder / str(pooling.get("path", "")) / "config.json")
    modes = [key for key, value in settings.items() if key.startswith("pooling_mode_") and value is True]
    known = {f"pooling_mode_{k}": v for k, v in POOLING.items()}
    if len(modes) != 1 or modes[0] not in known:
        raise SpecError(
            f"{folder}: sentence-transformers pooling {modes or 'none'} is not one init writes (one of "
            f"{', '.join(known)}): write network.py by hand (docs/spec.md)"
        )
    mode = known[modes[0]]
    then = ", then L2 normalisation" if normalize else ""
    return mode, normalize, f"embedding: {mode} pooling (sentence-transformers' {pooling.get('path')}){then}"


def _json_list(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    try:
        value = json.loads(path.read_text())
    except ValueError:
        return []
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _image_steps(folder: Path, config: dict) -> dict:
    """The ensemble's image step as the folder's preprocessor_config.json describes it."""
    processor = {}
    if (folder / "preprocessor_config.json").is_file():
        processor = _json(folder / "preprocessor_config.json")
    side = _side(config)
    size = processor.get("crop_size") or processor.get("size") or side
    if isinstance(size, dict):
        size = size.get("height") or size.get("shortest_edge") or side
    resize = processor.get("size", side)
    if isinstance(resize, dict):
        resize = resize.get("shortest_edge") or resize.get("height") or side
    if processor.get("crop_pct") and not processor.get(
        "crop_size"
    ):  # ConvNeXt: resize size/crop_pct, crop size
        size, resize = int(resize), int(int(resize) / float(processor["crop_pct"]))
    return {
        "resize": int(resize),
        "size": int(size),
        "mean": [float(v) for v in processor.get("image_mean", (0.5, 0.5, 0.5))][:3],
        "std": [float(v) for v in processor.get("image_std", (0.5, 0.5, 0.5))][:3],
    }


NETWORK = '''"""{architecture} from hf/ (a Hugging Face folder, read offline) as one module returning tensors,
for {task}. Written by `triton-repo init`; the build exports it to ONNX."""

from pathlib import Path

import torch
from torch import nn

HF = Path(__file__).parent / "hf"


class Network(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        import transformers
        from transformers.utils import logging

        logging.set_verbosity_error()
        logging.disable_progress_bar()
        auto = transformers.{auto}
        self.model = auto.from_pretrained(str(HF), local_files_only=True, attn_implementation="eager")

    def forward(self, {arguments}):
        {body}


def build() -> nn.Module:
    return Network().eval()
'''
