"""Rule tables: which ops an accelerator takes, as data (edgepack/compat/rules/*.toml).

Each table is a TOML file next to this module, versioned (``version`` of the table and
``applies_to``: the compiler / runtime it describes) and sourced: the table's ``source`` is the
document it follows, and every op section carries its own ``source``, the citation (document
section, quoted limitation, or measurement) the op's entry rests on. A table with an unsourced
op does not load. This module only loads and validates them; edgepack/compat/engine.py applies
them to a model.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from enum import Enum
from functools import cache
from pathlib import Path
from typing import Any

from edgepack.errors import CompatibilityError, decode_problem

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

RULES_DIR = Path(__file__).resolve().parent / "rules"


class Partitioning(str, Enum):
    # One accelerator subgraph; after the first unsupported op that depends on it, the rest of
    # the graph runs on the CPU (edgetpu_compiler).
    SINGLE_SEGMENT = "single-segment"
    # Every maximal run of supported ops becomes a delegate partition (TFLite delegates).
    MULTI = "multi"


# The constraint vocabulary an op section may use (engine.py implements each key).
OP_KEYS = frozenset(
    {
        "tensor_dtypes",  # dtypes of the op's runtime tensors (overrides the table's)
        "fused_activations",  # allowed fused activation functions
        "equal_dilation",  # dilation_h_factor == dilation_w_factor
        "option_equals",  # {option: value} the op's builtin options must have
        "output_nonunit_dims_max",  # at most N output dims larger than 1
        "no_batch_axis",  # reduce / pad / pack / split must not touch dimension 0
        "z_reduction_multiple",  # a reduction over the last axis needs channels % N == 0
        "alpha_innermost_only",  # PReLU alpha: only the innermost dimension may be > 1
        "max_nonunit_input_dims",  # at most N input dims larger than 1
        "max_input_elements",  # input element count limit
        "strides_all_one",  # STRIDED_SLICE strides tensor all ones
        "zero_options",  # option names that must be 0 (masks)
        "const_input_zero_pad",  # concat with a constant input: 2 inputs, constant all zeros
        "num_inputs",  # allowed numbers of (present) inputs
        "num_outputs",  # allowed numbers of outputs
        "input_ranks",  # allowed ranks of the first input
        "depth_multiplier_one_or_c1",  # GPU depthwise: multiplier 1 or one input channel
        "max_version",  # highest supported operator version
        "static_inputs",  # input positions that must be constant tensors
        "static_dequantized",  # a static input may be the DEQUANTIZE of a constant (fp16)
        "requires_bias",  # the bias input (position 2) must be present
        "per_tensor_input",  # the first input must not be per-channel quantized
        "no_1x1_strided_pool",  # 1x1 pooling with a stride > 1 is not supported
        "allowed_axes",  # reduction axes allowed (lists, order-sensitive)
        "same_signedness",  # QUANTIZE between integer types must keep signedness
        "input_output_scale_ratio",  # [lo, hi): each quantized input's scale / output's
        "allow_hybrid",  # int8 weights with float activations are fine (table reject_hybrid)
        "unmapped_perms",  # TRANSPOSE permutations the accelerator leaves on the CPU
        "warning",  # supported, but worth a note in the report
    }
)
TABLE_KEYS = frozenset(
    {
        "name",
        "accelerator",
        "version",
        "applies_to",
        "source",
        "partitioning",
        "max_partitions",
        "tensor_dtypes",
        "const_dtypes",
        "static_shapes",
        "innermost_nonunit_dims",
        "max_rank",
        "reject_hybrid",
        "custom_ops",
    }
)


@dataclass(frozen=True)
class OpRule:
    op: str
    constraints: dict[str, Any] = field(default_factory=dict, compare=False)
    source: str = ""  # where the entry comes from (required in the tables)

    def get(self, key: str, default: Any = None) -> Any:
        return self.constraints.get(key, default)


@dataclass(frozen=True)
class RuleTable:
    name: str
    accelerator: str
    version: str
    applies_to: str
    source: str
    partitioning: Partitioning
    max_partitions: int  # 0: unlimited
    tensor_dtypes: tuple[str, ...]
    const_dtypes: tuple[str, ...]
    static_shapes: bool
    innermost_nonunit_dims: int  # 0: no such limit
    max_rank: int  # 0: no limit
    reject_hybrid: bool
    custom_ops: tuple[str, ...] = ()  # custom op codes the accelerator runs (precompiled)
    ops: dict[str, OpRule] = field(default_factory=dict, compare=False)

    def describe(self) -> dict[str, str]:
        return {
            "name": self.name,
            "version": self.version,
            "applies_to": self.applies_to,
            "source": self.source,
        }


def available_rules() -> list[str]:
    return sorted(p.stem for p in RULES_DIR.glob("*.toml"))


def _bad(name: str, what: str) -> CompatibilityError:
    return CompatibilityError(
        f"rule table '{name}' is invalid: {what}",
        "the rule tables ship with edgepack (edgepack/compat/rules/*.toml); reinstall edgepack",
    )


def parse_table(text: str, name: str) -> RuleTable:
    try:
        raw = tomllib.loads(text)
    except (ValueError, RecursionError) as exc:  # TOMLDecodeError
        raise _bad(name, f"not valid TOML: {decode_problem(exc)}") from exc
    meta = raw.get("table")
    if not isinstance(meta, dict):
        raise _bad(name, "missing [table] section")
    unknown = set(meta) - TABLE_KEYS
    if unknown:
        raise _bad(name, f"unknown [table] key(s) {sorted(unknown)}")
    missing = {"name", "version", "applies_to", "source", "partitioning"} - set(meta)
    if missing:
        raise _bad(name, f"missing [table] key(s) {sorted(missing)}")
    ops: dict[str, OpRule] = {}
    unsourced: list[str] = []
    for op, body in (raw.get("ops") or {}).items():
        body = dict(body or {})
        source = body.pop("source", None)
        unknown = set(body) - OP_KEYS
        if unknown:
            raise _bad(name, f"op {op} has unknown key(s) {sorted(unknown)}")
        if not isinstance(source, str) or not source.strip():
            unsourced.append(op)
            continue
        ops[op] = OpRule(op=op, constraints=body, source=source.strip())
    if unsourced:
        raise _bad(name, f"op(s) without a 'source' citation: {', '.join(unsourced)}")
    try:
        partitioning = Partitioning(meta["partitioning"])
    except ValueError as exc:
        raise _bad(name, f"partitioning {meta['partitioning']!r}") from exc
    return RuleTable(
        name=str(meta["name"]),
        accelerator=str(meta.get("accelerator", meta["name"])),
        version=str(meta["version"]),
        applies_to=str(meta["applies_to"]),
        source=str(meta["source"]),
        partitioning=partitioning,
        max_partitions=int(meta.get("max_partitions", 0)),
        tensor_dtypes=tuple(meta.get("tensor_dtypes", ())),
        const_dtypes=tuple(meta.get("const_dtypes", ())),
        static_shapes=bool(meta.get("static_shapes", True)),
        innermost_nonunit_dims=int(meta.get("innermost_nonunit_dims", 0)),
        max_rank=int(meta.get("max_rank", 0)),
        reject_hybrid=bool(meta.get("reject_hybrid", False)),
        custom_ops=tuple(meta.get("custom_ops", ())),
        ops=ops,
    )


@cache
def load_table(name: str) -> RuleTable:
    """A built-in rule table by name (``edgetpu``, ``gpu``, ``xnnpack``)."""
    path = RULES_DIR / f"{name}.toml"
    if not path.is_file():
        raise CompatibilityError(
            f"unknown rule table '{name}'",
            "known rule tables: " + ", ".join(available_rules()),
        )
    return parse_table(path.read_text(encoding="utf-8"), name)
