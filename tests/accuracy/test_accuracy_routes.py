"""The fallback's route (ai-edge-quantizer static int8, min/max calibration) is only relied on
because, with no op kept float, it matches the core's full-int8 route (the TFLite calibrator)
on the bundled digits CNN. Checked here, with numbers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import digits_args

from edgepack.accuracy.fallback import Searcher
from edgepack.accuracy.metrics import top1
from edgepack.cli import main
from edgepack.data import Dataset
from edgepack.runtime import Runner
from edgepack.source import load_source
from edgepack.stages import convert, export
from edgepack.stages.base import StageContext
from edgepack.stages.quantize import _calibrate_full_int8
from edgepack.targets import IODtype, IOLayout
from edgepack.tflite import read_model, read_model_bytes

pytestmark = pytest.mark.slow
DIGITS = Path(__file__).resolve().parents[2] / "examples" / "digits"


def test_aeq_min_max_route_matches_the_core_route_on_digits(tmp_path) -> None:
    model = load_source(f"{DIGITS / 'model.py'}:build_model", DIGITS / "weights.pt", ["1x1x32x32"])
    ctx = StageContext(workdir=tmp_path)
    float_bytes = convert.run(export.run(model, ctx), IOLayout.NCHW, ctx).path.read_bytes()
    calib = np.load(DIGITS / "calib.npz")["x"][:200].astype(np.float32)
    ev = np.load(DIGITS / "eval.npz")
    x, y = ev["x"].astype(np.float32), ev["y"]

    core = _calibrate_full_int8(
        float_bytes, Dataset((calib,), None, "calib"), IODtype.FLOAT32, "nchw", 1
    )
    aeq = Searcher(float_bytes, [calib], "float32").quantize(())
    ref = Runner(float_bytes).run([x])[0]
    core_out = Runner(core).run([x])[0]
    aeq_out = Runner(aeq).run([x])[0]

    assert top1(ref, y) == pytest.approx(99.1111, abs=1e-3)
    assert top1(core_out, y) == top1(aeq_out, y) == pytest.approx(99.1111, abs=1e-3)
    core_err = np.abs(core_out - ref)
    aeq_err = np.abs(aeq_out - ref)
    assert aeq_err.mean() == pytest.approx(core_err.mean(), rel=0.05)  # ~0.107 both
    assert aeq_err.max() == pytest.approx(core_err.max(), rel=0.05)  # ~0.91 both
    info = read_model_bytes(aeq)
    assert info.float_compute_ops() == []  # all-int8 graph, float I/O
    assert [t.dtype for t in info.input_tensors + info.output_tensors] == ["FLOAT32", "FLOAT32"]


def test_int16_precision_keeps_the_ops_integer(digits_files, tmp_path, capsys) -> None:
    """--fallback-precision int16: the same 3 ops get 16-bit activations instead of float;
    on this outlier (x300) that recovers most, not all, of the accuracy."""
    out = tmp_path / "pkg"
    gate = ("--max-accuracy-drop", "5", "--auto-fallback", "--fallback-precision", "int16")
    assert main(digits_args(digits_files, out, *gate)) == 0, capsys.readouterr().err
    m = json.loads((out / "manifest.json").read_text())
    fb = m["quantization"]["fallback"]
    assert fb["precision"] == "int16"
    assert fb["ops_kept_out_of_int8"] == 3
    assert 0.5 < m["metrics"]["accuracy"]["drop_points"] <= 5  # ~4.4 points
    info = read_model(out / "model.tflite")
    assert info.float_compute_ops() == []  # no float compute: int8 and int16 only
    assert "INT16" in info.summary()["tensor_dtypes"]
