"""A folder of small PNG/JPEG images in ImageFolder layout and a tiny conv model that
classifies them, for the image-data tests.

Each class is a dominant colour over a seeded noise pattern: a_red, b_green, c_blue (sorted:
labels 0, 1, 2). The model (fixed weights, no training) is a 1x1 conv that passes each colour
channel through, ReLU, a global average and an identity linear layer: its output k is the
mean of channel k after normalization, so the dominant colour's class wins, in float and int8.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

CLASSES = ("a_red", "b_green", "c_blue")
PER_CLASS = 6
SIZE = (48, 40)  # width, height of the written images (resized to 32 by the tests)
PREPROCESS = "resize=32,crop=32,mean=0.485/0.456/0.406,std=0.229/0.224/0.225"

MODEL_PY = """
import torch
from torch import nn


def build_model() -> nn.Module:
    conv = nn.Conv2d(3, 3, 1)
    fc = nn.Linear(3, 3)
    with torch.no_grad():
        conv.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
        conv.bias.fill_(3.0)  # keeps every channel above 0 through the ReLU
        fc.weight.copy_(torch.eye(3))
        fc.bias.zero_()
    return nn.Sequential(conv, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), fc).eval()
"""


def image(label: int, k: int, seed: int = 0) -> np.ndarray:
    """One HxWx3 uint8 image of class ``label`` (its colour dominant), sample ``k``."""
    rng = np.random.default_rng([seed, label, k])
    w, h = SIZE
    yy, xx = np.mgrid[0:h, 0:w]
    pattern = 30 * np.sin((xx + 3 * k) / 5.0) * np.cos((yy - 2 * k) / 7.0)
    img = np.empty((h, w, 3), dtype=np.float64)
    for c in range(3):
        base = 190.0 if c == label else 50.0
        img[:, :, c] = base + pattern + rng.normal(0, 8, size=(h, w))
    return np.clip(img, 0, 255).astype(np.uint8)


def write_folder(root: Path, per_class: int = PER_CLASS, seed: int = 0) -> Path:
    """ImageFolder layout: even samples as PNG, odd as JPEG (quality 95)."""
    from PIL import Image

    for label, name in enumerate(CLASSES):
        d = root / name
        d.mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            im = Image.fromarray(image(label, k, seed))
            if k % 2 == 0:
                im.save(d / f"img{k:02d}.png")
            else:
                im.save(d / f"img{k:02d}.jpg", quality=95)
    return root


def write_model(folder: Path) -> str:
    """The model factory file; returns its source spec (path.py:build_model)."""
    path = folder / "colour_model.py"
    path.write_text(MODEL_PY)
    return f"{path}:build_model"
