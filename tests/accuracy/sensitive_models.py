"""Tiny models made sensitive to int8 on purpose, trained in seconds with fixed seeds.

The tests do not train them: training results depend on the CPU's vector ISA and thread count,
so the trained weights are checked in (tests/accuracy/fixtures/*.pt, state_dicts loaded with
``weights_only=True``) and every machine tests the same models. This file regenerates them:
``python tests/accuracy/sensitive_models.py``.

Both use a function-preserving rescaling to plant the activation outliers that long training
produces in real networks (a few channels 100x larger than the rest): the float model computes
the same function, but one per-tensor int8 scale now has to cover the outlier, and every other
channel of that tensor loses its resolution.

- ``DigitsNet``: a CNN on scikit-learn's 8x8 digits; conv1 output channel 0 is multiplied by
  ``gain`` and conv2's weights reading it divided by ``gain`` (ReLU and max-pool commute with a
  positive scale).
- ``TinyEncoder``: token embedding + one attention block (LayerNorm, multi-head attention,
  GELU MLP) + mean pool + classifier, trained on a synthetic token-pattern task. Like
  pretrained transformers ("massive activations" at the first token, the attention sink), the
  residual stream of token 0 carries two channels of size ``sink`` (a buffer, part of the
  weights, present during training). LayerNorm works per token, so the float model does not
  mind; one int8 scale for the whole residual tensor does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

VOCAB, SEQ, DIM, CLASSES, HEADS = 32, 16, 32, 4, 2
FIXTURES = Path(__file__).resolve().parent / "fixtures"
DIGITS_WEIGHTS = FIXTURES / "digits_gain300.pt"
ENCODER_WEIGHTS = FIXTURES / "encoder_sink1000.pt"
DIGITS_GAIN = 300.0  # conv1 channel 0 x300, conv2 reads it /300: same float function
ENCODER_SINK = 1000.0  # token 0 carries two residual channels of size 1000


class DigitsNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.conv3 = nn.Conv2d(32, 32, 3, padding=1)
        self.fc = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)  # 4x4
        x = F.relu(self.conv2(x))
        x = F.relu(self.conv3(x)).mean(dim=(2, 3))
        return self.fc(x)


class Block(nn.Module):
    def __init__(self, d: int = DIM, heads: int = HEADS) -> None:
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, 4 * d)
        self.fc2 = nn.Linear(4 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        h = self.heads
        q, k, v = self.qkv(self.ln1(x)).split(c, dim=-1)
        q = q.view(b, t, h, c // h).transpose(1, 2)
        k = k.view(b, t, h, c // h).transpose(1, 2)
        v = v.view(b, t, h, c // h).transpose(1, 2)
        a = torch.softmax(q @ k.transpose(-2, -1) / (c // h) ** 0.5, dim=-1)
        y = (a @ v).transpose(1, 2).reshape(b, t, c)
        x = x + self.proj(y)
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class TinyEncoder(nn.Module):
    def __init__(self, sink: float = 0.0) -> None:
        super().__init__()
        self.register_buffer("sink", torch.zeros(1, SEQ, DIM))
        self.sink[0, 0, :2] = sink
        self.tok = nn.Embedding(VOCAB, DIM)
        self.pos = nn.Parameter(torch.zeros(1, SEQ, DIM))
        self.block = Block()
        self.ln = nn.LayerNorm(DIM)
        self.head = nn.Linear(DIM, CLASSES)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.block(self.tok(ids) + self.pos + self.sink)
        return self.head(self.ln(x).mean(1))


def digits_data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8x8 digits (no download), scaled to [0, 1]; 1347 train, 450 eval."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]
    y = d.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    return x[:1347], y[:1347], x[1347:], y[1347:]


def token_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Class c: token id c appears at two random positions among random ids 4..31."""
    g = np.random.default_rng(seed)
    ids = g.integers(CLASSES, VOCAB, size=(n, SEQ))
    y = g.integers(0, CLASSES, size=n)
    for i in range(n):
        ids[i, g.choice(SEQ, 2, replace=False)] = y[i]
    return ids.astype(np.int64), y.astype(np.int64)


def _train(model: nn.Module, x: np.ndarray, y: np.ndarray, epochs: int, lr: float) -> None:
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    model.train()
    for ep in range(epochs):
        perm = torch.from_numpy(np.random.default_rng(ep).permutation(len(x)))
        for s in range(0, len(x), 64):
            idx = perm[s : s + 64]
            loss = F.cross_entropy(model(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()


@torch.no_grad()
def plant_conv_outlier(model: DigitsNet, gain: float) -> None:
    model.conv1.weight[0] *= gain
    model.conv1.bias[0] *= gain
    model.conv2.weight[:, 0] /= gain


def train_digits(gain: float = 1.0) -> DigitsNet:
    torch.manual_seed(0)
    m = DigitsNet()
    xtr, ytr, _, _ = digits_data()
    _train(m, xtr, ytr, epochs=15, lr=1e-2)
    if gain != 1.0:
        plant_conv_outlier(m, gain)
    return m


def train_encoder(sink: float = 0.0) -> TinyEncoder:
    torch.manual_seed(0)
    m = TinyEncoder(sink)
    x, y = token_data(2000, 0)
    _train(m, x, y, epochs=6, lr=3e-3)
    return m


def _load(model: nn.Module, path: Path) -> nn.Module:
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval()


def write_digits_files(folder: Path) -> dict[str, Path]:
    """weights.pt, calib.npz, eval.npz for `edgepack build` (model.py is this file)."""
    folder.mkdir(parents=True, exist_ok=True)
    m = _load(DigitsNet(), DIGITS_WEIGHTS)
    torch.save(m.state_dict(), folder / "weights.pt")
    xtr, _, xev, yev = digits_data()
    np.savez(folder / "calib.npz", x=xtr[:200])
    np.savez(folder / "eval.npz", x=xev, y=yev)
    return {
        "weights": folder / "weights.pt",
        "calib": folder / "calib.npz",
        "eval": folder / "eval.npz",
    }


def write_encoder_files(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    m = _load(TinyEncoder(), ENCODER_WEIGHTS)
    torch.save(m.state_dict(), folder / "weights.pt")
    xtr, _ = token_data(200, 0)
    xev, yev = token_data(300, 1)
    np.savez(folder / "calib.npz", x=xtr)
    np.savez(folder / "eval.npz", x=xev, y=yev)
    np.savez(folder / "eval_unlabelled.npz", x=xev)
    return {
        "weights": folder / "weights.pt",
        "calib": folder / "calib.npz",
        "eval": folder / "eval.npz",
        "eval_unlabelled": folder / "eval_unlabelled.npz",
    }


def build_digits() -> nn.Module:
    return DigitsNet()


def build_encoder() -> nn.Module:
    return TinyEncoder()


def regenerate() -> None:
    """Train both models (fixed seeds, one thread) and write the checked-in weights."""
    torch.set_num_threads(1)
    FIXTURES.mkdir(exist_ok=True)
    torch.save(train_digits(DIGITS_GAIN).state_dict(), DIGITS_WEIGHTS)
    torch.save(train_encoder(ENCODER_SINK).state_dict(), ENCODER_WEIGHTS)


if __name__ == "__main__":
    regenerate()
