"""Full-int8 for transformer encoders (edgepack/accuracy/recipes.py) and the bounded op-group
fallback search, on a 6-layer encoder built from a config in tests/token_encoder.py (hidden 64,
4 heads, seq 32, vocab 1000; fixed seed, no download; int64 input_ids + attention_mask).

Every figure is derived in the run: the recipe's op counts from the float graph, the float ops
from the built model read back, the search's gate from the recipe's own fidelity.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgepack.accuracy.fallback import (
    MAX_GROUP_STEPS,
    Gate,
    check_result,
    search,
)
from edgepack.accuracy.recipes import EMBEDDING, LN_STATS, SOFTMAX, encoder_recipe, op_groups
from edgepack.cli import main
from edgepack.errors import GateError, QuantizationError
from edgepack.runtime import Runner, cast_inputs
from edgepack.stages.quantize import check_route
from edgepack.targets import IODtype, QuantMode
from edgepack.tflite import read_model, read_model_bytes
from tests import token_encoder as te

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def enc6(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Weights and data of the 6-layer encoder, and its package from the stock rpi4 profile's
    default (no --quantization; the profile's guard on --eval data)."""
    root = tmp_path_factory.mktemp("enc6")
    files = te.write_files(root / "data", calib=32, evaluation=64, cfg=te.SIX_LAYERS)
    out = root / "pkg"
    assert main(te.build_args6(files, out)) == 0
    return {**files, "pkg": out}


def _manifest(pkg: Path) -> dict:
    return json.loads((pkg / "manifest.json").read_text())


def _data(path: Path) -> list[np.ndarray]:
    d = np.load(path)
    return [d["input_ids"], d["attention_mask"]]


def test_the_recipe_is_read_from_the_graph(enc6) -> None:
    """LayerNorm statistics (squared difference .. rsqrt) of every LayerNorm, every softmax
    with the mask ADD that feeds it, the embedding lookup; blocks from the numbered modules."""
    info = read_model(enc6["pkg"] / "model_float32.tflite")
    enc = encoder_recipe(info)
    assert enc is not None and enc.embedding
    cfg = te.SIX_LAYERS
    n_ln = 2 * cfg.layers + 1  # two per block and the embedding's
    reasons = enc.record(info)["by_reason"]
    assert reasons == {EMBEDDING: 1, LN_STATS: 4 * n_ln, SOFTMAX: 2 * cfg.layers}
    ops = {info.operators[i].op for i, r in enc.kept.items() if r == LN_STATS}
    assert ops == {"SQUARED_DIFFERENCE", "MEAN", "ADD", "RSQRT"}
    groups = op_groups(info, frozenset(enc.float_ops(info)))
    blocks = sorted(g.name for g in groups if g.kind == "block")
    assert blocks == [f"block Layer_{i}" for i in range(cfg.layers)]
    types = {g.name for g in groups if g.kind == "op-type"}
    assert {"type FULLY_CONNECTED", "type BATCH_MATMUL", "type GELU"} <= types
    assert not any(t in types for t in ("type RESHAPE", "type TRANSPOSE", "type SOFTMAX"))
    # No group holds a recipe op: those are float already.
    assert not any(g.ops & set(enc.float_ops(info)) for g in groups)


def test_the_recipe_does_not_apply_to_a_cnn(float_tflite) -> None:  # type: ignore[no-untyped-def]
    info = read_model(float_tflite)
    assert encoder_recipe(info) is None
    assert not any(g.kind == "block" for g in op_groups(info))


