"""The rule tables themselves: load, versioned, sourced, and naming real TFLite ops."""

from __future__ import annotations

import sys

import pytest

from edgepack.compat import available_rules, load_table
from edgepack.compat.rules import RULES_DIR, Partitioning, parse_table
from edgepack.errors import CompatibilityError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib


def builtin_ops() -> set[str]:
    from ai_edge_litert import schema_py_generated as schema

    return {k for k, v in vars(schema.BuiltinOperator).items() if isinstance(v, int)}


def test_the_three_tables_ship():
    assert available_rules() == ["edgetpu", "gpu", "xnnpack"]


@pytest.mark.parametrize("name", ["edgetpu", "gpu", "xnnpack"])
def test_table_is_versioned_sourced_and_names_real_ops(name):
    t = load_table(name)
    assert t.name == name and t.version and t.applies_to and t.source.startswith("https://")
    unknown = set(t.ops) - builtin_ops()
    assert not unknown, f"{name}: not TFLite builtin ops: {sorted(unknown)}"
    # Every rule cites where it comes from: the parsed table, op by op.
    assert t.ops, f"{name}: no op rules"
    for op, rule in t.ops.items():
        assert rule.source and rule.source == rule.source.strip(), f"{name}: {op} has no source"
        assert len(rule.source) >= 8, f"{name}: {op} cites {rule.source!r}"
        assert "source" not in rule.constraints  # a citation, not a constraint
    # Straight from the file: one `source` line per [ops.*] section, none empty.
    raw = tomllib.loads((RULES_DIR / f"{name}.toml").read_text(encoding="utf-8"))
    assert sorted(raw["ops"]) == sorted(t.ops)
    assert all(
        isinstance(b.get("source"), str) and b["source"].strip() for b in raw["ops"].values()
    )


def test_table_facts():
    tpu, gpu, xnn = load_table("edgetpu"), load_table("gpu"), load_table("xnnpack")
    assert tpu.partitioning is Partitioning.SINGLE_SEGMENT and tpu.max_partitions == 1
    assert tpu.tensor_dtypes == ("INT8", "UINT8") and tpu.innermost_nonunit_dims == 3
    assert "LEAKY_RELU" not in tpu.ops and "HARD_SWISH" not in tpu.ops
    assert tpu.ops["SOFTMAX"].get("max_input_elements") == 16000
    assert gpu.tensor_dtypes == ("FLOAT32", "FLOAT16") and gpu.max_partitions == 1
    assert "ARG_MAX" not in gpu.ops and "LOG_SOFTMAX" not in gpu.ops
    assert xnn.max_partitions == 0 and xnn.reject_hybrid
    assert xnn.ops["SOFTMAX"].get("tensor_dtypes") == ["FLOAT32"]


def test_unknown_table():
    with pytest.raises(CompatibilityError) as e:
        load_table("npu")
    assert e.value.message == "unknown rule table 'npu'"
    assert e.value.hint == "known rule tables: edgetpu, gpu, xnnpack"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[table\n", "rule table 'bad' is invalid: not valid TOML"),
        ("[ops.ADD]\n", "rule table 'bad' is invalid: missing [table] section"),
        (
            '[table]\nname="x"\nversion="1"\napplies_to="y"\nsource="z"\npartitioning="one"\n',
            "rule table 'bad' is invalid: partitioning 'one'",
        ),
        (
            '[table]\nname="x"\nversion="1"\napplies_to="y"\nsource="z"\n'
            'partitioning="multi"\n[ops.ADD]\nmax_lanes = 4\n',
            "rule table 'bad' is invalid: op ADD has unknown key(s) ['max_lanes']",
        ),
        (
            '[table]\nname="x"\nversion="1"\nsource="z"\npartitioning="multi"\n',
            "rule table 'bad' is invalid: missing [table] key(s) ['applies_to']",
        ),
        (
            '[table]\nname="x"\nversion="1"\napplies_to="y"\nsource="z"\n'
            'partitioning="multi"\n[ops.ADD]\nsource="README: ADD"\n[ops.MUL]\n'
            '[ops.SUB]\nsource="  "\n',
            "rule table 'bad' is invalid: op(s) without a 'source' citation: MUL, SUB",
        ),
    ],
)
def test_invalid_tables_are_rejected(text, message):
    with pytest.raises(CompatibilityError) as e:
        parse_table(text, "bad")
    assert e.value.message.startswith(message)
