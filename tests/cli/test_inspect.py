from __future__ import annotations

import json
from pathlib import Path


def test_inspect_package_and_file(cli, digits_package: Path) -> None:  # type: ignore[no-untyped-def]
    r = cli("inspect", digits_package / "model.tflite")
    assert r.code == 0, r.err
    assert "CONV_2D" in r.out and "FULLY_CONNECTED" in r.out
    assert "float32" in r.out  # rpi4 keeps float I/O
    assert "largest tensors" in r.out
    r2 = cli("inspect", digits_package, "--json")
    data = json.loads(r2.out)
    assert data["ops"]["CONV_2D"] == 2
    assert data["float_compute_ops"] == []
    assert data["tensors_by_size"][0][1] >= data["tensors_by_size"][-1][1]


def test_inspect_shows_quantization_params(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import digits_build_args

    out = tmp_path / "c"
    assert cli(*digits_build_args("coral-usb", "-o", out, "--latency-runs", "0")).code == 0
    r = cli("inspect", out / "model.tflite")
    assert "uint8" in r.out and "scale 0.00392157 zero_point 0" in r.out


def test_inspect_errors(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    r = cli("inspect", tmp_path / "none.tflite")
    assert r.code == 2 and "error: model file not found" in r.err
    f = tmp_path / "x.tflite"
    f.write_text("hello world, not a model")
    r = cli("inspect", f)
    assert r.code == 2 and "not a TFLite flatbuffer" in r.err and "hint:" in r.err
    r = cli("inspect", tmp_path)
    assert r.code == 2 and "no manifest.json" in r.err


def test_inspect_metadata(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from edgepack import tflite_metadata as tm

    tiny = Path(__file__).parent.parent / "fixtures" / "tiny_int8.tflite"
    r = cli("inspect", tiny)
    assert r.code == 0 and "metadata: none (no TFLITE_METADATA)" in r.out
    assert json.loads(cli("inspect", tiny, "--json").out)["metadata"] is None
    meta = tm.ModelMetadataInfo(
        "tiny", "", "1", (tm.TensorInfo("x"),), (tm.TensorInfo("y", labels_file="labels.txt"),)
    )
    labels = "".join(f"class{k}\n" for k in range(7)).encode()
    f = tmp_path / "m.tflite"
    f.write_bytes(tm.embed(tiny.read_bytes(), tm.build_metadata(meta), {"labels.txt": labels}))
    r = cli("inspect", f)
    assert r.code == 0, r.err
    assert "output y: 7 labels (labels.txt: class0, class1, class2, class3, class4, ...)" in r.out
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(tm.embed(tiny.read_bytes(), b"\xff\xff\x00\x00M001\x00\x00\x00\x00", {}))
    r = cli("inspect", bad)
    assert r.code == 2 and "TFLITE_METADATA cannot be read" in r.err and "hint:" in r.err
