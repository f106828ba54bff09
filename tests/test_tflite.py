from __future__ import annotations

from pathlib import Path

import pytest

from edgepack.tflite import TFLiteReadError, read_model


def test_reads_float_model(float_tflite: Path) -> None:
    info = read_model(float_tflite)
    assert info.op_counts()["CONV_2D"] == 2
    assert info.input_tensors[0].shape == (1, 1, 32, 32)
    assert info.input_tensors[0].dtype == "FLOAT32"
    assert info.output_tensors[0].shape == (1, 10)
    # every compute op of a float model computes in float
    assert len(info.float_compute_ops()) == len(info.operators)
    # 93k float params ~ 372 KB of weights
    assert 350_000 < sum(t.buffer_bytes for t in info.tensors) < 400_000


def test_reads_quantized_package(digits_package: Path) -> None:
    info = read_model(digits_package / "model.tflite")
    assert info.float_compute_ops() == []
    conv_weights = [t for t in info.tensors if t.is_constant and t.dtype == "INT8"]
    assert conv_weights and all(t.quantization.is_quantized for t in conv_weights)
    assert info.input_tensors[0].dtype == "FLOAT32"  # rpi4: full-int8 with float I/O
    assert "QUANTIZE" in info.op_counts() and "DEQUANTIZE" in info.op_counts()


def test_not_a_tflite(tmp_path: Path) -> None:
    bad = tmp_path / "x.tflite"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(TFLiteReadError, match="not a TFLite flatbuffer"):
        read_model(bad)
    with pytest.raises(TFLiteReadError, match="model file not found"):
        read_model(tmp_path / "nope.tflite")


def test_truncated_file_is_a_clear_error(float_tflite: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.tflite"
    cut.write_bytes(float_tflite.read_bytes()[:2000])
    with pytest.raises(TFLiteReadError, match="could not be parsed"):
        read_model(cut)
