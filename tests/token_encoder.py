"""A small sentence-encoder-like transformer for the tests: int64 token ids + int64 attention
mask in, per-token hidden states [N, T, D] out (like a pretrained encoder's last hidden state).

Fixed seed, no training (the checks compare the converted model with this PyTorch model, not
with labels). Padding positions (mask 0) are filled with token 0 and excluded from attention.

Two configurations, built from an :class:`EncoderConfig` (no download): the default 2-layer
one (``build_encoder``) and a 6-layer, 64-wide one (``build_encoder6``, BERT's post-norm block
layout at a small size) for the full-int8 encoder route and the bounded fallback search.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

VOCAB, SEQ, DIM, HEADS, LAYERS = 300, 16, 32, 2, 2
SHAPES = ("input_ids=1x16:int64", "attention_mask=1x16:int64")


@dataclass(frozen=True)
class EncoderConfig:
    vocab: int = VOCAB
    seq: int = SEQ
    dim: int = DIM
    heads: int = HEADS
    layers: int = LAYERS
    seed: int = 0

    @property
    def shapes(self) -> tuple[str, str]:
        return (f"input_ids=1x{self.seq}:int64", f"attention_mask=1x{self.seq}:int64")


DEFAULT = EncoderConfig()
SIX_LAYERS = EncoderConfig(vocab=1000, seq=32, dim=64, heads=4, layers=6)


class Layer(nn.Module):
    def __init__(self, dim: int = DIM, heads: int = HEADS) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.ln1 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, 4 * dim)
        self.fc2 = nn.Linear(4 * dim, dim)
        self.ln2 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        h = self.heads
        q, k, v = self.qkv(x).split(c, dim=-1)
        q = q.view(b, t, h, c // h).transpose(1, 2)
        k = k.view(b, t, h, c // h).transpose(1, 2)
        v = v.view(b, t, h, c // h).transpose(1, 2)
        a = torch.softmax(q @ k.transpose(-2, -1) / (c // h) ** 0.5 + bias, dim=-1)
        y = (a @ v).transpose(1, 2).reshape(b, t, c)
        x = self.ln1(x + self.proj(y))  # post-norm, as in BERT
        return self.ln2(x + self.fc2(F.gelu(self.fc1(x))))


class TokenEncoder(nn.Module):
    def __init__(self, cfg: EncoderConfig = DEFAULT) -> None:
        super().__init__()
        self.tok = nn.Embedding(cfg.vocab, cfg.dim)
        self.pos = nn.Parameter(torch.randn(1, cfg.seq, cfg.dim) * 0.1)
        self.ln = nn.LayerNorm(cfg.dim)
        self.layers = nn.ModuleList(Layer(cfg.dim, cfg.heads) for _ in range(cfg.layers))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        bias = (1.0 - attention_mask[:, None, None, :].float()) * -1e4
        x = self.ln(self.tok(input_ids) + self.pos)
        for layer in self.layers:
            x = layer(x, bias)
        return x


def build_encoder(cfg: EncoderConfig = DEFAULT) -> nn.Module:
    torch.manual_seed(cfg.seed)
    return TokenEncoder(cfg).eval()


def build_encoder6() -> nn.Module:
    return build_encoder(SIX_LAYERS)


def token_batch(n: int, seed: int, cfg: EncoderConfig = DEFAULT) -> tuple[np.ndarray, np.ndarray]:
    """Sentences of 4..seq tokens (ids 1..vocab-1), padded with id 0 and mask 0."""
    g = np.random.default_rng(seed)
    ids = np.zeros((n, cfg.seq), dtype=np.int64)
    mask = np.zeros((n, cfg.seq), dtype=np.int64)
    for i in range(n):
        k = int(g.integers(4, cfg.seq + 1))
        ids[i, :k] = g.integers(1, cfg.vocab, size=k)
        mask[i, :k] = 1
    return ids, mask


def write_files(
    folder: Path, calib: int = 16, evaluation: int = 64, cfg: EncoderConfig = DEFAULT
) -> dict[str, Path]:
    """weights.pt (fixed seed), calib.npz and eval.npz keyed by input name."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(build_encoder(cfg).state_dict(), folder / "weights.pt")
    ids, mask = token_batch(calib, 0, cfg)
    np.savez(folder / "calib.npz", input_ids=ids, attention_mask=mask)
    ids, mask = token_batch(evaluation, 1, cfg)
    np.savez(folder / "eval.npz", input_ids=ids, attention_mask=mask)
    return {
        "weights": folder / "weights.pt",
        "calib": folder / "calib.npz",
        "eval": folder / "eval.npz",
    }


def _argv(
    factory: str, shapes: Sequence[str], options: list[str], out: Path, extra: Sequence[str]
) -> list[str]:
    """`edgepack build` argv for ``factory`` of this file: ``options`` (``--weights W``
    first, then target and data) around its input shapes, no host latency, quiet, ``extra``."""
    args = ["build", f"{Path(__file__).resolve()}:{factory}", *options[:2]]
    for s in shapes:
        args += ["--input-shape", s]
    return [*args, *options[2:], "-o", str(out), "--latency-runs", "0", "--quiet", *extra]


def build_args(files: dict[str, Path], out: Path, *extra: str) -> list[str]:
    """`edgepack build` argv for a dynamic-range package of the encoder for this machine
    (target host: XNNPACK pre-flight, benchmarked locally)."""
    options = ["--weights", str(files["weights"]), "--target", "host"]
    options += ["--quantization", "dynamic-range", "--calibration", str(files["calib"])]
    return _argv("build_encoder", SHAPES, options, out, extra)


def build_args6(files: dict[str, Path], out: Path, *extra: str) -> list[str]:
    """`edgepack build` argv for the 6-layer encoder with the stock rpi4 profile's default
    (no --quantization: the profile's list decides)."""
    options = ["--weights", str(files["weights"]), "--target", "rpi4"]
    options += ["--calibration", str(files["calib"]), "--eval", str(files["eval"])]
    return _argv("build_encoder6", SIX_LAYERS.shapes, options, out, extra)
