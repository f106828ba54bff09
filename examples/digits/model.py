"""A small CNN for scikit-learn's bundled 8x8 digits, upsampled to 32x32.

`build_model()` is the factory edgepack loads: `examples/digits/model.py:build_model`.
"""

from __future__ import annotations

import torch
from torch import nn

INPUT_SHAPE = (1, 1, 32, 32)


class DigitsCNN(nn.Module):
    def __init__(self, widths: tuple[int, int, int] = (32, 64, 128), num_classes: int = 10):
        super().__init__()
        c1, c2, c3 = widths
        self.features = nn.Sequential(
            nn.Conv2d(1, c1, 3, padding=1, bias=False),
            nn.BatchNorm2d(c1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 16x16
            nn.Conv2d(c1, c2, 3, padding=1, bias=False),
            nn.BatchNorm2d(c2),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 8x8
            nn.Conv2d(c2, c3, 3, padding=1, bias=False),
            nn.BatchNorm2d(c3),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.classifier = nn.Linear(c3, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def build_model() -> nn.Module:
    return DigitsCNN()


def build_model_with_inputs() -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """The factory may also return example inputs; edgepack then needs no --input-shape."""
    return DigitsCNN(), (torch.zeros(INPUT_SHAPE),)
