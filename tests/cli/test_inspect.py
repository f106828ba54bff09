from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.json_mutations import VALUES, mutated, nodes


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


REFUSED = "is not a path inside the package"


@pytest.mark.parametrize("value", VALUES, ids=["str", "null", "list", "object"])
def test_inspect_reads_any_manifest_as_data(
    cli, digits_package: Path, tmp_path: Path, value
) -> None:  # type: ignore[no-untyped-def]
    """Every node of the manifest (containers too) replaced in turn: inspect shows the model,
    or exits 2 with the error naming the field it needs (model_file, schema_version)."""
    pkg = shutil.copytree(digits_package, tmp_path / "pkg")
    doc = json.loads((pkg / "manifest.json").read_text())
    problems = []
    cases = list(nodes(doc))
    assert len(cases) > 200  # every field of a real manifest
    for path in cases:
        (pkg / "manifest.json").write_text(json.dumps(mutated(doc, path, value)))
        try:
            r = cli("inspect", pkg)
        except Exception as exc:
            problems.append((path, "raised", repr(exc)))
            continue
        want = {
            "model_file": "model file not found" if value == "x" else REFUSED,
            "schema_version": "this edgepack reads 1",
        }.get(str(path[0]))
        if "Traceback" in r.err or r.code != (0 if want is None else 2):
            problems.append((path, r.code, r.err[-300:]))
        elif want is None and "CONV_2D" not in r.out:
            problems.append((path, "no ops", r.out[:200]))
        elif want is not None and not (
            r.err.startswith("error: ") and want in r.err and "\nhint: " in r.err
        ):
            problems.append((path, "message", r.err))
    assert problems == []


@pytest.mark.parametrize("model_file", ["../outside.tflite", "{abs}", "link.tflite", ""])
def test_inspect_refuses_a_model_file_outside_the_package(  # type: ignore[no-untyped-def]
    cli, digits_package: Path, tmp_path: Path, model_file: str
) -> None:
    pkg = shutil.copytree(digits_package, tmp_path / "pkg")
    outside = shutil.copy(pkg / "model.tflite", tmp_path / "outside.tflite")
    (pkg / "link.tflite").symlink_to(outside)
    m = json.loads((pkg / "manifest.json").read_text())
    m["model_file"] = model_file.format(abs=outside)
    (pkg / "manifest.json").write_text(json.dumps(m))
    r = cli("inspect", pkg)
    assert (r.code, r.out) == (2, "")
    assert r.err == (
        f"error: {pkg / 'manifest.json'}: model_file {m['model_file']!r} {REFUSED}\n"
        'hint: model_file names a file in the package folder (e.g. "model.tflite"); rebuild '
        "the package with `edgepack build`\n"
    )
    del m["model_file"]
    (pkg / "manifest.json").write_text(json.dumps(m))
    r = cli("inspect", pkg)
    assert r.code == 2 and f"model_file None {REFUSED}" in r.err
