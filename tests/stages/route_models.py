"""Tiny models for the quantization-route and float-parity tests, built with fixed seeds.

TinyResNet: a stem with a padded max-pool (Conv -> BN -> ReLU -> MaxPool2d(3, stride 2,
padding 1), as in ResNet) and two basic blocks with residual adds. BatchNorm statistics are
estimated on random data so every layer carries signal (export folds BN into the convs).
Scaled: outputs of ~1e-9.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SHAPE = (1, 3, 32, 32)


class BasicBlock(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(x + self.bn2(self.conv2(y)))


class TinyResNet(nn.Module):
    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1, bias=False),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        self.blocks = nn.Sequential(BasicBlock(16), BasicBlock(16))
        self.fc = nn.Linear(16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))
        return self.fc(x.mean(dim=(2, 3)))


def build_model() -> nn.Module:
    torch.manual_seed(0)
    model = TinyResNet()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = None  # cumulative average over the estimation batches
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.2, 0.2)
    model.train()
    with torch.no_grad():
        for _ in range(4):
            model(torch.randn(32, *SHAPE[1:]))
    return model.eval()


def calibration_data(n: int, seed: int) -> dict[str, object]:
    import numpy as np

    rng = np.random.default_rng(seed)
    return {"x": rng.standard_normal((n, *SHAPE[1:])).astype(np.float32)}


class Scaled(nn.Module):
    """A small MLP whose outputs are ~1e-9: absolute differences say nothing about it."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(8, 16)
        self.fc2 = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.fc1(x))) * 1e-9


def build_scaled(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return Scaled().eval()
