"""`edgepack analyze`: per-layer error of a package against its float reference."""

from __future__ import annotations

import csv
import json

import pytest

from edgepack.accuracy.analyze import short_name
from edgepack.cli import main

pytestmark = pytest.mark.slow


def test_analyze_points_at_the_outlier_layer(plain_package, digits_files, capsys) -> None:
    rc = main(["analyze", str(plain_package), "--eval", str(digits_files["eval"]), "--top", "3"])
    out = capsys.readouterr().out
    assert rc == 0
    lines = out.splitlines()
    assert "8 op outputs compared on 100 samples" in lines[0]
    first = lines[3].split()
    assert first[:3] == ["1", "2", "DEPTHWISE_CONV_2D"]  # rank 1: conv1 (op 2 after QUANTIZE)
    assert first[3] == "DigitsNet/Conv2d_conv1"
    table = plain_package / "analysis" / "layers.csv"
    rows = list(csv.DictReader(table.open()))
    assert len(rows) == 8
    conv1 = rows[0]
    # The energy-weighted SNR looks healthy; the median per-position SNR shows the damage.
    assert float(conv1["snr_db"]) > 30
    assert float(conv1["median_snr_db"]) < 3
    assert float(conv1["added_db"]) > 40
    assert {r["matched_by"] for r in rows} <= {"name", "position"}


def test_analyze_json_and_output_file(plain_package, digits_files, tmp_path, capsys) -> None:
    dest = tmp_path / "t.json"
    rc = main(
        [
            "analyze",
            str(plain_package),
            "--eval",
            str(digits_files["eval"]),
            "--json",
            "--samples",
            "20",
            "-o",
            str(dest),
        ]
    )
    assert rc == 0
    printed = json.loads(capsys.readouterr().out)
    saved = json.loads(dest.read_text())
    assert printed == saved
    assert saved["samples"] == 20
    assert [r["rank"] for r in saved["layers"]] == list(range(1, 9))
    added = [r["added_db"] for r in saved["layers"]]
    assert added == sorted(added, reverse=True)


def test_analyze_errors(plain_package, digits_files, tmp_path, capsys) -> None:
    ev = str(digits_files["eval"])
    assert main(["analyze", str(plain_package), "--eval", ev, "-o", str(tmp_path / "t.txt")]) == 2
    assert "unknown table format '.txt'" in capsys.readouterr().err
    assert main(["analyze", str(tmp_path), "--eval", ev]) == 2
    assert "no manifest.json" in capsys.readouterr().err
    (tmp_path / "bad.npz").write_bytes(b"")
    no_ref = tmp_path / "noref"
    no_ref.mkdir()
    manifest = json.loads((plain_package / "manifest.json").read_text())
    del manifest["reference_model"]
    (no_ref / "manifest.json").write_text(json.dumps(manifest))
    assert main(["analyze", str(no_ref), "--eval", ev]) == 2
    err = capsys.readouterr().err
    assert "holds no float reference model" in err and "--reference" in err


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("model_file", "../outside.tflite", "model_file '../outside.tflite' is not a path inside"),
        ("reference_model", "/etc/hosts", "reference_model '/etc/hosts' is not a path inside"),
        ("source", "x", "source.inputs or quantization.io_layout is not what"),
        ("quantization", {"io_layout": "../x"}, "source.inputs or quantization.io_layout"),
    ],
)
def test_analyze_reads_the_manifest_as_data(  # type: ignore[no-untyped-def]
    plain_package, digits_files, tmp_path, capsys, key, value, message
) -> None:
    """A crafted manifest names no file outside the package and crashes nothing."""
    import shutil

    pkg = shutil.copytree(plain_package, tmp_path / "pkg")
    manifest = json.loads((pkg / "manifest.json").read_text())
    manifest[key] = value
    (pkg / "manifest.json").write_text(json.dumps(manifest))
    capsys.readouterr()
    assert main(["analyze", str(pkg), "--eval", str(digits_files["eval"])]) == 2
    err = capsys.readouterr().err
    assert message in err and "hint:" in err and "Traceback" not in err


def test_short_names() -> None:
    name = (
        "m.Net;;m.Net/torch.nn.modules.container.Sequential_features/"
        "torch.nn.modules.conv.Conv2d_8;1"
    )
    assert short_name(name) == "Sequential_features/Conv2d_8"
    assert short_name("serving_default_output_0_output") == "serving_default_output_0_output"
