from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgepack.data import load_dataset
from edgepack.errors import QuantizationError
from edgepack.runtime import Runner
from edgepack.stages import quantize
from edgepack.stages.base import InputSpec, StageContext, TFLiteArtifact
from edgepack.targets import Int8Engine, IODtype, QuantMode
from edgepack.tflite import read_model
from tests.conftest import DIGITS

SPEC = (InputSpec("x", (1, 1, 32, 32)),)


@pytest.fixture(scope="module")
def calib():  # type: ignore[no-untyped-def]
    return load_dataset(DIGITS / "calib.npz", SPEC, purpose="calibration", samples=100)


@pytest.fixture(scope="module")
def evald():  # type: ignore[no-untyped-def]
    return load_dataset(DIGITS / "eval.npz", SPEC, purpose="evaluation", samples=200)


def _q(float_tflite: Path, tmp_path: Path, mode: QuantMode, io: IODtype, data):  # type: ignore[no-untyped-def]
    ctx = StageContext(workdir=tmp_path)
    art = quantize.run(TFLiteArtifact(float_tflite, "float32"), mode, io, data, ctx)
    return art, ctx.records[-1], read_model(art.path)


@pytest.mark.parametrize("io", [IODtype.FLOAT32, IODtype.INT8, IODtype.UINT8])
def test_full_int8_is_all_integer_with_requested_io(
    float_tflite, tmp_path, calib, evald, io
) -> None:  # type: ignore[no-untyped-def]
    art, rec, info = _q(float_tflite, tmp_path, QuantMode.FULL_INT8, io, calib)
    assert info.float_compute_ops() == []
    want = {"float32": "FLOAT32", "int8": "INT8", "uint8": "UINT8"}[io.value]
    assert [t.dtype for t in info.input_tensors + info.output_tensors] == [want, want]
    assert rec.params["route"]["calibration"] == "min-max"
    assert rec.params["calibration_samples"] == 100
    assert info.size_bytes < 0.35 * float_tflite.stat().st_size  # int8 weights: ~4x smaller
    # it still classifies: the Runner quantizes float inputs with the model's own scale
    out = Runner(art.path).run(list(evald.inputs))[0]
    acc = float((out.argmax(1) == evald.labels).mean())
    assert acc > 0.97


def test_integer_io_quantization_parameters_are_real(float_tflite, tmp_path, calib) -> None:  # type: ignore[no-untyped-def]
    _, _, info = _q(float_tflite, tmp_path, QuantMode.FULL_INT8, IODtype.UINT8, calib)
    q = info.input_tensors[0].quantization
    # inputs are in [0, 1]: uint8 covers them with scale ~1/255 and zero point 0
    assert q.scales[0] == pytest.approx(1 / 255, rel=0.05)
    assert q.zero_points[0] == 0


