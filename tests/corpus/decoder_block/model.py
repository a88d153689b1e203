"""A transformer decoder block (pre-norm self-attention with a causal mask, MLP) over token ids."""

import numpy as np
import torch
from torch import nn

VOCAB = 64


class DecoderBlock(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(5)
        self.embed = nn.Embedding(VOCAB, 32)
        self.position = nn.Embedding(128, 32)
        self.norm1, self.norm2 = nn.LayerNorm(32), nn.LayerNorm(32)
        self.attention = nn.MultiheadAttention(32, 4, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(32, 64), nn.GELU(), nn.Linear(64, 32))
        self.head = nn.Linear(32, VOCAB)

    def forward(self, ids):
        seq = ids.shape[1]
        x = self.embed(ids) + self.position(torch.arange(seq, device=ids.device))[None]
        causal = torch.triu(torch.full((seq, seq), float("-inf")), diagonal=1)
        h = self.norm1(x)
        x = x + self.attention(h, h, h, attn_mask=causal, need_weights=False)[0]
        x = x + self.mlp(self.norm2(x))
        return self.head(x)


def build():
    return DecoderBlock().eval()


def _ids(seed, n, seq=16):
    rng = np.random.default_rng(seed)
    return {"ids": rng.integers(0, VOCAB, size=(n, seq)).astype(np.int64)}


def sample():
    return _ids(0, 2)


def calibration():
    return _ids(1, 32)


def evaluation():
    return _ids(2, 32)
