"""`edgepack build --auto-fallback` on a CNN made sensitive to int8 on purpose.

DigitsNet (8x8 digits) with conv1's channel 0 scaled x300 and conv2's reading of it scaled
back: the float function is unchanged, full-int8 loses ~41 points of top-1. The weights are
checked in (tests/accuracy/fixtures/); the figures asserted here are still derived in the run
from the plain full-int8 build (``plain_package``), not copied from one machine's run.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import digits_args

from edgepack.cli import main
from edgepack.tflite import read_model

pytestmark = pytest.mark.slow


# One sample of the 450-sample eval split, in points: two int8 routes "agree" within it.
ONE_SAMPLE = 100 / 450 + 1e-9


def _manifest(pkg: Path) -> dict:
    return json.loads((pkg / "manifest.json").read_text())


def _core(plain_package: Path) -> dict:
    """Top-1 of the plain full-int8 build (the core route): float, quantized, drop."""
    acc = _manifest(plain_package)["metrics"]["accuracy"]
    assert acc["drop_points"] == pytest.approx(acc["float"] - acc["quantized"], abs=1e-3)
    assert acc["drop_points"] > 20  # the planted outlier wrecks per-tensor int8 (~41 points)
    return acc


def _number(text: str, before: str, after: str) -> float:
    return float(text.split(before, 1)[1].split(after, 1)[0])


def test_plain_full_int8_misses_a_half_point_gate(
    digits_files, plain_package, tmp_path, capsys
) -> None:
    core = _core(plain_package)
    out = tmp_path / "pkg"
    rc = main(
        digits_args(digits_files, out, "--quantization", "full-int8", "--max-accuracy-drop", "0.5")
    )
    err = capsys.readouterr().err
    assert rc == 3
    # The gate reports the same numbers as the ungated build of the same model.
    assert f"accuracy gate failed: top-1 dropped {core['drop_points']:.2f} points" in err
    assert f"(float {core['float']:.2f}% -> full-int8 {core['quantized']:.2f}%)" in err
    assert "the limit is 0.5 points" in err
    assert "--auto-fallback" in err
    assert not out.exists()


def test_auto_fallback_passes_keeping_most_ops_int8(
    digits_files, plain_package, tmp_path, capsys
) -> None:
    core = _core(plain_package)
    out = tmp_path / "pkg"
    rc = main(digits_args(digits_files, out, "--max-accuracy-drop", "0.5", "--auto-fallback"))
    assert rc == 0, capsys.readouterr().err
    m = _manifest(out)
    fb = m["quantization"]["fallback"]
    assert m["quantization"]["route"]["engine"] == "ai-edge-quantizer"
    assert fb["strategy"] == "sensitivity"
    assert fb["ops_total"] == 8
    assert fb["ops_kept_out_of_int8"] == 3  # conv1, its max-pool, conv2: the outlier's path
    assert [(e["index"], e["op"]) for e in fb["kept"]] == [
        (1, "DEPTHWISE_CONV_2D"),
        (2, "MAX_POOL_2D"),
        (3, "CONV_2D"),
    ]
    assert "Conv2d_conv1" in fb["kept"][0]["layer"]
    steps = fb["steps"]
    assert len(steps) == 2
    # The search's all-int8 step (ai-edge-quantizer) is the core route's result.
    assert steps[0]["drop_points"] == pytest.approx(core["drop_points"], abs=ONE_SAMPLE)
    assert steps[1]["drop_points"] <= 0.5
    assert steps[1]["because"]["layer"].endswith("Conv2d_conv1")
    acc = m["metrics"]["accuracy"]
    assert acc["float"] == core["float"]  # the same float model, measured the same way
    assert acc["drop_points"] <= 0.5
    assert acc["drop_points"] == steps[1]["drop_points"]
    assert core["drop_points"] - acc["drop_points"] > 20  # the fallback recovers the outlier
    assert m["metrics"]["gates"][0] == {
        "gate": "max_accuracy_drop",
        "limit": 0.5,
        "value": acc["drop_points"],
        "passed": True,
    }
    # Read back: exactly the kept ops compute in float, everything else is int8.
    info = read_model(out / "model.tflite")
    floats = info.float_compute_ops()
    assert sorted(o.op for o in floats) == ["CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D"]
    int8_compute = [
        o for o in info.operators if o.op not in ("QUANTIZE", "DEQUANTIZE") and o not in floats
    ]
    assert len(int8_compute) == 5
    assert [t.dtype for t in info.input_tensors + info.output_tensors] == ["FLOAT32", "FLOAT32"]
    # The per-op recipe is in the manifest: one no_quantize entry per kept op.
    kept = [r for r in fb["recipe"] if r["algorithm_key"] == "no_quantize" and r["regex"] != ".*"]
    assert len(kept) == 3
    # The float reference ships in the package for `edgepack analyze`.
    assert m["reference_model"] == "model_float32.tflite"
    assert set(m["files"]) == {"model.tflite", "model_float32.tflite", "summary.md"}
    assert "3 of 8 ops kept float" in (out / "summary.md").read_text()


def test_budget_too_small_fails_with_the_closest_recipe(
    digits_files, plain_package, tmp_path, capsys
) -> None:
    core = _core(plain_package)
    out = tmp_path / "pkg"
    args = ("--max-accuracy-drop", "0.5", "--auto-fallback", "--fallback-budget", "2")
    rc = main(digits_args(digits_files, out, *args))
    err = capsys.readouterr().err
    assert rc == 3
    assert (
        "no fallback recipe within 2 float op(s) meets the gate (top-1 drop <= 0.5 points)" in err
    )
    all_int8 = _number(err, "all-int8 gave top-1 drop ", " points")
    assert all_int8 == pytest.approx(core["drop_points"], abs=ONE_SAMPLE)
    closest = _number(err, "closest: top-1 drop ", " points")
    assert 0.5 < closest < all_int8  # better than all-int8, not good enough
    assert "raise --fallback-budget" in err
    assert not out.exists()


def test_accelerator_target_keeps_float_ops_in_one_tail(digits_files, tmp_path, capsys) -> None:
    """coral-usb (Edge TPU, uint8 NHWC I/O): float ops form one tail of the graph and the
    cost is reported. conv1 is the culprit, so everything from conv1 on leaves the TPU: for
    this model that is the whole graph, and the manifest says so."""
    out = tmp_path / "pkg"
    gate = ("--max-accuracy-drop", "0.5", "--auto-fallback", "--fallback-budget", "8")
    args = digits_args(digits_files, out, *gate)
    args[args.index("rpi4")] = "coral-usb"
    rc = main(args)
    assert rc == 0, capsys.readouterr().err
    m = _manifest(out)
    fb = m["quantization"]["fallback"]
    assert fb["strategy"] == "graph-suffix"
    idx = [e["index"] for e in fb["kept"]]
    assert idx == list(range(idx[0], fb["ops_total"]))  # contiguous up to the last op
    assert idx[0] == 0  # NHWC graph: conv1 is op 0
    assert fb["accelerator"] == {
        "kind": "edgetpu",
        "ops_moved_off_accelerator": 7,
        "first_cpu_op": fb["kept"][0],
        "note": "float ops form one tail of the graph: the accelerated part stays in one piece",
    }
    assert m["metrics"]["accuracy"]["drop_points"] <= 0.5
    # The profile's uint8 I/O survives the float tail: boundary QUANTIZE / DEQUANTIZE ops.
    info = read_model(out / "model.tflite")
    assert [t.dtype for t in info.input_tensors + info.output_tensors] == ["UINT8", "UINT8"]
    assert info.input_tensors[0].shape == (1, 8, 8, 1)
    # With the default budget (half the ops) the same build is refused with its numbers.
    refused = tmp_path / "refused"
    args = digits_args(digits_files, refused, "--max-accuracy-drop", "0.5", "--auto-fallback")
    args[args.index("rpi4")] = "coral-usb"
    assert main(args) == 3
    err = capsys.readouterr().err
    assert "no fallback recipe within 3 float op(s)" in err
    assert not refused.exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--auto-fallback", "--no-accuracy-gate"), "--auto-fallback needs a gate"),
        (
            ("--auto-fallback", "--quantization", "dynamic-range", "--max-accuracy-drop", "1"),
            "applies to full-int8",
        ),
        (("--min-fidelity", "1.5"), "--min-fidelity must be in (0, 1]"),
        (("--max-accuracy-drop", "1", "--fallback-budget", "-1"), "--fallback-budget must be >= 0"),
        (("--max-accuracy-drop", "1", "--fallback-precision", "int4"), "accepted: float, int16"),
    ],
)
def test_option_errors_before_any_work(tmp_path: Path, capsys, extra, message) -> None:
    files = {k: tmp_path / f"{k}.npz" for k in ("calib", "eval")}
    for f in files.values():
        f.write_bytes(b"")
    files["weights"] = tmp_path / "w.pt"
    files["weights"].write_bytes(b"")
    rc = main(digits_args(files, tmp_path / "out", *extra))
    err = capsys.readouterr().err
    assert rc == 2
    assert message in err
    assert "hint:" in err


def test_every_limit_that_stops_the_search_is_named(float_tflite) -> None:  # type: ignore[no-untyped-def]
    """An unreachable gate (cosine 1.0): with a large budget the search is stopped by its step
    cap, and the message says so instead of asking for a larger budget."""
    import numpy as np

    from edgepack.accuracy.fallback import Gate, search
    from edgepack.errors import GateError
    from edgepack.runtime import Runner
    from tests.conftest import DIGITS

    calib = [np.load(DIGITS / "calib.npz")["x"][:32]]
    ev = [np.load(DIGITS / "eval.npz")["x"][:32]]
    ref = Runner(float_tflite).run(ev)[0]
    with pytest.raises(GateError) as exc:
        search(float_tflite.read_bytes(), calib, ev, ref, None, Gate(min_fidelity=1.0),
               budget=100, max_steps=1)  # fmt: skip
    err = exc.value
    assert "no fallback recipe within 100 float op(s) meets the gate (cosine >= 1.0)" in err.message
    assert "stopped by: the search's fixed cap of 1 recipes tried" in err.message
    assert "--fallback-budget" not in err.message + err.hint
    with pytest.raises(GateError) as exc:
        search(float_tflite.read_bytes(), calib, ev, ref, None, Gate(min_fidelity=1.0),
               budget=0, max_steps=1)  # fmt: skip
    assert "stopped by: --fallback-budget 0 (" in exc.value.message
    assert "fixed cap" not in exc.value.message
    assert exc.value.hint.startswith("raise --fallback-budget")
