"""Tiny models for the compression tests: residual adds, concatenation, depthwise convs, batch
norm, and two the channel pruner cannot analyse. Built with fixed seeds."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from edgepack.stages.base import InputSpec, TorchModel

REPO = Path(__file__).resolve().parents[2]
DIGITS = REPO / "examples" / "digits"


class ResidualConcatNet(nn.Module):
    """stem -> (residual block) -> depthwise + pointwise -> concat of two branches -> head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16))
        self.res1 = nn.Conv2d(16, 16, 3, padding=1)
        self.res_bn = nn.BatchNorm2d(16)
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.pw = nn.Conv2d(16, 24, 1)
        self.branch_a = nn.Conv2d(24, 16, 1)
        self.branch_b = nn.Conv2d(24, 8, 3, padding=1)
        self.head = nn.Linear(24, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem(x))
        x = F.relu(x + self.res_bn(self.res1(x)))  # residual add
        x = F.relu(self.pw(self.dw(x)))  # depthwise + pointwise
        x = torch.cat([self.branch_a(x), self.branch_b(x)], dim=1)  # concat
        return self.head(x.mean(dim=(2, 3)))


class HandWrittenConv(nn.Module):
    """A conv whose weight is a bare nn.Parameter: torch-pruning cannot know its axes."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, 3, 3) * 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, padding=1)


class CustomLayerNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.mixer = HandWrittenConv(8, 8)
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.mixer(F.relu(self.conv(x))).mean(dim=(2, 3)))


class HandFlattenNet(nn.Module):
    """Flattens by hand into a Linear: torch-pruning cannot map the conv's channels to it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 8 * 8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv(x))
        return self.fc(x.reshape(x.shape[0], 8, 64).reshape(x.shape[0], 512))


class FixedReshapeNet(nn.Module):
    """forward() reshapes with a fixed channel count: fails once channels are removed."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv(x))
        x = x.reshape(x.shape[0], 8, 64).mean(-1)
        return self.fc(x)


def wrap(module: nn.Module, shape: tuple[int, ...], name: str = "model") -> TorchModel:
    return TorchModel(
        module=module.eval(),
        example_inputs=(torch.zeros(shape),),
        inputs=(InputSpec("x", shape),),
        source={"spec": name},
        name=name,
    )


def tiny(cls: type[nn.Module], shape: tuple[int, ...] = (1, 3, 8, 8), seed: int = 0) -> TorchModel:
    torch.manual_seed(seed)
    return wrap(cls(), shape, cls.__name__)


def digits_model() -> TorchModel:
    spec = importlib.util.spec_from_file_location("digits_model", DIGITS / "model.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    m = mod.build_model()
    m.load_state_dict(torch.load(DIGITS / "weights.pt", weights_only=True))
    return wrap(m, (1, 1, 32, 32), "digits")


class HardCodedSplitNet(nn.Module):
    """forward() splits with fixed sizes: traced fine, fails once channels are removed."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = torch.split(F.relu(self.conv(x)), [4, 4], dim=1)
        return self.fc((a * b).mean(dim=(2, 3)))
