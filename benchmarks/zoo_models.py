"""torchvision architectures as `edgepack build` factories: random init, BatchNorm re-estimated.

One factory per architecture (``benchmarks/zoo_models.py:resnet18``), all through ``build``:
torchvision's model with a fixed seed, then its BatchNorm statistics re-estimated on seeded
random images (a few forward passes in train mode with ``momentum=None``, a cumulative
average), then ``eval()``. Without that, a randomly initialised deep net's activations grow or
vanish layer by layer and its outputs are degenerate (constant or overflowing), which says
nothing about quantization. Segmentation nets return a dict; they are wrapped to return its
``"out"`` tensor. ViT's classification head, zero-initialised by torchvision, gets seeded
random weights.

The input resolution for the re-estimation comes from ``$EDGEPACK_ZOO_SIZE`` (default 224): it
must match the ``--input-shape`` of the build. Everything is deterministic for a given size, so
the five builds of one architecture hash to the same weights and share the export cache.
torchvision is imported through ``edgepack._torchvision.import_torchvision`` (its PyPI wheel's
C++ operators may not load beside a CPU-only torch). Nothing is downloaded.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

SIZE_ENV = "EDGEPACK_ZOO_SIZE"
BN_PASSES = 4
BN_BATCH = 8

# name: (torchvision.models attribute, constructor kwargs)
ARCHS: dict[str, tuple[str, dict[str, Any]]] = {
    "mobilenet_v2": ("mobilenet_v2", {}),
    "mobilenet_v3_small": ("mobilenet_v3_small", {}),
    "mobilenet_v3_large": ("mobilenet_v3_large", {}),
    "resnet18": ("resnet18", {}),
    "resnet50": ("resnet50", {}),
    "efficientnet_b0": ("efficientnet_b0", {}),
    "squeezenet1_1": ("squeezenet1_1", {}),
    "shufflenet_v2_x1_0": ("shufflenet_v2_x1_0", {}),
    "mnasnet1_0": ("mnasnet1_0", {}),
    "regnet_y_400mf": ("regnet_y_400mf", {}),
    "convnext_tiny": ("convnext_tiny", {}),
    "densenet121": ("densenet121", {}),
    "googlenet": ("googlenet", {"aux_logits": False, "init_weights": True}),
    "lraspp_mobilenet_v3_large": (
        "segmentation.lraspp_mobilenet_v3_large",
        {"weights_backbone": None, "num_classes": 21},
    ),
    "vit_b_16": ("vit_b_16", {}),  # image_size set from the size
    "swin_t": ("swin_t", {}),
}


def size() -> int:
    return int(os.environ.get(SIZE_ENV, "224"))


def build(arch: str) -> Any:
    """The architecture ``arch`` (a key of ARCHS), seeded, BatchNorm re-estimated, in eval mode."""
    from edgepack._torchvision import import_torchvision

    tv = import_torchvision()
    attr, kwargs = ARCHS[arch]
    fn: Any = tv.models
    for part in attr.split("."):
        fn = getattr(fn, part)
    side = size()
    if arch.startswith("vit_"):
        kwargs = {**kwargs, "image_size": side}
    torch.manual_seed(0)
    model: nn.Module = fn(weights=None, **kwargs)
    if arch.startswith("vit_"):
        # torchvision zero-initialises ViT's classification head (fine-tuning starts there):
        # untrained, its output would be constant zero, which nothing can quantize or verify
        nn.init.normal_(model.heads.head.weight, std=0.02)
    if attr.startswith("segmentation."):
        model = OutTensor(model)
    _reestimate_bn(model, side)
    return model.eval()


class OutTensor(nn.Module):
    """A segmentation net returning its ``"out"`` map instead of a dict."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)["out"]


def _reestimate_bn(model: nn.Module, side: int) -> None:
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the passes
    g = torch.Generator().manual_seed(1)
    model.train()
    with torch.no_grad():
        for _ in range(BN_PASSES):
            model(torch.randn(BN_BATCH, 3, side, side, generator=g))
    for m in bns:
        m.momentum = 0.1
    model.eval()


def _factory(arch: str) -> Any:
    def factory() -> Any:
        return build(arch)

    factory.__name__ = factory.__qualname__ = arch
    factory.__doc__ = f"torchvision {ARCHS[arch][0]}, random init, BatchNorm re-estimated."
    return factory


mobilenet_v2 = _factory("mobilenet_v2")
mobilenet_v3_small = _factory("mobilenet_v3_small")
mobilenet_v3_large = _factory("mobilenet_v3_large")
resnet18 = _factory("resnet18")
resnet50 = _factory("resnet50")
efficientnet_b0 = _factory("efficientnet_b0")
squeezenet1_1 = _factory("squeezenet1_1")
shufflenet_v2_x1_0 = _factory("shufflenet_v2_x1_0")
mnasnet1_0 = _factory("mnasnet1_0")
regnet_y_400mf = _factory("regnet_y_400mf")
convnext_tiny = _factory("convnext_tiny")
densenet121 = _factory("densenet121")
googlenet = _factory("googlenet")
lraspp_mobilenet_v3_large = _factory("lraspp_mobilenet_v3_large")
vit_b_16 = _factory("vit_b_16")
swin_t = _factory("swin_t")
