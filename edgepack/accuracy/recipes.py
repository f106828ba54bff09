"""Recipes for transformer encoders: the ops full-int8 keeps out of int8 on purpose, and the op
groups the bounded fallback search tries.

The encoder recipe (ai-edge-quantizer ``static_wi8_ai8`` plus three rules):
- the embedding table (EMBEDDING_LOOKUP) as int8 weights with a dequantizing lookup: the
  kernel reads int8 rows and writes float, so the table costs a quarter and no full float copy
  of it is ever made;
- LayerNorm statistics in float: the ops of a LayerNorm scope from the squared difference to
  the reciprocal square root (variance, epsilon, rsqrt). Squares of a residual stream span far
  more than 8 bits; the mean subtraction and the affine scale stay int8;
- softmax in float, with the op that makes its input (the attention-mask ADD: -1e4 or the
  dtype's minimum next to logits of size ~10 leaves no int8 resolution for the logits).
Every other op (FULLY_CONNECTED, BATCH_MATMUL, GELU, the residual ADDs...) is int8. The ops
kept are matched by their scope (output tensor names), so the recipe names exactly them, and
the model is read back: a float op outside the recipe is an accidental leftover and refuses
the route.

Op groups for the bounded search (:func:`op_groups`): one group per transformer block (the ops
whose scope sits under a repeated, numbered module such as ``Layer_3``, ``layer_3``: the ops
between two block boundaries) and one per op type that computes (all SOFTMAX, all ADD...).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from edgepack.tflite import ModelInfo, Operator

LAYER_NORM = re.compile(r"(?i)layer_?norm|rms_?norm")
# A numbered module of a ModuleList / nn.Sequential of blocks: "Layer_3", "BertLayer_layer_3".
BLOCK = re.compile(r"_(\d+)$")
# Ops that move or reshape data without computing: a group of them alone changes nothing.
SHAPE_OPS = frozenset(
    {
        "RESHAPE",
        "SQUEEZE",
        "EXPAND_DIMS",
        "TRANSPOSE",
        "SLICE",
        "STRIDED_SLICE",
        "SPLIT",
        "SPLIT_V",
        "GATHER",
        "PACK",
        "UNPACK",
        "CONCATENATION",
        "CAST",
        "QUANTIZE",
        "DEQUANTIZE",
    }
)
EMBEDDING = "embedding lookup (int8 table, float output)"
LN_STATS = "LayerNorm statistics"
SOFTMAX = "softmax (with its mask add)"


def scope(info: ModelInfo, op: Operator) -> str:
    """An op's scope as ai-edge-quantizer matches it: its output tensor names."""
    return ";".join(info.tensors[i].name for i in op.outputs if i >= 0)


def _producers(info: ModelInfo) -> dict[int, int]:
    return {t: op.index for op in info.operators for t in op.outputs}


def _layer_norm_stats(info: ModelInfo) -> list[int]:
    """Per LayerNorm scope, the ops from the first SQUARED_DIFFERENCE to the RSQRT (graph
    order); the whole scope's computing ops when that pattern is not there."""
    scopes: dict[str, list[int]] = {}
    for op in info.operators:
        name = scope(info, op)
        m = LAYER_NORM.search(name)
        if m:
            end = name.find(";", m.end())
            scopes.setdefault(name[: end if end >= 0 else None], []).append(op.index)
    kept: list[int] = []
    for idx in scopes.values():
        types = [info.operators[i].op for i in idx]
        if "SQUARED_DIFFERENCE" in types and "RSQRT" in types:
            a, b = types.index("SQUARED_DIFFERENCE"), types.index("RSQRT")
            if a <= b:
                kept += idx[a : b + 1]
                continue
        kept += [i for i in idx if info.operators[i].op not in SHAPE_OPS]
    return kept


