from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edgepack.tflite import TFLiteReadError, read_model, read_model_bytes


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


FIXTURES = Path(__file__).parent / "fixtures"


def _per_element_reads(data: bytes) -> list[tuple[Any, ...]]:
    """Quantization parameters and shapes read one accessor call per value (the reference
    for the vectorized reads)."""
    from ai_edge_litert import schema_py_generated as schema

    g = schema.Model.GetRootAsModel(data, 0).Subgraphs(0)
    out = []
    for i in range(g.TensorsLength()):
        t, q = g.Tensors(i), g.Tensors(i).Quantization()
        scales = tuple(float(q.Scale(j)) for j in range(q.ScaleLength())) if q else ()
        zps = tuple(int(q.ZeroPoint(j)) for j in range(q.ZeroPointLength())) if q else ()
        shape = tuple(int(t.Shape(j)) for j in range(t.ShapeLength()))
        sig = tuple(int(t.ShapeSignature(j)) for j in range(t.ShapeSignatureLength()))
        out.append((scales, zps if scales else (), shape, sig or shape))
    return out


def test_vectorized_reads_equal_per_element_reads() -> None:
    data = (FIXTURES / "tiny_int8.tflite").read_bytes()
    info = read_model_bytes(data)
    per_channel = [t for t in info.tensors if len(t.quantization.scales) > 1]
    assert any(t.dtype == "INT8" for t in per_channel)  # per-channel int8 weights
    got = [
        (t.quantization.scales, t.quantization.zero_points, t.shape, t.shape_signature)
        for t in info.tensors
    ]
    assert got == _per_element_reads(data)
    values = [v for t in info.tensors for v in (*t.quantization.scales, *t.shape)]
    assert {type(v) for v in values} == {float, int}  # Python numbers, not numpy scalars


def test_parse_is_shared_by_content_and_never_stale(tmp_path: Path) -> None:
    import os

    from edgepack import tflite

    data = (FIXTURES / "tiny_int8.tflite").read_bytes()
    a, b = tmp_path / "a.tflite", tmp_path / "b.tflite"
    a.write_bytes(data)
    b.write_bytes(data)
    tflite._MEMO.clear()
    before = tflite.parse_count()
    first = read_model(a)
    assert read_model(a) is first
    other = read_model(b)  # same bytes under another name: the same parse, its own path
    assert other.path == str(b) and other.tensors is first.tensors
    assert tflite.parse_count() == before + 1
    # Same path, size and mtime, other bytes: a new parse, never the memoized one.
    stat = a.stat()
    name = first.tensors[0].name.encode()
    changed = data.replace(name, b"X" + name[1:], 1)
    assert changed != data and len(changed) == len(data)
    a.write_bytes(changed)
    os.utime(a, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    again = read_model(a)
    assert tflite.parse_count() == before + 2
    assert again.tensors[0].name == "X" + first.tensors[0].name[1:]
    assert again.sha256 != first.sha256
