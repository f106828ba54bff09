"""Folders of images as data, and the preprocessing spec (edgepack.images)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgepack import images
from edgepack.data import load_dataset, sample_indices
from edgepack.errors import DataError, UsageError
from edgepack.stages.base import InputSpec
from tests import image_data

INPUT = (InputSpec("x", (1, 3, 32, 32)),)
SPEC = images.parse_spec(image_data.PREPROCESS)


# ------------------------------------------------------------------ the spec


def test_presets_and_key_values() -> None:
    assert images.parse_spec("imagenet") == {
        "resize": 256,
        "crop": [224, 224],
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "interpolation": "bilinear",
        "value_range": [0.0, 1.0],
    }
    spec = images.parse_spec("imagenet,crop=96,resize=110,channel_order=bgr")
    assert spec["crop"] == [96, 96] and spec["resize"] == 110 and spec["channel_order"] == "BGR"
    assert spec["mean"] == [0.485, 0.456, 0.406]  # the preset's, not replaced
    spec = images.parse_spec(
        "resize=256,crop=224x200,mean=0.5/0.5/0.5,std=0.5,range=-1-1,layout=nhwc,"
        "interpolation=bicubic"
    )
    assert spec == {
        "resize": 256,
        "crop": [224, 200],
        "mean": [0.5, 0.5, 0.5],
        "std": [0.5],
        "interpolation": "bicubic",
        "layout": "NHWC",
        "value_range": [-1.0, 1.0],
    }
    assert images.parse_spec("none")["value_range"] == [0.0, 255.0]
    assert images.parse_spec("inception")["value_range"] == [-1.0, 1.0]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("imagnet", "unknown preprocessing preset 'imagnet' - did you mean 'imagenet'?"),
        ("resize=abc", "resize=abc is not valid"),
        ("mean=0.4/x/0.4", "mean=0.4/x/0.4 is not numbers separated by /"),
        ("crop=2x", "crop=2x is not N or HxW"),
        ("range=1", "range=1 is not lo-hi"),
        ("size=3", "unknown key 'size'"),
        ("crop=32,imagenet", "'imagenet' is not key=value (a preset name comes first)"),
        ("std=0/1/1", "std = [0.0, 1.0, 1.0] is not valid"),
        ("interpolation=lanczos", "interpolation = 'lanczos' is not valid"),
        ("range=1-0", "value_range = [1.0, 0.0] is not valid"),
        (" , ", "--preprocess is empty"),
    ],
)
def test_spec_errors(text: str, message: str) -> None:
    with pytest.raises(UsageError) as err:
        images.parse_spec(text)
    assert message in err.value.message
    assert "--preprocess imagenet" in err.value.hint


def test_precedence_option_over_toml_over_source() -> None:
    source = {"resize": 256, "crop": 224, "mean": [0.1, 0.2, 0.3], "std": [1, 1, 1]}
    toml = {"crop": 160, "interpolation": "bicubic"}
    spec, used = images.resolve_spec("crop=96", toml, source)
    assert used == ["model source", "edgepack.toml", "--preprocess"]
    assert spec == {
        "resize": 256,
        "crop": [96, 96],
        "mean": [0.1, 0.2, 0.3],
        "std": [1.0, 1.0, 1.0],
        "interpolation": "bicubic",
    }
    spec, used = images.resolve_spec(None, "imagenet", source)
    assert spec is not None and spec["mean"] == images.IMAGENET_MEAN and spec["crop"] == [224] * 2
    assert images.resolve_spec(None, None, None) == (None, [])
    with pytest.raises(UsageError, match=r"edgepack.toml: preprocessing unknown key\(s\) size"):
        images.resolve_spec(None, {"size": 3}, None)


def test_fit_spec_checks_the_model_input() -> None:
    with pytest.raises(DataError) as err:
        images.fit_spec(None, INPUT[0], "calibration data imgs")
    assert "the model source does not say how to preprocess images" in err.value.message
    assert "--preprocess imagenet or key=value" in err.value.hint
    with pytest.raises(DataError) as err:
        images.fit_spec(images.parse_spec("imagenet"), InputSpec("x", (1, 3, 96, 96)), "d")
    assert err.value.message == (
        "the preprocessing does not fit the model input 'x' (1x3x96x96): crop 224x224 gives "
        "224x224 images, the model takes 96x96"
    )
    assert "set crop=96" in err.value.hint
    with pytest.raises(DataError, match=r"mean has 3 values for 1 channel\(s\)"):
        images.fit_spec({"mean": [0.1, 0.2, 0.3]}, InputSpec("x", (1, 1, 32, 32)), "d")
    with pytest.raises(DataError, match="not a float image batch"):
        images.fit_spec({}, InputSpec("ids", (1, 16), "int64"), "d")
    fitted = images.fit_spec({}, InputSpec("x", (1, 32, 32, 3)), "d")
    assert fitted["layout"] == "NHWC" and fitted["crop"] == [32, 32]
    assert fitted["mean"] == [0.0] * 3 and fitted["value_range"] == [0.0, 1.0]


def test_pixel_normalization_is_the_same_transform() -> None:
    p = np.arange(256, dtype=np.float64)
    for name in ("imagenet", "inception", "none", "unit"):
        spec = {**images.PRESETS[name]}
        lo, hi = spec["value_range"]
        mean, std = images.pixel_normalization(spec)
        for c in range(3):
            want = (lo + (hi - lo) * p / 255 - spec["mean"][c]) / spec["std"][c]
            np.testing.assert_allclose((p - mean[c]) / std[c], want, atol=1e-9)


def test_decode_crops_scales_and_orders(tmp_path: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(1)
    arr = rng.integers(0, 256, size=(40, 50, 3), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "a.png")
    data = (tmp_path / "a.png").read_bytes()
    spec = images.fit_spec(
        images.parse_spec("mean=0.5/0.25/0.125,std=0.5/0.5/0.25,channel_order=BGR,crop=32x30"),
        InputSpec("x", (1, 3, 32, 30)),
        "d",
    )
    x = images.decode(data, tmp_path / "a.png", spec, "test")
    # center crop of 40x50 to 32x30: rows 4..36, columns 10..40; BGR; (v/255 - mean) / std
    ref = arr[4:36, 10:40, ::-1].astype(np.float64) / 255.0
    ref = (ref - [0.5, 0.25, 0.125]) / [0.5, 0.5, 0.25]
    assert x.dtype == np.float32 and x.shape == (3, 32, 30)
    np.testing.assert_allclose(x, ref.transpose(2, 0, 1), atol=1e-6)
    # resize: the shorter side (40) to 20 keeps the aspect ratio (50 -> 25), deterministic
    spec2 = images.fit_spec({"resize": 20, "crop": 20}, InputSpec("x", (1, 20, 20, 3)), "d")
    y1 = images.decode(data, tmp_path / "a.png", spec2, "test")
    y2 = images.decode(data, tmp_path / "a.png", spec2, "test")
    assert y1.shape == (20, 20, 3)
    np.testing.assert_array_equal(y1, y2)
    small = Image.fromarray(arr).resize((25, 20), Image.Resampling.BILINEAR)
    np.testing.assert_allclose(y1, np.asarray(small)[:, 2:22] / 255.0, atol=1e-6)


# ------------------------------------------------------------------ folders


def test_image_folder_labels_sorted_by_class(tmp_path: Path) -> None:
    root = image_data.write_folder(tmp_path / "imgs", per_class=4)
    ds = load_dataset(root, INPUT, purpose="evaluation", preprocess=SPEC)
    assert ds.classes == image_data.CLASSES
    assert ds.labels is not None and ds.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert ds.inputs[0].shape == (12, 3, 32, 32) and ds.inputs[0].dtype == np.float32
    # the dominant colour channel has the largest mean (what the test model classifies on)
    assert (ds.inputs[0].mean(axis=(2, 3)).argmax(axis=1) == ds.labels).all()
    rec = ds.record()
    assert rec["format"] == "images" and rec["classes"] == list(image_data.CLASSES)
    assert rec["preprocess"]["crop"] == [32, 32] and rec["preprocess"]["layout"] == "NCHW"
    assert [f["path"] for f in rec["files"]][:2] == ["a_red/img00.png", "a_red/img01.jpg"]
    import hashlib

    first = (root / "a_red" / "img00.png").read_bytes()
    assert rec["files"][0]["sha256"] == hashlib.sha256(first).hexdigest()
    assert rec["sha256"] == images.files_sha256([(f["path"], f["sha256"]) for f in rec["files"]])


def test_selection_is_seeded_stratified_and_listed(tmp_path: Path) -> None:
    root = image_data.write_folder(tmp_path / "imgs", per_class=6)
    a = load_dataset(root, INPUT, purpose="calibration", samples=9, seed=3, preprocess=SPEC)
    b = load_dataset(root, INPUT, purpose="calibration", samples=9, seed=3, preprocess=SPEC)
    c = load_dataset(root, INPUT, purpose="calibration", samples=9, seed=4, preprocess=SPEC)
    assert a.record() == b.record()
    np.testing.assert_array_equal(a.inputs[0], b.inputs[0])
    assert a.record()["files"] != c.record()["files"]
    rec = a.record()
    assert rec["selection"] == "stratified" and rec["samples"] == 9 and rec["of"] == 18
    assert a.labels is not None and np.bincount(a.labels).tolist() == [3, 3, 3]
    # the same draw as the array data's selection (one sampler for every format)
    idx = sample_indices(18, 9, 3, np.repeat([0, 1, 2], 6))
    all_files = sorted(
        (root / n).name + "/" + f.name for n in image_data.CLASSES for f in (root / n).iterdir()
    )
    assert [f["path"] for f in rec["files"]] == [all_files[i] for i in idx]


def test_big_folders_record_a_digest_not_a_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import edgepack.data

    monkeypatch.setattr(edgepack.data, "FILES_LISTED", 5)
    root = image_data.write_folder(tmp_path / "imgs", per_class=2)
    rec = load_dataset(root, INPUT, purpose="calibration", preprocess=SPEC).record()
    assert "files" not in rec and len(rec["sha256"]) == 64 and rec["samples"] == 6


def test_flat_folder_is_unlabelled(tmp_path: Path) -> None:
    from PIL import Image

    root = tmp_path / "flat"
    root.mkdir()
    for k in range(3):
        Image.fromarray(image_data.image(k, k)).save(root / f"{k}.webp", lossless=True)
    Image.fromarray(image_data.image(0, 9)).save(root / "z.bmp")
    ds = load_dataset(root, INPUT, purpose="calibration", preprocess=SPEC)
    assert ds.labels is None and ds.classes is None and len(ds) == 4
    with pytest.raises(DataError) as err:
        load_dataset(root, INPUT, purpose="evaluation", preprocess=SPEC, require_labels=True)
    assert "holds unlabelled images (no class subfolders)" in err.value.message


def test_labels_file_maps_class_folders_by_name(tmp_path: Path) -> None:
    root = image_data.write_folder(tmp_path / "imgs", per_class=2)
    names = ("c_blue", "x_other", "a_red", "b_green")
    ds = load_dataset(root, INPUT, purpose="evaluation", preprocess=SPEC, class_names=names)
    assert ds.labels is not None and ds.labels.tolist() == [2, 2, 3, 3, 0, 0]
    assert ds.classes == names
    with pytest.raises(DataError) as err:
        load_dataset(root, INPUT, purpose="evaluation", preprocess=SPEC, class_names=("a_red",))
    assert "class folder(s) b_green, c_blue that are not in the labels file" in err.value.message


def test_folder_of_npy_files_still_loads(tmp_path: Path) -> None:
    root = tmp_path / "npy"
    root.mkdir()
    for k in range(3):
        np.save(root / f"{k}.npy", np.full((3, 32, 32), k, np.float32))
    ds = load_dataset(root, INPUT, purpose="calibration")
    assert len(ds) == 3 and ds.preprocess is None and ds.inputs[0][2].max() == 2
    assert "files" not in ds.record()


def _error(root: Path, **kw: object) -> DataError:
    with pytest.raises(DataError) as err:
        load_dataset(root, INPUT, purpose="calibration", preprocess=SPEC, **kw)  # type: ignore[arg-type]
    assert "\n" not in err.value.message
    return err.value


def test_bad_folders(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    e = _error(empty)
    assert e.message == f"calibration data folder {empty} is empty"
    assert "one subfolder per class" in e.hint

    mixed = image_data.write_folder(tmp_path / "mixed", per_class=1)
    np.save(mixed / "x.npy", np.zeros((3, 32, 32), np.float32))
    e = _error(mixed)
    assert e.message == f"calibration data folder {mixed} mixes 1 .npy file(s), 3 subfolder(s)"

    notes = image_data.write_folder(tmp_path / "notes", per_class=1)
    (notes / "b_green" / "notes.txt").write_text("hello")
    e = _error(notes)
    assert "class folder 'b_green' holds files that are not images: b_green/notes.txt" in e.message

    hollow = image_data.write_folder(tmp_path / "hollow", per_class=1)
    (hollow / "d_empty").mkdir()
    assert "class folder 'd_empty' is empty" in _error(hollow).message


def test_corrupt_image_names_the_file(tmp_path: Path) -> None:
    root = image_data.write_folder(tmp_path / "imgs", per_class=2)
    bad = root / "b_green" / "img01.jpg"
    bad.write_bytes(bad.read_bytes()[:40])  # truncated JPEG
    e = _error(root)
    assert e.message.startswith(f"calibration image {bad} cannot be decoded: ")
    assert "replace or remove the file" in e.hint
    (root / "b_green" / "img01.jpg").write_bytes(b"not an image at all")
    assert "cannot be decoded: cannot identify image file" in _error(root).message


def test_image_smaller_than_the_crop(tmp_path: Path) -> None:
    root = image_data.write_folder(tmp_path / "imgs", per_class=1)
    with pytest.raises(DataError) as err:
        load_dataset(
            root,
            (InputSpec("x", (1, 3, 64, 64)),),
            purpose="calibration",
            preprocess={"mean": [0.5] * 3},
        )
    assert err.value.message == (
        f"calibration image {root / 'a_red' / 'img00.png'} is 48x40 after resizing, "
        "smaller than the 64x64 crop"
    )
    assert err.value.hint.startswith("set resize=64")


def test_read_labels(tmp_path: Path) -> None:
    f = tmp_path / "labels.txt"
    f.write_text("cat\ndog\n")
    assert images.read_labels(f) == ("cat", "dog")
    f.write_text("cat\n\ndog\ncat\n")
    with pytest.raises(UsageError) as err:
        images.read_labels(f)
    assert err.value.message == f"--labels file {f}: line(s) 2 are blank; duplicate name(s) cat"
    with pytest.raises(UsageError, match="--labels file not found"):
        images.read_labels(tmp_path / "missing.txt")