@dataclass(frozen=True)
class EncoderRecipe:
    """The ops the encoder recipe keeps in float, each with its reason."""

    kept: dict[int, str]  # op index -> reason (LN_STATS, SOFTMAX)
    embedding: bool  # an EMBEDDING_LOOKUP whose table is quantized int8 (float output)

    def float_ops(self, info: ModelInfo) -> dict[int, str]:
        """Every op the recipe means to compute in float, embedding lookups included."""
        ops = dict(self.kept)
        if self.embedding:
            ops.update({o.index: EMBEDDING for o in info.operators if o.op == "EMBEDDING_LOOKUP"})
        return ops

    def record(self, info: ModelInfo) -> dict[str, Any]:
        ops = self.float_ops(info)
        by_reason = Counter(ops.values())
        return {
            "recipe": "encoder",
            "ops": len(ops),
            "by_reason": dict(sorted(by_reason.items())),
            "op_types": dict(sorted(Counter(info.operators[i].op for i in ops).items())),
            "tensors": sorted({info.tensors[info.operators[i].outputs[0]].name for i in ops}),
        }

    def describe(self) -> str:
        """'LayerNorm statistics/softmax' (the reasons, for one line)."""
        reasons = sorted(set(self.kept.values())) + ([EMBEDDING] if self.embedding else [])
        return "/".join(r.split(" (")[0] for r in reasons)


def encoder_recipe(info: ModelInfo) -> EncoderRecipe | None:
    """The encoder recipe for this graph, None when it has nothing the recipe is about (no
    embedding lookup, no softmax, no LayerNorm scope)."""
    kept = {i: LN_STATS for i in _layer_norm_stats(info)}
    prod = _producers(info)
    for op in info.operators:
        if op.op != "SOFTMAX":
            continue
        kept[op.index] = SOFTMAX
        src = prod.get(op.inputs[0])
        if src is not None and info.operators[src].op in ("ADD", "SUB"):
            kept[src] = SOFTMAX
    embedding = any(o.op == "EMBEDDING_LOOKUP" for o in info.operators)
    if not kept and not embedding:
        return None
    return EncoderRecipe(kept=kept, embedding=embedding)


def embedding_entries() -> list[dict[str, Any]]:
    """ai-edge-quantizer recipe entries: int8 per-row table, dequantizing lookup."""
    return [
        {
            "regex": ".*",
            "operation": "EMBEDDING_LOOKUP",
            "algorithm_key": "min_max_uniform_quantize",
            "op_config": {
                "weight_tensor_config": {
                    "num_bits": 8,
                    "symmetric": True,
                    "granularity": "CHANNELWISE",
                    "dtype": "INT",
                },
                "compute_precision": "INTEGER",
                "explicit_dequantize": False,
            },
        }
    ]


@dataclass(frozen=True)
class OpGroup:
    name: str  # "block Layer_3", "type SOFTMAX"
    kind: str  # "block" or "op-type"
    ops: frozenset[int]


def _block_of(name: str) -> str | None:
    """The numbered module of the shallowest level that has one: 'Layer_3'."""
    first = name.split(";")[0]
    for seg in first.split("/")[1:]:
        if BLOCK.search(seg) and not LAYER_NORM.search(seg):
            return re.sub(r"^([A-Za-z_][\w]*\.)+", "", seg)
    return None


def op_groups(info: ModelInfo, exclude: frozenset[int] = frozenset()) -> list[OpGroup]:
    """Per-block groups (when the graph repeats a numbered module at least twice) and
    per-op-type groups (compute ops present at least twice), without ``exclude`` (ops already
    kept out of int8) and without shape-only ops (they follow their neighbours' precision)."""
    compute = [o for o in info.operators if o.op not in SHAPE_OPS and o.index not in exclude]
    blocks: dict[str, set[int]] = {}
    for op in compute:
        b = _block_of(scope(info, op))
        if b is not None:
            blocks.setdefault(b, set()).add(op.index)
    # A block computes several kinds of ops (a leaf module of a Sequential, "Conv2d_3", is not one).
    blocks = {b: ops for b, ops in blocks.items() if len({info.operators[i].op for i in ops}) >= 2}
    groups: list[OpGroup] = []
    if len(blocks) >= 2:
        groups += [OpGroup(f"block {b}", "block", frozenset(ops)) for b, ops in blocks.items()]
    types: dict[str, set[int]] = {}
    for op in compute:
        types.setdefault(op.op, set()).add(op.index)
    groups += [
        OpGroup(f"type {t}", "op-type", frozenset(ops))
        for t, ops in sorted(types.items())
        if len(ops) >= 2
    ]
    return groups


def has_blocks(info: ModelInfo) -> bool:
    """At least two repeated numbered blocks: the graph is worth searching by groups."""
    return any(g.kind == "block" for g in op_groups(info))


__all__ = [
    "EMBEDDING",
    "LN_STATS",
    "SOFTMAX",
    "EncoderRecipe",
    "OpGroup",
    "embedding_entries",
    "encoder_recipe",
    "has_blocks",
    "op_groups",
    "scope",
]
