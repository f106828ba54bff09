"""Size, compute and accuracy of a PyTorch model, as the compression stages report them.

MACs are counted with forward hooks on Conv and Linear layers (the layers that hold nearly all
the compute of the models we ship); everything else (norms, activations, pooling) is ignored.
Counts are for one forward pass with the model's example inputs (batch as given).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn

    from edgepack.data import Dataset


def weight_layers(module: nn.Module) -> Iterator[tuple[str, Any]]:
    """Conv (1d/2d/3d, transposed) and Linear layers, with their qualified names.

    (Typed Any: they are nn.Module subclasses with a ``weight``, which mypy cannot express.)"""
    from torch import nn

    for name, m in module.named_modules():
        if isinstance(m, nn.modules.conv._ConvNd | nn.Linear):
            yield name, m


def count_params(module: nn.Module) -> int:
    return int(sum(p.numel() for p in module.parameters()))


def count_nonzero_params(module: nn.Module) -> int:
    return int(sum(int((p != 0).sum()) for p in module.parameters()))


def count_macs(module: nn.Module, example_inputs: tuple[torch.Tensor, ...]) -> int:
    """Multiply-accumulates of Conv and Linear layers for one forward pass."""
    import torch
    from torch import nn

    total = 0

    def hook(m: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        nonlocal total
        if not isinstance(output, torch.Tensor):
            return
        if isinstance(m, nn.Linear):
            total += output.numel() * m.in_features
        elif isinstance(m, nn.modules.conv._ConvTransposeNd):
            x = inputs[0]
            k = int(torch.tensor(m.kernel_size).prod())
            total += x.numel() * (m.out_channels // m.groups) * k
        elif isinstance(m, nn.modules.conv._ConvNd):
            k = int(torch.tensor(m.kernel_size).prod())
            total += output.numel() * (m.in_channels // m.groups) * k

    handles = [m.register_forward_hook(hook) for _, m in weight_layers(module)]
    was_training = module.training
    try:
        module.eval()
        with torch.no_grad():
            module(*example_inputs)
    finally:
        for h in handles:
            h.remove()
        module.train(was_training)
    return int(total)


def weight_sparsity(module: nn.Module) -> tuple[float, dict[str, float]]:
    """Fraction of exact zeros in Conv/Linear weights: over all of them, and per layer."""
    zeros = 0
    total = 0
    per_layer: dict[str, float] = {}
    for name, m in weight_layers(module):
        w = m.weight.detach()
        z = int((w == 0).sum())
        zeros += z
        total += w.numel()
        per_layer[name] = round(z / max(w.numel(), 1), 4)
    return (round(zeros / total, 4) if total else 0.0), per_layer


def top1(module: nn.Module, data: Dataset, batch_size: int = 256) -> float:
    """Top-1 accuracy in percent of a classifier on labelled data (first output, argmax dim 1)."""
    import numpy as np
    import torch

    if data.labels is None:
        raise ValueError("top1 needs labelled data")
    preds = []
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(data), batch_size):
                xs = [torch.from_numpy(x[start : start + batch_size]) for x in data.inputs]
                out = module(*xs)
                if isinstance(out, tuple | list):
                    out = out[0]
                preds.append(out.argmax(1).numpy())
    finally:
        module.train(was_training)
    pred = np.concatenate(preds)
    return round(float((pred == data.labels).mean() * 100), 2)


def summary(
    module: nn.Module, example_inputs: tuple[torch.Tensor, ...], eval_data: Dataset | None
) -> dict[str, Any]:
    """params, nonzero params, MACs, global weight sparsity and (with eval data) top-1."""
    sparsity, _ = weight_sparsity(module)
    out: dict[str, Any] = {
        "params": count_params(module),
        "nonzero_params": count_nonzero_params(module),
        "macs": count_macs(module, example_inputs),
        "sparsity": sparsity,
    }
    if eval_data is not None and eval_data.labels is not None:
        out["top1"] = top1(module, eval_data)
    return out


def before_after(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Flatten two summaries into ``<key>_before`` / ``<key>_after`` metrics."""
    out: dict[str, Any] = {}
    for k in before:
        out[f"{k}_before"] = before[k]
        out[f"{k}_after"] = after.get(k)
    return out
