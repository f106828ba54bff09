"""Pruning stage: unstructured magnitude pruning, or structured channel pruning.

- ``magnitude``: zero the smallest |w| of every Conv/Linear weight, globally (one threshold for
  all layers) or per layer, with ``torch.nn.utils.prune``; then ``prune.remove`` makes it
  permanent, so the module holds plain tensors (no masks, hooks or parametrizations) and
  torch.export sees ordinary weights. The shapes do not change: the gain is in compressed size.
- ``channels``: physically remove output channels (and the matching inputs downstream) with
  torch-pruning's dependency graph, which keeps residual adds, concatenations, depthwise
  groups and batch norms consistent. The layers that produce the model's outputs are never
  pruned, so the output shape stays the same. ``sparsity`` is the fraction of channels removed
  from each prunable layer; ``round_to`` keeps the channel counts multiples of a number.

The stage never mutates its input: it prunes a deep copy.
"""

from __future__ import annotations

import copy
import traceback
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgepack.errors import CompressionError
from edgepack.stages import modelstats
from edgepack.stages.base import StageContext, TorchModel

if TYPE_CHECKING:
    import torch
    from torch import nn

    from edgepack.data import Dataset


class PruneMethod(str, Enum):
    MAGNITUDE = "magnitude"
    CHANNELS = "channels"


class PruneScope(str, Enum):
    GLOBAL = "global"
    LAYER = "layer"


@dataclass(frozen=True)
class PruneSpec:
    method: PruneMethod
    sparsity: float  # (0, 1): fraction of weights (magnitude) or of channels per layer (channels)
    scope: str = "global"  # "global" | "layer" (magnitude); channels is always per layer
    round_to: int = 1  # keep channel counts multiples of this (8 = SIMD friendly)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"method": self.method.value, "sparsity": self.sparsity}
        if self.method is PruneMethod.MAGNITUDE:
            d["scope"] = self.scope
        else:
            d["round_to"] = self.round_to
        return d


_SPEC_HINT = "write METHOD:SPARSITY, e.g. --prune magnitude:0.7 or --prune channels:0.5"


def parse_prune_spec(text: str, round_to: int = 1, scope: str = "global") -> PruneSpec:
    """Parse ``magnitude:0.7`` / ``channels:0.5`` (sparsity strictly between 0 and 1)."""
    method_text, sep, value = text.strip().partition(":")
    methods = ", ".join(m.value for m in PruneMethod)
    try:
        method = PruneMethod(method_text.strip().lower())
    except ValueError:
        raise CompressionError(
            f"unknown pruning method '{method_text}' (known: {methods})", _SPEC_HINT
        ) from None
    if not sep or not value.strip():
        raise CompressionError(f"--prune '{text}' gives no sparsity", _SPEC_HINT)
    try:
        sparsity = float(value)
    except ValueError:
        raise CompressionError(f"pruning sparsity '{value}' is not a number", _SPEC_HINT) from None
    if not 0.0 < sparsity < 1.0:
        raise CompressionError(
            f"pruning sparsity must be between 0 and 1 (exclusive), got {value}",
            "a fraction of the weights (magnitude) or channels (channels) to remove, "
            "e.g. magnitude:0.7",
        )
    scopes = [s.value for s in PruneScope]
    if scope not in scopes:
        raise CompressionError(
            f"unknown pruning scope '{scope}' (known: {', '.join(scopes)})",
            "global ranks all layers' weights together; layer prunes each layer alike",
        )
    if isinstance(round_to, bool) or not isinstance(round_to, int) or round_to < 1:
        raise CompressionError(
            f"round_to must be a positive integer, got {round_to}",
            "use 1 (no rounding) or e.g. 8 to keep channel counts SIMD friendly",
        )
    return PruneSpec(method=method, sparsity=sparsity, scope=scope, round_to=round_to)


def run(
    model: TorchModel,
    spec: PruneSpec,
    ctx: StageContext,
    *,
    eval_data: Dataset | None = None,
) -> TorchModel:
    """Prune a copy of ``model``; record params/MACs/sparsity (and top-1 with eval data)."""
    if model.module is None or model.exported is not None:
        raise CompressionError(
            "pruning needs the PyTorch model's code, but this source is an exported program (.pt2)",
            "load the model from its factory (module:factory or file.py:factory) to prune it",
        )
    with ctx.timed() as elapsed:
        ctx.progress(f"prune: {spec.method.value} {spec.sparsity:g}")
        module = copy.deepcopy(model.module).eval()
        before = modelstats.summary(model.module, model.example_inputs, eval_data)
        extra: dict[str, Any]
        if spec.method is PruneMethod.MAGNITUDE:
            extra = _magnitude(module, spec)
        else:
            extra = _channels(module, model.example_inputs, spec)
        after = modelstats.summary(module, model.example_inputs, eval_data)
        _, per_layer = modelstats.weight_sparsity(module)
        metrics = modelstats.before_after(before, after)
        metrics["sparsity_per_layer"] = per_layer
        metrics.update(extra)
        ctx.record("prune", spec.to_dict(), metrics=metrics, seconds=elapsed())
    return TorchModel(
        module=module,
        example_inputs=model.example_inputs,
        inputs=model.inputs,
        source=model.source,
        name=model.name,
    )


