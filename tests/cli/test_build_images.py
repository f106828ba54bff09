"""`edgepack build` from folders of PNG/JPEG images, and the package an app consumes:
labels.txt, the manifest's app and data records, TFLite metadata read back by tflite-support.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgepack.images import pixel_normalization
from tests import image_data
from tests.conftest import CliResult

SHAPE = "1x3x32x32"
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def _clean(r: CliResult, code: int, *messages: str) -> None:
    assert r.code == code, r.err
    assert "Traceback" not in r.err, r.err
    lines = r.err.rstrip("\n").splitlines()
    assert lines[-2].startswith("error: ") and lines[-1].startswith("hint: "), r.err
    for m in messages:
        assert m in r.err, r.err


def _build(src: str, out: Path, *extra: str | Path) -> list[str | Path]:
    return [
        "build",
        src,
        "--input-shape",
        SHAPE,
        "--target",
        "rpi4",
        "--latency-runs",
        "2",
        "--output",
        out,
        *extra,
    ]


@pytest.mark.slow
def test_build_from_image_folders(
    cli: Callable[..., CliResult],
    tmp_path: Path,
    tflite_support_reader: Callable[[Path], dict[str, Any]],
) -> None:
    calib = image_data.write_folder(tmp_path / "calib", per_class=6, seed=0)
    evald = image_data.write_folder(tmp_path / "eval", per_class=4, seed=1)
    src = image_data.write_model(tmp_path)
    pkg = tmp_path / "pkg"
    r = cli(
        *_build(
            src,
            pkg,
            "--calibration",
            calib,
            "--calibration-samples",
            "12",
            "--eval",
            evald,
            "--preprocess",
            image_data.PREPROCESS,
        )
    )
    assert r.code == 0, r.err
    line = "labels.txt (3 classes); TFLite metadata in model.tflite"
    assert line in r.out and line in (pkg / "summary.md").read_text()
    m = json.loads((pkg / "manifest.json").read_text())
    # the model classifies the dominant colour: measured on the decoded eval images
    acc = m["metrics"]["accuracy"]
    assert acc["float"] == 100.0 and acc["quantized"] == 100.0
    assert m["quantization"]["mode"] == "full-int8"
    # which files were used (12 of 18, 4 per class), with their sha256
    cal = m["data"]["calibration"]
    assert (cal["samples"], cal["of"], cal["selection"]) == (12, 18, "stratified")
    assert len(cal["files"]) == 12
    assert [f["path"].split("/")[0] for f in cal["files"]].count("b_green") == 4
    import hashlib

    for f in cal["files"]:
        assert f["sha256"] == hashlib.sha256((calib / f["path"]).read_bytes()).hexdigest()
    ev = m["data"]["evaluation"]
    assert ev["samples"] == 12 and ev["classes"] == list(image_data.CLASSES)
    want = {
        "resize": 32,
        "crop": [32, 32],
        "mean": IMAGENET_MEAN,
        "std": IMAGENET_STD,
        "interpolation": "bilinear",
        "channel_order": "RGB",
        "layout": "NCHW",
        "value_range": [0.0, 1.0],
    }
    assert ev["preprocess"] == want and cal["preprocess"] == want
    # what an app needs: labels.txt, the app record, the metadata in model.tflite
    assert (pkg / "labels.txt").read_text() == "a_red\nb_green\nc_blue\n"
    app = m["app"]
    assert app["preprocess"] == {**want, "from": ["--preprocess"]}
    assert app["labels"] == {
        "file": "labels.txt",
        "count": 3,
        "from": "evaluation folder's class subfolders",
        "names": list(image_data.CLASSES),
    }
    assert app["input"]["shape"] == [1, 3, 32, 32] and app["output"]["shape"] == [1, 3]
    assert "labels.txt" in m["files"]
    assert [s["name"] for s in m["stages"]][-1] == "metadata"
    read = tflite_support_reader(pkg / "model.tflite")
    (sub,) = read["metadata"]["subgraph_metadata"]
    (inp,) = sub["input_tensor_metadata"]
    norm = inp["process_units"][0]["options"]
    mean, std = pixel_normalization(want)
    np.testing.assert_allclose(norm["mean"], mean, rtol=1e-6)
    np.testing.assert_allclose(norm["std"], std, rtol=1e-6)
    np.testing.assert_allclose(norm["mean"], [255 * v for v in IMAGENET_MEAN], rtol=1e-6)
    assert inp["content"]["content_properties"]["color_space"] == "RGB"
    assert read["packed"] == ["labels.txt"]
    assert read["contents"]["labels.txt"].splitlines() == list(image_data.CLASSES)
    (out,) = sub["output_tensor_metadata"]
    assert out["associated_files"][0]["type"] == "TENSOR_AXIS_LABELS"
    # the package verifies (hashes, the model runs, recomputed fields incl. size)
    v = cli("verify", pkg)
    assert v.code == 0, v.out + v.err
    # inspect shows the metadata, for the package and for the .tflite
    for target in (pkg, pkg / "model.tflite"):
        i = cli("inspect", target)
        assert i.code == 0, i.err
        assert "3 labels (labels.txt: a_red, b_green, c_blue)" in i.out
        assert "normalization mean 123.7/116.3/103.5 std 58.4/57.12/57.38" in i.out
        assert "associated files: labels.txt" in i.out
    j = json.loads(cli("inspect", pkg, "--json").out)
    assert j["metadata"]["outputs"][0]["labels"] == list(image_data.CLASSES)


@pytest.mark.slow
def test_api_build_from_a_flat_folder_with_a_labels_file(tmp_path: Path) -> None:
    import edgepack
    from edgepack import tflite_metadata as tm

    flat = tmp_path / "flat"
    flat.mkdir()
    labelled = image_data.write_folder(tmp_path / "imgs", per_class=3)
    for f in sorted(labelled.rglob("*.png")):
        f.rename(flat / f"{f.parent.name}-{f.name}")
    labels = tmp_path / "names.txt"
    labels.write_text("red\ngreen\nblue\n")
    pkg = edgepack.build(
        image_data.write_model(tmp_path),
        input_shapes=[SHAPE],
        target="rpi4",
        calibration=flat,
        preprocess={"resize": 32, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
        labels=labels,
        output=tmp_path / "pkg",
        latency_runs=0,
    )
    m = pkg.manifest
    assert m["data"]["calibration"]["classes"] is None  # flat: unlabelled
    assert len(m["data"]["calibration"]["files"]) == 6
    assert m["app"]["labels"]["from"] == "--labels"
    assert (pkg.path / "labels.txt").read_text() == "red\ngreen\nblue\n"
    meta = tm.read_metadata((pkg.path / "model.tflite").read_bytes())
    assert meta is not None
    np.testing.assert_allclose(meta.inputs[0].mean, [127.5] * 3, rtol=1e-6)
    np.testing.assert_allclose(meta.inputs[0].std, [63.75] * 3, rtol=1e-6)
    assert meta.associated_files == ("labels.txt",)


# --------------------------------------------------------------------------- bad input


@pytest.fixture
def project(tmp_path: Path) -> tuple[str, Path]:
    return image_data.write_model(tmp_path), image_data.write_folder(tmp_path / "imgs", 2)


def test_unknown_preset(cli: Callable[..., CliResult], project: tuple[str, Path]) -> None:
    src, imgs = project
    out = imgs.parent / "pkg"
    r = cli(*_build(src, out, "--calibration", imgs, "--preprocess", "imagnet"))
    _clean(r, 2, "unknown preprocessing preset 'imagnet' - did you mean 'imagenet'?")
    assert not out.exists()


def test_malformed_key_value(cli: Callable[..., CliResult], project: tuple[str, Path]) -> None:
    src, imgs = project
    r = cli(*_build(src, imgs.parent / "pkg", "--calibration", imgs, "--preprocess", "crop:32"))
    _clean(
        r,
        2,
        "--preprocess: 'crop:32' is not key=value (write crop=32)",
        "hint: --preprocess imagenet",
    )
    r = cli(*_build(src, imgs.parent / "pkg", "--calibration", imgs, "--preprocess", "mean=1/a"))
    _clean(r, 2, "mean=1/a is not numbers separated by /")


def test_no_preprocessing_for_images(
    cli: Callable[..., CliResult], project: tuple[str, Path]
) -> None:
    src, imgs = project
    r = cli(*_build(src, imgs.parent / "pkg", "--calibration", imgs))
    _clean(
        r,
        2,
        "the model source does not say how to preprocess images",
        "hint: pass --preprocess imagenet or key=value pairs",
    )


def test_wrong_crop_size(cli: Callable[..., CliResult], project: tuple[str, Path]) -> None:
    src, imgs = project
    r = cli(*_build(src, imgs.parent / "pkg", "--calibration", imgs, "--preprocess", "imagenet"))
    _clean(
        r,
        2,
        "the preprocessing does not fit the model input 'input' (1x3x32x32): crop 224x224 gives "
        "224x224 images, the model takes 32x32",
        "hint: set crop=32",
    )


def test_empty_and_corrupt_folders(
    cli: Callable[..., CliResult], project: tuple[str, Path]
) -> None:
    src, imgs = project
    empty = imgs.parent / "empty"
    empty.mkdir()
    args = ("--preprocess", image_data.PREPROCESS)
    r = cli(*_build(src, imgs.parent / "pkg", "--calibration", empty, *args))
    _clean(r, 2, f"calibration data folder {empty} is empty")
    bad = imgs / "c_blue" / "img00.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 30)
    r = cli(*_build(src, imgs.parent / "pkg", "--calibration", imgs, *args))
    _clean(r, 2, f"calibration image {bad} cannot be decoded", "hint: replace or remove")
    assert not (imgs.parent / "pkg").exists()


def test_labels_file_problems(cli: Callable[..., CliResult], project: tuple[str, Path]) -> None:
    src, imgs = project
    args = ("--calibration", imgs, "--preprocess", image_data.PREPROCESS)
    missing = imgs.parent / "missing.txt"
    r = cli(*_build(src, imgs.parent / "pkg", *args, "--labels", missing))
    _clean(r, 2, f"--labels file not found: {missing}")
    dup = imgs.parent / "dup.txt"
    dup.write_text("a_red\na_red\n")
    r = cli(*_build(src, imgs.parent / "pkg", *args, "--labels", dup))
    _clean(r, 2, "duplicate name(s) a_red")


@pytest.mark.slow
def test_labels_count_differs_from_the_model(
    cli: Callable[..., CliResult], project: tuple[str, Path]
) -> None:
    src, imgs = project
    labels = imgs.parent / "labels.txt"
    labels.write_text("a_red\nb_green\nc_blue\nd_white\n")
    out = imgs.parent / "pkg"
    args = ("--calibration", imgs, "--preprocess", image_data.PREPROCESS, "--labels", labels)
    r = cli(*_build(src, out, *args))
    _clean(
        r,
        2,
        f"--labels {labels} gives 4 class name(s) but the model's output",
        "(1x3) has 3 classes",
        "hint: pass --labels FILE with one class name per line",
    )
    assert not out.exists()


@pytest.mark.slow
def test_calibration_subfolders_of_other_classes_give_no_labels(
    cli: Callable[..., CliResult], project: tuple[str, Path]
) -> None:
    """Calibration images need no labels: class subfolders that are not the model's classes
    (4 here, the model has 3) do not refuse the build; the package then names no labels
    (an eval folder's or --labels' count is still checked: the test above)."""
    import shutil

    src, imgs = project
    shutil.copytree(imgs / "a_red", imgs / "d_white")
    out = imgs.parent / "pkg"
    r = cli(*_build(src, out, "--calibration", imgs, "--preprocess", image_data.PREPROCESS))
    assert r.code == 0, r.err
    assert not (out / "labels.txt").exists()
    assert json.loads((out / "manifest.json").read_text())["app"]["labels"] is None


def test_config_preprocess_is_checked(cli: Callable[..., CliResult], tmp_path: Path) -> None:
    src, imgs = image_data.write_model(tmp_path), image_data.write_folder(tmp_path / "i", 1)
    cfg = tmp_path / "edgepack.toml"
    cfg.write_text(
        f'schema = 1\n[model]\nsource = "{src}"\ninput_shapes = ["{SHAPE}"]\n'
        f'[data]\ncalibration = "{imgs}"\npreprocess = {{ crop = 32, size = 3 }}\n'
        '[[targets]]\ntarget = "rpi4"\n'
    )
    r = cli("build", "--config", cfg, "--dry-run")
    _clean(r, 2, "edgepack.toml: preprocessing unknown key(s) size")
    cfg.write_text(cfg.read_text().replace("crop = 32, size = 3", "resize = 32, crop = 32"))
    r = cli("build", "--config", cfg, "--dry-run", "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["data"]["preprocess"] == {"resize": 32, "crop": 32}
