"""Train the digits CNN and write weights.pt, calib.npz, eval.npz and train.npz.

Data: scikit-learn's bundled digits (no download). 8x8 images scaled to [0, 1] and
upsampled to 32x32. Split: 450 held-out images for eval, the rest for training; the
calibration set is 200 training images. Deterministic (fixed seeds, one thread).

    python examples/digits/train.py            # writes into examples/digits/
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from model import DigitsCNN  # noqa: E402


def load_digits_32() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy(d.images.astype(np.float32) / 16.0).unsqueeze(1)
    x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)
    return x.numpy().astype(np.float32), d.target.astype(np.int64)


def split(x: np.ndarray, y: np.ndarray, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    idx = np.random.default_rng(seed).permutation(len(x))
    ev, tr = idx[:450], idx[450:]
    return {"train": (x[tr], y[tr]), "eval": (x[ev], y[ev]), "calib": (x[tr[:200]], y[tr[:200]])}


def train(
    model: torch.nn.Module, x: np.ndarray, y: np.ndarray, epochs: int, seed: int = 0
) -> torch.nn.Module:
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(xt), generator=gen)
        for i in range(0, len(xt), 64):
            b = perm[i : i + 64]
            loss = F.cross_entropy(model(xt[b]), yt[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    return model.eval()


def accuracy(model: torch.nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    with torch.no_grad():
        pred = model(torch.from_numpy(x)).argmax(1).numpy()
    return float((pred == y).mean() * 100)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, default=HERE)
    ap.add_argument("--epochs", type=int, default=12)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    x, y = load_digits_32()
    parts = split(x, y)
    model = train(DigitsCNN(), *parts["train"], epochs=args.epochs)
    args.out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), args.out / "weights.pt")
    for name, (xs, ys) in parts.items():
        np.savez_compressed(args.out / f"{name}.npz", x=xs, y=ys)
    print(f"eval top-1: {accuracy(model, *parts['eval']):.2f}%  (train {len(parts['train'][0])})")


if __name__ == "__main__":
    main()