def test_dynamic_range_keeps_float_io_and_int8_weights(float_tflite, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _, rec, info = _q(float_tflite, tmp_path, QuantMode.DYNAMIC_RANGE, IODtype.FLOAT32, None)
    assert info.input_tensors[0].dtype == "FLOAT32"
    weights = [t for t in info.tensors if t.is_constant and len(t.shape) >= 2]
    assert weights and all(t.dtype == "INT8" for t in weights)
    assert rec.params["route"]["recipe"] == "dynamic_wi8_afp32"


def test_float16_weights(float_tflite, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _, _, info = _q(float_tflite, tmp_path, QuantMode.FLOAT16, IODtype.FLOAT32, None)
    assert sum(1 for t in info.tensors if t.dtype == "FLOAT16") >= 4
    assert 0.45 < info.size_bytes / float_tflite.stat().st_size < 0.6


def test_full_int8_without_calibration_is_an_error(float_tflite, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(QuantizationError, match="full-int8 needs calibration data"):
        _q(float_tflite, tmp_path, QuantMode.FULL_INT8, IODtype.FLOAT32, None)


def test_deterministic(float_tflite, tmp_path, calib) -> None:  # type: ignore[no-untyped-def]
    a, _, _ = _q(float_tflite, tmp_path / "a", QuantMode.FULL_INT8, IODtype.INT8, calib)
    b, _, _ = _q(float_tflite, tmp_path / "b", QuantMode.FULL_INT8, IODtype.INT8, calib)
    assert a.path.read_bytes() == b.path.read_bytes()


def test_check_result_names_float_ops(float_tflite) -> None:  # type: ignore[no-untyped-def]
    info = read_model(float_tflite)
    with pytest.raises(QuantizationError) as e:
        quantize.check_result(info, QuantMode.FULL_INT8, IODtype.FLOAT32)
    assert "left 8 op(s) computing in float" in e.value.message
    assert "CONV_2D" in e.value.message and "FULLY_CONNECTED" in e.value.message
    with pytest.raises(QuantizationError, match="I/O is not uint8"):
        quantize.check_result(info, QuantMode.FULL_INT8, IODtype.UINT8)


def test_nhwc_calibration_layout() -> None:
    x = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)
    assert quantize.to_boundary_layout(x, "nhwc").shape == (2, 4, 5, 3)
    assert quantize.to_boundary_layout(x, "nchw") is x


# ---- full-int8 routes --------------------------------------------------------------------
ROUTE_MODELS = Path(__file__).resolve().parent / "route_models.py"
PADV2_REFUSAL = "full-int8 left 1 op(s) computing in float: PADV2"


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.reshape(-1).astype(np.float64), b.reshape(-1).astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.mark.slow
def test_padded_max_pool_net_gets_full_int8_from_the_second_route(cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    import torch

    from tests.stages import route_models

    np.savez(tmp_path / "calib.npz", **route_models.calibration_data(64, seed=1))
    np.savez(tmp_path / "eval.npz", **route_models.calibration_data(48, seed=2))
    pkg = tmp_path / "pkg"
    r = cli(
        "build",
        f"{ROUTE_MODELS}:build_model",
        "--input-shape",
        "1x3x32x32",
        "--target",
        "rpi4",
        "--quantization",
        "full-int8",
        "--calibration",
        tmp_path / "calib.npz",
        "--eval",
        tmp_path / "eval.npz",
        "--latency-runs",
        "0",
        "-o",
        pkg,
    )
    assert r.code == 0, r.err
    assert (
        f"ai-edge-litert calibrator refused ({PADV2_REFUSAL}); trying ai-edge-quantizer "
        "static_wi8_ai8" in r.err
    )
    info = read_model(pkg / "model.tflite")
    assert "PADV2" in info.op_counts()  # the op the calibrator left in float is now int8
    assert info.float_compute_ops() == []
    manifest = json.loads((pkg / "manifest.json").read_text())
    route = manifest["quantization"]["route"]
    assert route["engine"] == "ai-edge-quantizer"
    assert route["recipe"] == "static_wi8_ai8"
    assert route["calibration"].startswith("min-max")
    assert route["int8_engine"] == "auto"
    assert route["tried"] == [
        {"engine": "ai-edge-litert calibrator", "outcome": "refused", "reason": PADV2_REFUSAL},
        {"engine": "ai-edge-quantizer", "outcome": "used"},
    ]
    summary = (pkg / "summary.md").read_text()
    assert "ai-edge-quantizer static_wi8_ai8 after ai-edge-litert calibrator refused: " in summary
    # Agrees with the float model: fidelity derived here, from PyTorch and the package.
    x = np.load(tmp_path / "eval.npz")["x"]
    with torch.no_grad():
        ref = route_models.build_model()(torch.from_numpy(x)).numpy()
    out = Runner(pkg / "model.tflite").run([x])[0]
    cos = _cosine(ref, out)
    assert cos >= 0.98
    assert manifest["metrics"]["fidelity"]["cosine"] == pytest.approx(cos, abs=1e-3)
    assert manifest["metrics"]["float_parity"]["max_rel_diff"] < 1e-4

    # Integer I/O holds on the second route; an explicit engine choice is taken as given.
    float_model = TFLiteArtifact(pkg / "model_float32.tflite", "float32")
    calib = load_dataset(
        tmp_path / "calib.npz", (InputSpec("x", route_models.SHAPE),), purpose="calibration"
    )
    for io in (IODtype.INT8, IODtype.UINT8):
        ctx = StageContext(workdir=tmp_path / io.value)
        art = quantize.run(float_model, QuantMode.FULL_INT8, io, calib, ctx)
        q = read_model(art.path)
        assert q.float_compute_ops() == []
        want = io.value.upper()
        assert [t.dtype for t in q.input_tensors + q.output_tensors] == [want, want]
        assert ctx.records[-1].params["route"]["engine"] == "ai-edge-quantizer"
        assert _cosine(ref, Runner(art.path).run([x])[0]) >= 0.98
    ctx = StageContext(workdir=tmp_path / "calibrator")
    with pytest.raises(QuantizationError) as err:
        quantize.run(
            float_model,
            QuantMode.FULL_INT8,
            IODtype.FLOAT32,
            calib,
            ctx,
            int8_engine=Int8Engine.CALIBRATOR,
        )
    assert err.value.message == PADV2_REFUSAL


def test_digits_keeps_the_first_route(digits_package) -> None:  # type: ignore[no-untyped-def]
    import json

    manifest = json.loads((digits_package / "manifest.json").read_text())
    route = manifest["quantization"]["route"]
    assert manifest["quantization"]["mode"] == "full-int8"
    assert route["engine"] == "ai-edge-litert calibrator"
    assert route["tried"] == [{"engine": "ai-edge-litert calibrator", "outcome": "used"}]
    assert "quantization route" not in (digits_package / "summary.md").read_text()


def test_int8_engine_needs_full_int8(cli) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import digits_build_args

    r = cli(*digits_build_args("rpi4", "--quantization", "dynamic-range", "--int8-engine", "aeq"))
    assert r.code == 2
    assert "--int8-engine aeq applies to full-int8 builds (this one is dynamic-range)" in r.err
    r = cli(*digits_build_args("rpi4", "--int8-engine", "aqe"))
    assert r.code == 2
    assert "error: unknown --int8-engine 'aqe'" in r.err
    assert "did you mean 'aeq'? accepted: auto, calibrator, aeq" in r.err
