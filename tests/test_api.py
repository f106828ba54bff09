"""The Python API (edgepack.build, Package): in-memory models and arrays, the CLI's errors,
a light `import edgepack`, and the README's example run as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import edgepack
from edgepack.data import arrays_sha256
from edgepack.errors import DataError, EdgepackError, ModelLoadError, ProfileError, UsageError
from edgepack.manifest import sha256_file

ROOT = Path(__file__).resolve().parents[1]


def _tiny_net() -> Any:
    import torch
    from torch import nn

    class TinyNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3, padding=1)
            self.head = nn.Linear(4 * 8 * 8, 3)

        def forward(self, image: torch.Tensor) -> torch.Tensor:
            return self.head(torch.relu(self.conv(image)).flatten(1))

    torch.manual_seed(0)
    return TinyNet()


# ---------------------------------------------------------------- import cost


@pytest.mark.parametrize("module", ["edgepack", "edgepack.cli"])
def test_import_does_not_load_torch(module: str) -> None:
    code = (
        f"import sys, {module}; heavy = ('torch', 'litert_torch', 'ai_edge_quantizer', "
        "'ai_edge_litert', 'numpy', 'rich'); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    ).stdout
    assert out.strip() == "[]"


def test_lazy_attributes() -> None:
    assert edgepack.build.__module__ == "edgepack.api"
    assert edgepack.EdgepackError is EdgepackError
    with pytest.raises(AttributeError, match="no attribute 'bulid'"):
        edgepack.bulid  # noqa: B018


# ---------------------------------------------------------------- bad arguments


def _cli_error(cli: Any, *args: str | Path) -> str:
    r = cli(*args)
    assert r.code == 2, r.err
    return r.err.splitlines()[0].removeprefix("error: ")


def test_bad_options_raise_the_cli_messages(cli: Any, tmp_path: Path) -> None:
    src = f"{ROOT}/examples/digits/model.py:build_model"
    cases = [
        ({"quantization": "full-int"}, ("-t", "host", "--quantization", "full-int")),
        (
            {"quantization": "dynamic-range", "io_dtype": "uint8"},
            ("-t", "host", "--quantization", "dynamic-range", "--io-dtype", "uint8"),
        ),
        ({"target": "rpi"}, ("-t", "rpi")),
        ({"target": "host", "eval_samples": 0}, ("-t", "host", "--eval-samples", "0")),
        ({"target": "host", "max_accuracy_drop": -1}, ("-t", "host", "--max-accuracy-drop", "-1")),
    ]
    for kwargs, flags in cases:
        kw = {"target": "host", "output": tmp_path / "p", **kwargs}
        with pytest.raises(EdgepackError) as exc:
            edgepack.build(src, input_shape="1x1x32x32", **kw)
        assert exc.value.message == _cli_error(
            cli, "build", src, "--input-shape", "1x1x32x32", "-o", tmp_path / "p", *flags
        )
        assert exc.value.hint
    assert not (tmp_path / "p").exists()


def test_bad_arguments_messages(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="unknown target 'rpi'"):
        edgepack.build("m.py:f", target="rpi")
    with pytest.raises(UsageError, match="unknown build option: quantisation") as exc:
        edgepack.build("m.py:f", target="host", quantisation="float16")
    assert "did you mean 'quantization'?" in exc.value.hint
    with pytest.raises(DataError, match="calibration data is a list"):
        edgepack.build("m.py:f", target="host", calibration=[1, 2])
    with pytest.raises(UsageError, match="example_inputs applies to an in-memory model"):
        edgepack.build("m.py:f", np.zeros((1, 2)), target="host")
    with pytest.raises(UsageError, match=r"--calibration file not found: nope\.npz"):
        edgepack.build("m.py:f", target="host", calibration="nope.npz")


def test_in_memory_model_errors(tmp_path: Path) -> None:
    import torch

    net = _tiny_net()
    with pytest.raises(UsageError, match="no input shape for memory:"):
        edgepack.build(net, target="host", output=tmp_path / "a")
    with pytest.raises(ModelLoadError, match=r"fails on inputs of shape 1x3x8x8"):
        edgepack.build(net, torch.zeros(1, 3, 8, 8), target="host", output=tmp_path / "b")
    with pytest.raises(UsageError, match=r"not a torch\.nn\.Module or a source string"):
        edgepack.build(42, np.zeros((1, 1)), target="host", output=tmp_path / "c")
    with pytest.raises(UsageError, match="--weights cannot be used with an in-memory model"):
        edgepack.build(net, target="host", weights=tmp_path, output=tmp_path / "d")
    with pytest.raises(
        DataError,
        match=r"^calibration data \(arrays in memory\) does not fit the model: input 'image' has samples of shape \(1, 9, 9\)",
    ):
        x = np.zeros((4, 1, 9, 9), np.float32)
        edgepack.build(
            net,
            np.zeros((1, 1, 8, 8), np.float32),
            target="host",
            calibration=x,
            output=tmp_path / "e",
        )
    assert not any(tmp_path.iterdir())


# ---------------------------------------------------------------- a real build


@pytest.mark.slow
def test_build_from_memory_with_numpy_data(tmp_path: Path) -> None:
    import torch

    net = _tiny_net()
    net.train()  # the build must not change the caller's model
    before = {k: v.clone() for k, v in net.state_dict().items()}
    rng = np.random.default_rng(0)
    calib = rng.standard_normal((32, 1, 8, 8)).astype(np.float32)
    x_eval = rng.standard_normal((40, 1, 8, 8)).astype(np.float32)
    with torch.no_grad():
        y_eval = net.eval()(torch.from_numpy(x_eval)).argmax(1).numpy().astype(np.int64)
    net.train()
    lines: list[str] = []
    pkg = edgepack.build(
        net,
        example_inputs=torch.zeros(1, 1, 8, 8),
        target="rpi4",
        calibration=calib,
        eval=(x_eval, y_eval),
        output=tmp_path / "pkg",
        latency_runs=0,
        max_accuracy_drop=50.0,  # a random net: gate on a wide limit, check it is recorded
        progress=lines.append,
    )
    assert pkg.path == (tmp_path / "pkg").resolve()
    assert sorted(p.name for p in pkg.path.iterdir()) == [
        "manifest.json",
        "model.tflite",
        "model_float32.tflite",
        "summary.md",
    ]
    assert net.training and all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    m = pkg.manifest
    assert m["name"] == "tinynet" and m["quantization"]["mode"] == "full-int8"
    assert m["source"]["kind"] == "memory"
    assert m["source"]["spec"].endswith("TinyNet")
    assert m["source"]["inputs"] == [{"name": "image", "shape": [1, 1, 8, 8], "dtype": "float32"}]
    load = next(s for s in m["stages"] if s["name"] == "load")
    assert load["params"]["data"] == {
        "calibration": {"from": "memory", "sha256": arrays_sha256({"x": calib})},
        "evaluation": {"from": "memory", "sha256": arrays_sha256({"x": x_eval, "y": y_eval})},
    }
    data = m["data"]  # the samples used, named by the arrays (not by their temp file)
    assert data["calibration"]["sha256"] == arrays_sha256({"x": calib})
    assert (data["calibration"]["file"], data["calibration"]["from"]) == (None, "memory")
    assert (data["evaluation"]["samples"], data["evaluation"]["selection"]) == (40, "all")
    assert m["files"]["model.tflite"]["sha256"] == sha256_file(pkg.path / "model.tflite")
    # the labels are the float model's own predictions: float top-1 is 100%
    acc = pkg.metrics["accuracy"]
    assert acc["float"] == 100.0 and pkg.metrics["samples"] == 40
    gate = next(g for g in pkg.metrics["gates"] if g["gate"] == "max_accuracy_drop")
    assert gate["limit"] == 50.0 and gate["value"] == acc["drop_points"] and gate["passed"]
    assert acc["drop_points"] == pytest.approx(acc["float"] - acc["quantized"])
    assert f"float {acc['float']:.2f}% -> full-int8 {acc['quantized']:.2f}%" in pkg.summary
    assert pkg.summary == (pkg.path / "summary.md").read_text()
    assert any(line.startswith("load") for line in lines)
    # the same model and data again: the same weights and data digests (reproducible record)
    again = edgepack.Package.open(pkg.path)
    assert again.manifest["source"]["weights_sha256"] == m["source"]["weights_sha256"]

    result = pkg.bench(runs=3, warmup_runs=1, min_seconds=0, save=False)
    assert result["transport"] == "local" and result["target"] == "rpi4"
    assert result["package"]["model_sha256"] == sha256_file(pkg.path / "model.tflite")
    assert result["harness"]["stats"]["count"] >= 3
    assert not (pkg.path / "bench").exists()


@pytest.mark.slow
def test_readme_python_api_example_runs(tmp_path: Path) -> None:
    """The python block under the README's "Python API" heading, run as written."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1
    cwd = Path.cwd()
    os.chdir(tmp_path)
    try:
        scope: dict[str, Any] = {"__name__": "__main__"}
        exec(compile(blocks[0], "README.md", "exec"), scope)
    finally:
        os.chdir(cwd)
    pkg = scope["pkg"]
    assert pkg.path == (tmp_path / "dist" / "tinycnn-host").resolve()
    assert (pkg.path / "model.tflite").is_file()
    assert pkg.metrics["fidelity"]["cosine"] == scope["cosine"]
    assert scope["result"]["transport"] == "local"
    assert scope["result"]["saved_to"].startswith(str(pkg.path / "bench"))