def _magnitude(module: nn.Module, spec: PruneSpec) -> dict[str, Any]:
    from torch.nn.utils import prune

    layers = list(modelstats.weight_layers(module))
    if not layers:
        raise CompressionError(
            "the model has no Conv or Linear layer to prune",
            "magnitude pruning zeroes Conv/Linear weights; this model has none",
        )
    if spec.scope == PruneScope.GLOBAL.value:
        prune.global_unstructured(
            [(m, "weight") for _, m in layers],
            pruning_method=prune.L1Unstructured,
            amount=spec.sparsity,
        )
    else:
        for _, m in layers:
            prune.l1_unstructured(m, "weight", amount=spec.sparsity)
    for _, m in layers:
        prune.remove(m, "weight")  # weight = weight_orig * mask, as a plain Parameter
    return {}


def _output_layers(graph: Any) -> list[nn.Module]:
    """Conv/Linear layers whose output channels reach a model output without passing through
    another Conv/Linear: pruning them would change the output shape (e.g. the classifier)."""
    from torch_pruning import ops

    roots = (ops.OPTYPE.CONV, ops.OPTYPE.LINEAR, ops.OPTYPE.LSTM, ops.OPTYPE.MHA, ops.OPTYPE.EMBED)
    found: list[nn.Module] = []
    seen: set[int] = set()
    # Every traced node leads to an output; the sinks are what produced the outputs (a layer
    # itself, or an output op when the last step was a functional one).
    stack = [n for n in graph.module2node.values() if not n.outputs]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if node.type in roots:
            if not any(node.module is f for f in found):
                found.append(node.module)
            continue  # its inputs may be pruned freely
        stack.extend(node.inputs)
    return found


def _unwrapped_weights(module: nn.Module) -> list[tuple[str, str, str, str]]:
    """Parameters of 2+ dimensions that live outside the layers torch-pruning knows.

    torch-pruning guesses a pruning axis for such parameters (the last non-singleton one),
    which is wrong for a hand-written conv or linear weight: we refuse instead of guessing.
    1-D parameters (per-channel scales such as layer scale) are safe and allowed.
    """
    import torch_pruning as tp

    known = tuple(
        tp.ops.type2class(t)
        for t in tp.DependencyGraph().REGISTERED_PRUNERS
        if t != tp.ops.OPTYPE.ELEMENTWISE
    )
    wrapped = {id(p) for m in module.modules() if isinstance(m, known) for p in m.parameters()}
    out = []
    for name, p in module.named_parameters():
        if id(p) not in wrapped and p.dim() >= 2:
            layer, _, pname = name.rpartition(".")
            kind = type(module.get_submodule(layer)).__name__
            shape = "x".join(str(d) for d in p.shape)
            out.append((layer or "<model>", kind, pname, shape))
    return out


def _channels(
    module: nn.Module, example_inputs: tuple[torch.Tensor, ...], spec: PruneSpec
) -> dict[str, Any]:
    import torch
    import torch_pruning as tp

    unwrapped = _unwrapped_weights(module)
    if unwrapped:
        layer, kind, pname, shape = unwrapped[0]
        raise CompressionError(
            f"channel pruning cannot analyse layer '{layer}' ({kind}): "
            f"its parameter '{pname}' (shape {shape}) is used directly in forward(), not "
            "through a Conv/Linear/Norm module torch-pruning knows",
            "use torch.nn layers (nn.Conv2d, nn.Linear) for weights, or prune with "
            "--prune magnitude:SPARSITY, which needs no graph analysis",
        )
    with torch.no_grad():
        ref_out = _forward_or_raise(module, example_inputs, "before pruning")
    try:
        graph = tp.DependencyGraph().build_dependency(module, example_inputs=example_inputs)
    except CompressionError:
        raise
    except Exception as exc:
        raise CompressionError(
            f"channel pruning cannot analyse the model: {_one_line(exc)}",
            "torch-pruning traces the forward pass through autograd; prune with "
            "--prune magnitude:SPARSITY instead",
        ) from exc
    ignored = _output_layers(graph)
    names = {id(m): n for n, m in module.named_modules()}
    channels_before = {n: _out_channels(m) for n, m in modelstats.weight_layers(module)}
    pruner = tp.pruner.BasePruner(
        module,
        example_inputs,
        importance=tp.importance.GroupMagnitudeImportance(p=2),
        pruning_ratio=spec.sparsity,
        global_pruning=False,
        ignored_layers=ignored,
        round_to=spec.round_to if spec.round_to > 1 else None,
    )
    current: list[Any] = []  # the dependency group being scored or pruned
    score = pruner.estimate_importance

    def tracked_score(group: Any) -> Any:
        current[:] = [group]
        return score(group)

    pruner.estimate_importance = tracked_score
    try:
        for group in pruner.step(interactive=True):
            current[:] = [group]
            group.prune()
    except Exception as exc:
        raise CompressionError(_group_failure(current, names, exc), _GRAPH_HINT) from exc
    with torch.no_grad():
        out = _forward_or_raise(module, example_inputs, "after pruning")
    _check_same_outputs(ref_out, out)
    channels_after = {n: _out_channels(m) for n, m in modelstats.weight_layers(module)}
    if channels_after == channels_before:
        raise CompressionError(
            f"channel pruning at {spec.sparsity:g} removed no channel (kept: "
            + ", ".join(f"{n} {c}" for n, c in channels_before.items())
            + ")",
            "raise the sparsity; layers tied to the model's outputs or to fixed-size "
            "operations cannot lose channels (try --prune magnitude:SPARSITY)",
        )
    return {
        "channels_per_layer": {
            n: [channels_before[n], channels_after.get(n)] for n in channels_before
        },
        "kept_layers": sorted(names.get(id(m), "?") for m in ignored),
    }