def test_stock_rpi4_default_ships_full_int8_with_the_recipe(enc6, capsys) -> None:
    """The must-show: no --quantization, rpi4's list (full-int8, dynamic-range): full-int8
    ships, with fidelity >= 0.99, and the manifest says which ops stay float and why."""
    m = _manifest(enc6["pkg"])
    q = m["quantization"]
    assert q["mode"] == "full-int8" and q["overridden"]["quantization"] is False
    assert q["attempts"][0]["mode"] == "full-int8" and q["attempts"][0]["outcome"] == "chosen"
    route = q["route"]
    assert route["recipe"] == "static_wi8_ai8 + encoder recipe"
    tried = route["tried"]
    assert [t["outcome"] for t in tried] == ["refused", "refused", "used"]
    assert "EMBEDDING_LOOKUP" in tried[1]["reason"]  # all-int8 ai-edge-quantizer: a leftover
    assert tried[2]["engine"] == "ai-edge-quantizer encoder recipe"
    assert m["metrics"]["fidelity"]["cosine"] >= 0.99
    # Read back: float compute exactly in the recipe's ops, every matmul int8.
    info = read_model(enc6["pkg"] / "model.tflite")
    kept = route["kept_float"]
    floats = info.float_compute_ops()
    assert len(floats) == kept["ops"]
    assert all(info.tensors[o.outputs[0]].name in set(kept["tensors"]) for o in floats)
    assert {o.op for o in floats} == set(kept["op_types"])
    assert not {"FULLY_CONNECTED", "BATCH_MATMUL", "GELU"} & {o.op for o in floats}
    lookup = next(o for o in info.operators if o.op == "EMBEDDING_LOOKUP")
    assert info.tensors[lookup.inputs[1]].dtype == "INT8"  # the table is int8
    # `edgepack verify` reads the model back: float ops of a recorded recipe are full-int8's.
    capsys.readouterr()
    assert main(["verify", str(enc6["pkg"]), "--json"]) == 0
    checks = {c["check"]: c["status"] for c in json.loads(capsys.readouterr().out)["checks"]}
    assert checks["recomputed"] == "pass"
    detail = next(
        c["detail"]
        for c in json.loads(_verify(enc6["pkg"], capsys))["checks"]
        if c["check"] == "recomputed"
    )
    assert f"mode full-int8 with {kept['ops']} op(s) kept in float" in detail
    # The pre-flight predicts what the real XNNPACK delegate takes: the LayerNorm's int8 SUB
    # of a zero constant (scale ~1e-12) is outside XNNPACK's input/output scale ratio.
    xnn = m["compat"]["results"]["xnnpack"]
    assert xnn["real"]["agrees"] is True, xnn["real"]["differences"]
    assert any(c["op"] == "SUB" and "scale / output scale" in c["detail"] for c in xnn["cpu_ops"])
    summary = (enc6["pkg"] / "summary.md").read_text()
    assert (
        f"| quantization | full-int8 with {kept['ops']} ops kept in float (I/O float32" in summary
    )
    assert f"| kept in float | full-int8 with {kept['ops']} ops kept in float by the encoder" in (
        summary
    )


def _verify(pkg: Path, capsys) -> str:  # type: ignore[no-untyped-def]
    capsys.readouterr()
    main(["verify", str(pkg), "--json"])
    return str(capsys.readouterr().out)


def test_verify_refuses_float_ops_the_manifest_does_not_list(enc6, tmp_path: Path, capsys) -> None:
    """A package whose recorded kept ops miss one of the model's float ops fails `verify`."""
    import shutil

    pkg = tmp_path / "pkg"
    shutil.copytree(enc6["pkg"], pkg)
    m = _manifest(pkg)
    info = read_model(pkg / "model.tflite")
    softmax = next(o for o in info.operators if o.op == "SOFTMAX")
    m["quantization"]["route"]["kept_float"]["tensors"].remove(
        info.tensors[softmax.outputs[0]].name
    )
    (pkg / "manifest.json").write_text(json.dumps(m))
    doc = json.loads(_verify(pkg, capsys))
    check = next(c for c in doc["checks"] if c["check"] == "recomputed")
    assert check["status"] == "fail"
    assert (
        "1 float op(s) of the model are not among the recorded ones (first: SOFTMAX)"
        in (check["detail"])
    )


def test_a_float_op_outside_the_recipe_refuses_the_route(enc6) -> None:
    """An intentional recipe is told apart from an accidental leftover."""
    info = read_model(enc6["pkg"] / "model.tflite")
    tensors = frozenset(_manifest(enc6["pkg"])["quantization"]["route"]["kept_float"]["tensors"])
    check_route(info, QuantMode.FULL_INT8, IODtype.FLOAT32, tensors)  # the recipe: accepted
    softmax = next(o for o in info.operators if o.op == "SOFTMAX")
    with pytest.raises(QuantizationError) as exc:
        check_route(
            info,
            QuantMode.FULL_INT8,
            IODtype.FLOAT32,
            tensors - {info.tensors[softmax.outputs[0]].name},
        )
    assert exc.value.message == (
        "full-int8 left 1 op(s) computing in float outside its recipe's float ops: SOFTMAX"
    )
    with pytest.raises(QuantizationError, match=f"left {len(tensors)} op"):
        check_route(info, QuantMode.FULL_INT8, IODtype.FLOAT32)  # no recipe: all leftovers


def _search_inputs(enc6) -> tuple[bytes, list[np.ndarray], list[np.ndarray], np.ndarray]:
    float_bytes = (enc6["pkg"] / "model_float32.tflite").read_bytes()
    calib, ev = _data(enc6["calib"]), _data(enc6["eval"])
    ref = Runner(float_bytes).run(list(cast_inputs(read_model_bytes(float_bytes), ev)))[0]
    return float_bytes, calib, ev, ref


