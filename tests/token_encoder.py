"""A small sentence-encoder-like transformer for the tests: int64 token ids + int64 attention
mask in, per-token hidden states [N, T, D] out (like a pretrained encoder's last hidden state).

Fixed seed, no training (the checks compare the converted model with this PyTorch model, not
with labels). Padding positions (mask 0) are filled with token 0 and excluded from attention.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

VOCAB, SEQ, DIM, HEADS, LAYERS = 300, 16, 32, 2, 2
SHAPES = ("input_ids=1x16:int64", "attention_mask=1x16:int64")


class Layer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.qkv = nn.Linear(DIM, 3 * DIM)
        self.proj = nn.Linear(DIM, DIM)
        self.ln1 = nn.LayerNorm(DIM)
        self.fc1 = nn.Linear(DIM, 4 * DIM)
        self.fc2 = nn.Linear(4 * DIM, DIM)
        self.ln2 = nn.LayerNorm(DIM)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        h = HEADS
        q, k, v = self.qkv(x).split(c, dim=-1)
        q = q.view(b, t, h, c // h).transpose(1, 2)
        k = k.view(b, t, h, c // h).transpose(1, 2)
        v = v.view(b, t, h, c // h).transpose(1, 2)
        a = torch.softmax(q @ k.transpose(-2, -1) / (c // h) ** 0.5 + bias, dim=-1)
        y = (a @ v).transpose(1, 2).reshape(b, t, c)
        x = self.ln1(x + self.proj(y))  # post-norm, as in BERT
        return self.ln2(x + self.fc2(F.gelu(self.fc1(x))))


class TokenEncoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.tok = nn.Embedding(VOCAB, DIM)
        self.pos = nn.Parameter(torch.randn(1, SEQ, DIM) * 0.1)
        self.ln = nn.LayerNorm(DIM)
        self.layers = nn.ModuleList(Layer() for _ in range(LAYERS))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        bias = (1.0 - attention_mask[:, None, None, :].float()) * -1e4
        x = self.ln(self.tok(input_ids) + self.pos)
        for layer in self.layers:
            x = layer(x, bias)
        return x


def build_encoder() -> nn.Module:
    torch.manual_seed(0)
    return TokenEncoder().eval()


def token_batch(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sentences of 4..16 tokens (ids 1..VOCAB-1), padded with id 0 and mask 0."""
    g = np.random.default_rng(seed)
    ids = np.zeros((n, SEQ), dtype=np.int64)
    mask = np.zeros((n, SEQ), dtype=np.int64)
    for i in range(n):
        k = int(g.integers(4, SEQ + 1))
        ids[i, :k] = g.integers(1, VOCAB, size=k)
        mask[i, :k] = 1
    return ids, mask


def write_files(folder: Path, calib: int = 16, evaluation: int = 64) -> dict[str, Path]:
    """weights.pt (fixed seed), calib.npz and eval.npz keyed by input name."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(build_encoder().state_dict(), folder / "weights.pt")
    ids, mask = token_batch(calib, 0)
    np.savez(folder / "calib.npz", input_ids=ids, attention_mask=mask)
    ids, mask = token_batch(evaluation, 1)
    np.savez(folder / "eval.npz", input_ids=ids, attention_mask=mask)
    return {
        "weights": folder / "weights.pt",
        "calib": folder / "calib.npz",
        "eval": folder / "eval.npz",
    }


def build_args(files: dict[str, Path], out: Path, *extra: str) -> list[str]:
    """`edgepack build` argv for a dynamic-range package of the encoder for this machine
    (target host: XNNPACK pre-flight, benchmarked locally)."""
    args = [
        "build",
        f"{Path(__file__).resolve()}:build_encoder",
        "--weights",
        str(files["weights"]),
    ]
    for s in SHAPES:
        args += ["--input-shape", s]
    return [
        *args,
        "--target",
        "host",
        "--quantization",
        "dynamic-range",
        "--calibration",
        str(files["calib"]),
        "-o",
        str(out),
        "--latency-runs",
        "0",
        "--quiet",
        *extra,
    ]
