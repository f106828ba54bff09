"""Model factories for the benchmarks: fixed seeds, random weights, nothing downloaded.

- ``mobilenet_v2_like``: the MobileNetV2 layout (width 1.0, 1000 classes), 3.5M parameters;
- ``resnet50_like``: the ResNet-50 layout (bottlenecks 3-4-6-3, 1000 classes), 25.6M
  parameters. Its stem max-pool is unpadded: a padded max-pool lowers to PADV2, which the
  TFLite calibrator leaves in float (a different question from build overhead).

Used as ``benchmarks/bench_models.py:mobilenet_v2_like`` by `edgepack build` and imported by
the plain scripts the benchmarks compare against.
"""

from __future__ import annotations

from typing import Any


def _conv_bn(cin: int, cout: int, k: int, stride: int, groups: int = 1, act: Any = None) -> Any:
    from torch import nn

    layers = [
        nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


def mobilenet_v2_like() -> Any:
    import torch
    from torch import nn

    class Inverted(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
            super().__init__()
            hidden = cin * expand
            layers = [] if expand == 1 else [_conv_bn(cin, hidden, 1, 1, act=nn.ReLU6)]
            layers += [
                _conv_bn(hidden, hidden, 3, stride, groups=hidden, act=nn.ReLU6),
                _conv_bn(hidden, cout, 1, 1),
            ]
            self.body = nn.Sequential(*layers)
            self.residual = stride == 1 and cin == cout

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.body(x) if self.residual else self.body(x)

    torch.manual_seed(0)
    blocks: list[nn.Module] = [_conv_bn(3, 32, 3, 2, act=nn.ReLU6)]
    cin = 32
    for t, c, n, s in (
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    ):
        for i in range(n):
            blocks.append(Inverted(cin, c, s if i == 0 else 1, t))
            cin = c
    blocks += [
        _conv_bn(cin, 1280, 1, 1, act=nn.ReLU6),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(1280, 1000),
    ]
    return nn.Sequential(*blocks).eval()


def resnet50_like() -> Any:
    import torch
    from torch import nn

    class Bottleneck(nn.Module):
        def __init__(self, cin: int, width: int, stride: int) -> None:
            super().__init__()
            cout = width * 4
            self.body = nn.Sequential(
                _conv_bn(cin, width, 1, 1, act=nn.ReLU),
                _conv_bn(width, width, 3, stride, act=nn.ReLU),
                _conv_bn(width, cout, 1, 1),
            )
            self.down = (
                _conv_bn(cin, cout, 1, stride) if stride != 1 or cin != cout else nn.Identity()
            )
            self.relu = nn.ReLU()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.relu(self.body(x) + self.down(x))

    torch.manual_seed(0)
    layers: list[nn.Module] = [_conv_bn(3, 64, 7, 2, act=nn.ReLU), nn.MaxPool2d(3, 2)]
    cin = 64
    for width, n, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
        for i in range(n):
            layers.append(Bottleneck(cin, width, stride if i == 0 else 1))
            cin = width * 4
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, 1000)]
    return nn.Sequential(*layers).eval()
