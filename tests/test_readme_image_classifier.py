"""The README's two-line image-classifier path, run as written: a torchvision model by name with
its pretrained weights (from torch.hub's cache, offline), calibrated on a folder of images,
for rpi4. The package carries the weights' preprocessing and categories for apps."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import numpy as np
import pytest

from edgepack.cli import main

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
MARK = "<!-- two-line image classifier"


def readme_lines() -> list[list[str]]:
    text = (ROOT / "README.md").read_text()
    block = re.search(re.escape(MARK) + r".*?```bash\n(.*?)```", text, re.S)
    assert block, "the README lost its two-line image-classifier block"
    return [shlex.split(line) for line in block.group(1).strip().splitlines()]


def test_readme_shows_two_lines() -> None:
    install, build = readme_lines()
    assert install[:3] == ["pip", "install", "-e"] and "torchvision" in install[3]
    assert build[:2] == ["edgepack", "build"]
    assert build[build.index("--calibration") + 1] == "images/"


def test_readme_image_classifier_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch
    from PIL import Image

    from edgepack._torchvision import import_torchvision
    from edgepack.named import tv_cache_file

    # The install line is what `make install` did for this environment: the build line runs.
    _, build = readme_lines()
    home = tmp_path / "torch-home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("EDGEPACK_OFFLINE", "1")
    monkeypatch.setenv("EDGEPACK_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    tv = import_torchvision()
    weights = tv.models.get_model_weights("mobilenet_v3_small").DEFAULT
    # A tiny stand-in for the downloaded checkpoint: a seeded model under the file name the
    # weights expect (no network here).
    path = tv_cache_file(weights)
    path.parent.mkdir(parents=True)
    torch.manual_seed(7)
    torch.save(tv.models.mobilenet_v3_small().state_dict(), path)
    rng = np.random.default_rng(0)
    for cls in ("cats", "dogs"):
        (tmp_path / "images" / cls).mkdir(parents=True)
        for i in range(4):
            pixels = rng.integers(0, 256, (240 + 16 * i, 320, 3), dtype=np.uint8)
            suffix = ".jpg" if i % 2 else ".png"
            Image.fromarray(pixels).save(tmp_path / "images" / cls / f"{i}{suffix}")

    rc = main(build[1:])
    err = capsys.readouterr().err
    assert rc == 0, err
    pkg = tmp_path / "dist" / "mobilenet_v3_small-rpi4"
    m = json.loads((pkg / "manifest.json").read_text())
    categories = list(weights.meta["categories"])
    assert (pkg / "labels.txt").read_text().splitlines() == categories
    app = m["app"]
    assert app["labels"]["from"] == "model source's class names"
    pre = app["preprocess"]
    assert pre["mean"] == pytest.approx([0.485, 0.456, 0.406])
    assert pre["std"] == pytest.approx([0.229, 0.224, 0.225])
    assert app["input"]["shape"][1:3] == [224, 224] or app["input"]["shape"][-2:] == [224, 224]
    assert m["source"]["pretrained"] == weights.name
    assert len(m["data"]["calibration"]["files"]) == 8
    from edgepack.tflite_metadata import read_metadata

    meta = read_metadata((pkg / "model.tflite").read_bytes())
    assert meta is not None
    assert meta.outputs[0].labels_file == "labels.txt"
    assert "labels.txt" in meta.associated_files
    assert meta.inputs[0].mean == pytest.approx([255 * v for v in (0.485, 0.456, 0.406)])