def test_group_search_stops_at_its_cap_with_the_reason(enc6) -> None:
    """An unreachable gate: the search tries at most max_groups groups and says so."""
    float_bytes, calib, ev, ref = _search_inputs(enc6)
    with pytest.raises(GateError) as exc:
        search(float_bytes, calib, ev, ref, None, Gate(min_fidelity=1.0), max_groups=2,
               time_budget_s=1e9)  # fmt: skip
    msg = exc.value.message
    ops = read_model_bytes(float_bytes).operators
    half = len([o for o in ops if o.op not in ("QUANTIZE", "DEQUANTIZE")]) // 2  # default budget
    assert msg.startswith(f"no fallback recipe within {half} float op(s) meets the gate (cosine")
    assert "stopped by: the cap of 2 groups tried;" in msg
    assert "after 2 group(s) tried" in msg
    assert "the encoder recipe alone gave cosine" in msg
    assert "--fallback-budget" not in exc.value.hint  # the budget did not stop it
    # A time bound already spent stops it before any group.
    with pytest.raises(GateError) as exc:
        search(float_bytes, calib, ev, ref, None, Gate(min_fidelity=1.0), time_budget_s=0)
    assert "stopped by: the time bound of 0 s" in exc.value.message
    assert "after 0 group(s) tried" in exc.value.message


def test_group_search_passes_a_gate_just_above_the_recipe(enc6) -> None:
    """Greedy over ranked groups from the recipe's model: the gate is set just above what the
    recipe alone gives (derived in the run), the search keeps whole groups until it passes."""
    float_bytes, calib, ev, ref = _search_inputs(enc6)
    with pytest.raises(GateError) as exc:  # the recipe's own fidelity, from the search
        search(float_bytes, calib, ev, ref, None, Gate(min_fidelity=1.0), max_groups=0)
    base = float(exc.value.message.split("alone gave cosine ")[1][:6])
    gate = Gate(min_fidelity=round(base + 1e-4, 4))
    result = search(float_bytes, calib, ev, ref, None, gate)
    rec = result.record
    assert rec["strategy"] == "op-groups"
    assert 1 <= rec["groups_tried"] <= MAX_GROUP_STEPS == rec["max_steps"]
    assert rec["stopped_by"] == ["the gate passed"]
    steps = rec["steps"]
    assert steps[0]["group"] == "encoder recipe"
    assert len(steps) == rec["groups_tried"] + 1
    tried = [s["group"] for s in steps[1:]]
    ranked = [g["name"] for g in rec["groups"]]
    assert tried == ranked[: len(tried)]  # best ranked first, none skipped
    scores = [g["score_db"] for g in rec["groups"]]
    assert scores == sorted(scores, reverse=True)
    accepted = [s for s in steps[1:] if s["accepted"]]
    assert accepted and accepted[-1]["cosine"] >= gate.min_fidelity
    assert result.metrics["cosine"] == accepted[-1]["cosine"]
    assert rec["ops_kept_out_of_int8"] == accepted[-1]["float_ops"]
    n = te.SIX_LAYERS.layers
    assert rec["recipe_kept"]["ops"] == 4 * (2 * n + 1) + 2 * n + 1  # LN stats, softmax, lookup
    assert rec["left_float_by_quantizer"] == []
    check_result(read_model_bytes(result.model), rec, "float32")


def test_auto_fallback_build_is_bounded(enc6, tmp_path, capsys) -> None:
    """Through the CLI with an unreachable gate: the group search ends after at most
    MAX_GROUP_STEPS candidate recipes (or its time bound, 1.5x the plain build's seconds, on a
    slow machine) and names what stopped it; exit 3, no package."""
    out = tmp_path / "pkg"
    rc = main(te.build_args6(enc6, out, "--auto-fallback", "--min-fidelity", "0.99999"))
    err = capsys.readouterr().err
    assert rc == 3
    assert "no fallback recipe within" in err and "meets the gate (cosine >= 0.99999)" in err
    tried = int(err.split(" group(s) tried;")[0].rsplit("after ", 1)[1])
    assert 0 <= tried <= MAX_GROUP_STEPS
    stopped = err.split("stopped by: ")[1].split("; closest")[0]
    assert stopped == f"the cap of {MAX_GROUP_STEPS} groups tried" or (
        stopped.startswith("the time bound of ") and stopped.endswith(" s")
    )
    n = te.SIX_LAYERS.layers
    assert f"with the encoder recipe ({4 * (2 * n + 1) + 2 * n + 1} ops float)" in err
    assert not out.exists()