_GRAPH_HINT = (
    "a forward() that hard-codes channel counts (view/reshape/split with fixed sizes) cannot "
    "be channel-pruned; use flatten or -1 in reshapes, or --prune magnitude:SPARSITY"
)


def _group_failure(current: list[Any], names: dict[int, str], exc: BaseException) -> str:
    """Name the layer whose channels torch-pruning could not follow, and the layers they reach."""
    layers: list[str] = []
    for dep, _idxs in current[0] if current else []:
        name = names.get(id(dep.target.module))
        if name and name not in layers:
            layers.append(name)
    if not layers:
        return f"channel pruning cannot analyse the model: {_one_line(exc)}"
    root = layers[0]
    kind = type(current[0][0][0].target.module).__name__  # the group's root layer
    reach = f", which feed {', '.join(repr(n) for n in layers[1:])}" if len(layers) > 1 else ""
    return (
        f"channel pruning cannot analyse layer '{root}' ({kind}): torch-pruning cannot map its "
        f"channels{reach} ({_one_line(exc)})"
    )


def _out_channels(m: Any) -> int:
    from torch import nn

    return int(m.out_features if isinstance(m, nn.Linear) else m.out_channels)


def _forward_or_raise(module: nn.Module, example_inputs: tuple[Any, ...], when: str) -> Any:
    """Run the model; on failure name the innermost layer (or source line) that failed."""
    stack: list[str] = []
    names = {id(m): n for n, m in module.named_modules()}

    def pre(m: nn.Module, _inputs: Any) -> None:
        stack.append(names.get(id(m), type(m).__name__))

    def post(m: nn.Module, _inputs: Any, _output: Any) -> None:
        if stack:
            stack.pop()

    handles = []
    for m in module.modules():
        handles.append(m.register_forward_pre_hook(pre))
        handles.append(m.register_forward_hook(post))
    try:
        return module(*example_inputs)
    except Exception as exc:
        layer = next((s for s in reversed(stack) if s), "")
        where = f"layer '{layer}'" if layer else f"forward() at {_user_frame(exc)}"
        raise CompressionError(
            f"channel pruning cannot analyse {where}: the model fails {when}: {_one_line(exc)}",
            _GRAPH_HINT,
        ) from exc
    finally:
        for h in handles:
            h.remove()


def _check_same_outputs(ref: Any, out: Any) -> None:
    import torch

    def shapes(x: Any) -> list[tuple[int, ...]]:
        if isinstance(x, torch.Tensor):
            return [tuple(x.shape)]
        if isinstance(x, tuple | list):
            return [s for v in x for s in shapes(v)]
        if isinstance(x, dict):
            return [s for v in x.values() for s in shapes(v)]
        return []

    if shapes(ref) != shapes(out):
        raise CompressionError(
            f"channel pruning changed the model's output shape from {shapes(ref)} to {shapes(out)}",
            "the layer producing the outputs could not be identified; prune with "
            "--prune magnitude:SPARSITY instead",
        )


def _user_frame(exc: BaseException) -> str:
    """file:line of the innermost traceback frame outside torch and edgepack."""
    import torch
    import torch_pruning

    import edgepack

    skip = tuple(
        str(Path(m.__file__ or "").resolve().parent) for m in (torch, torch_pruning, edgepack)
    )
    for f in reversed(traceback.extract_tb(exc.__traceback__)):
        if not str(Path(f.filename).resolve()).startswith(skip):
            return f"{Path(f.filename).name}:{f.lineno} ({(f.line or '').strip()})"
    return "unknown location"


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]
