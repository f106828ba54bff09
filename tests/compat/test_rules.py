"""The rule tables themselves: load, versioned, sourced, and naming real TFLite ops."""

from __future__ import annotations

import pytest

from edgepack.compat import available_rules, load_table
from edgepack.compat.rules import RULES_DIR, Partitioning, parse_table
from edgepack.errors import CompatibilityError


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
    text = (RULES_DIR / f"{name}.toml").read_text()
    # every rule cites where it comes from: the file is mostly comments
    assert text.count("#") >= len(t.ops) // 2


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
    ],
)
def test_invalid_tables_are_rejected(text, message):
    with pytest.raises(CompatibilityError) as e:
        parse_table(text, "bad")
    assert e.value.message.startswith(message)
