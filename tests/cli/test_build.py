"""`edgepack build` end to end through the real entry point: success and every error exit."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from edgepack.manifest import REQUIRED_KEYS, sha256_file
from tests.conftest import DIGITS, REPO, digits_build_args

pytestmark = pytest.mark.slow


def test_build_rpi4_package(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "digits-rpi4"
    r = cli(*digits_build_args("rpi4", "--max-accuracy-drop", "1.0", "-o", out))
    assert r.code == 0, r.err
    assert "Traceback" not in r.err
    assert sorted(p.name for p in out.iterdir()) == [
        "manifest.json",
        "model.tflite",
        "model_float32.tflite",
        "summary.md",
    ]
    m = json.loads((out / "manifest.json").read_text())
    assert set(REQUIRED_KEYS) <= set(m)
    assert m["target"]["name"] == "rpi4" and len(m["target"]["sha256"]) == 64
    assert m["quantization"]["mode"] == "full-int8"
    assert m["quantization"]["route"]["engine"] == "ai-edge-litert calibrator"
    assert [s["name"] for s in m["stages"]] == [
        "load",
        "export",
        "convert",
        "quantize",
        "validate",
        "preflight",
    ]
    assert m["compat"]["results"]["xnnpack"]["fully_delegated"] is True
    for name, f in m["files"].items():
        assert sha256_file(out / name) == f["sha256"]
    assert m["source"]["weights_sha256"] == sha256_file(DIGITS / "weights.pt")
    for pkg in ("torch", "litert-torch", "ai-edge-quantizer", "ai-edge-litert"):
        assert m["versions"][pkg]
    acc = m["metrics"]["accuracy"]
    assert acc["float"] == pytest.approx(99.11, abs=0.01)
    assert acc["drop_points"] <= 1.0
    assert m["metrics"]["float_parity"]["max_abs_diff"] < 1e-4
    assert m["model"]["float_compute_ops"] == []
    assert m["build"]["host_latency"]["full-int8"]["median_ms"] > 0
    # the printed table
    assert "top-1" in r.out and "float 99.11% -> full-int8" in r.out
    assert "host latency" in r.out and "float parity" in r.out
    # the summary file carries no timings (reproducible)
    assert "latency" not in (out / "summary.md").read_text()


def test_build_coral_integer_io_nhwc(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "c"
    r = cli(*digits_build_args("coral-usb", "-o", out))
    assert r.code == 0, r.err
    m = json.loads((out / "manifest.json").read_text())
    assert [i["dtype"] for i in m["model"]["inputs"]] == ["UINT8"]
    assert m["model"]["inputs"][0]["shape"] == [1, 32, 32, 1]
    assert "TRANSPOSE" not in m["model"]["ops"]
    assert m["metrics"]["accuracy"]["drop_points"] <= 1.0


def test_quantization_override_and_json(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    r = cli(
        *digits_build_args(
            "rpi4", "--quantization", "dynamic-range", "-o", tmp_path / "d", "--json"
        )
    )
    assert r.code == 0, r.err
    m = json.loads(r.out)
    assert m["quantization"]["mode"] == "dynamic-range"
    assert m["quantization"]["io_dtype"] == "float32"
    assert m["quantization"]["overridden"]["quantization"] is True


def test_accuracy_gate_failure_leaves_no_package(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # Calibrating on dimmed images gives activation ranges that saturate on real digits.
    bad = tmp_path / "dim.npz"
    np.savez(bad, x=np.load(DIGITS / "calib.npz")["x"][:50] * 0.2)
    out = tmp_path / "dist" / "digits-rpi4"
    # explicit mode: the profile's list would ship dynamic-range, which needs no calibration
    args = digits_build_args(
        "rpi4", "--quantization", "full-int8", "--max-accuracy-drop", "1.0", "-o", out
    )
    args[args.index("--calibration") + 1] = bad
    r = cli(*args)
    assert r.code == 3
    assert "error: accuracy gate failed: top-1 dropped" in r.err
    assert "the limit is 1.0 points; no package was written" in r.err
    assert "hint:" in r.err and "Traceback" not in r.err
    assert not out.exists()
    assert list((tmp_path / "dist").iterdir()) == []  # no staging leftovers


def test_destination_exists(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "pkg"
    out.mkdir()
    (out / "manifest.json").write_text("{}")
    r = cli(*digits_build_args("rpi4", "-o", out))
    assert r.code == 2
    assert f"error: destination {out} already exists" in r.err
    assert "--force" in r.err
    assert (out / "manifest.json").read_text() == "{}"


def _err(cli, *args) -> str:  # type: ignore[no-untyped-def]
    r = cli(*args)
    assert r.code == 2, (r.code, r.err)
    assert "Traceback" not in r.err
    lines = r.err.strip().splitlines()
    assert [ln.split(":")[0] for ln in lines if ln.startswith(("error", "hint"))] == [
        "error",
        "hint",
    ]
    return r.err


def test_error_missing_weights_file(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    args = digits_build_args("rpi4", "-o", tmp_path / "p")
    args[args.index("--weights") + 1] = tmp_path / "nope.pt"
    assert "--weights file not found" in _err(cli, *args)


def test_error_bad_factory(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    args = digits_build_args("rpi4", "-o", tmp_path / "p")
    args[1] = f"{DIGITS}/model.py:no_factory"
    err = _err(cli, *args)
    assert "'no_factory' is not a callable" in err and "build_model" in err


def test_error_factory_raising(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "m.py"
    f.write_text("def build():\n    raise RuntimeError('no GPU here')\n")
    err = _err(
        cli, "build", f"{f}:build", "--input-shape", "1x4", "--target", "host", "-o", tmp_path / "p"
    )
    assert "raised at m.py:2: RuntimeError: no GPU here" in err


def test_error_untraceable_model(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "branchy.py"
    f.write_text(
        "import torch\n"
        "class B(torch.nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.fc = torch.nn.Linear(4, 2)\n"
        "    def forward(self, x):\n"
        "        if x.sum() > 0:\n"
        "            return self.fc(x)\n"
        "        return -self.fc(x)\n"
        "def build():\n"
        "    return B()\n"
    )
    out = tmp_path / "p"
    err = _err(cli, "build", f"{f}:build", "--input-shape", "1x4", "--target", "host", "-o", out)
    assert "torch.export cannot trace the model" in err
    assert "branchy.py:7 in forward: if x.sum() > 0:" in err
    assert not out.exists()


def test_error_wrong_input_shape(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    args = digits_build_args("rpi4", "-o", tmp_path / "p")
    args[args.index("--input-shape") + 1] = "1x3x32x32"
    assert "the model fails on inputs of shape 1x3x32x32" in _err(cli, *args)


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (
            np.zeros((10, 1, 28, 28), np.float32),
            "samples of shape (1, 28, 28), the model takes (1, 32, 32)",
        ),
        (np.full((10, 1, 32, 32), np.nan, np.float32), "holds 10240 NaN/inf values"),
        (np.array(["x"] * 10), "dtype <U1"),
    ],
)
def test_error_bad_calibration_data(cli, tmp_path: Path, array, message) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "c.npz"
    np.savez(bad, x=array)
    args = digits_build_args("rpi4", "-o", tmp_path / "p")
    args[args.index("--calibration") + 1] = bad
    err = _err(cli, *args)
    assert "calibration data" in err and message in err


def test_error_unknown_target(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    err = _err(cli, *digits_build_args("rpi", "-o", tmp_path / "p"))
    assert "error: unknown target 'rpi'" in err and "did you mean 'rpi5' or 'rpi4'?" in err


def test_error_invalid_profile(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    board = tmp_path / "board.toml"
    board.write_text('schema = 1\nname = "b"\nspeed = 3\n')
    err = _err(cli, *digits_build_args(str(board), "-o", tmp_path / "p"))
    assert (
        "invalid target profile" in err
        and "unknown key 'speed'" in err
        and "missing key 'device'" in err
    )


def test_error_full_int8_without_calibration(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    err = _err(
        cli,
        "build",
        f"{DIGITS}/model.py:build_model",
        "--input-shape",
        "1x1x32x32",
        "--target",
        "rpi4",
        "-o",
        tmp_path / "p",
    )
    assert "needs --calibration data" in err and "never calibrates on random data" in err


def test_error_options_reported_together(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    err = _err(
        cli,
        "build",
        f"{DIGITS}/model.py:build_model",
        "--input-shape",
        "1x1x32x32",
        "--target",
        "host",
        "--quantization",
        "dynamic-range",
        "--io-dtype",
        "uint8",
        "--max-accuracy-drop",
        "1",
        "-o",
        tmp_path / "p",
    )
    assert "--io-dtype uint8 needs --quantization full-int8" in err
    assert "--max-accuracy-drop needs --eval" in err


def test_error_unknown_quantization_suggests(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    err = _err(cli, *digits_build_args("rpi4", "--quantization", "full-int", "-o", tmp_path / "p"))
    assert "unknown --quantization 'full-int'" in err and "did you mean 'full-int8'?" in err


def test_error_pickled_model_weights(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import torch

    whole = tmp_path / "whole.pt"
    torch.save(torch.nn.Linear(2, 2), whole)
    args = digits_build_args("rpi4", "-o", tmp_path / "p")
    args[args.index("--weights") + 1] = whole
    assert "pickled Python object" in _err(cli, *args)


def test_error_blank_calibration_data(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """All-zero calibration gives degenerate scales; such a model crashes XNNPACK, so the
    quantize stage must refuse it before anything runs it."""
    blank = tmp_path / "blank.npz"
    np.savez(blank, x=np.zeros((20, 1, 32, 32), np.float32))
    args = digits_build_args("rpi4", "-o", tmp_path / "p")
    args[args.index("--calibration") + 1] = blank
    err = _err(cli, *args)  # exit 2, no package, and no quiet switch to another mode
    assert "degenerate quantization ranges" in err and "blank or constant" in err
    assert "dynamic-range" not in err
    assert not (tmp_path / "p").exists()


def test_error_zero_initialised_head_blames_the_model(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A classifier head of zeros (torchvision's ViT, untrained) makes the output constant
    on data that varies: the error names the model, not the data, and no mode ships it."""
    import torch

    state = torch.load(DIGITS / "weights.pt", weights_only=True)
    state["classifier.weight"].zero_()
    state["classifier.bias"].zero_()
    weights = tmp_path / "zero_head.pt"
    torch.save(state, weights)
    args = digits_build_args("rpi4", "-o", tmp_path / "p")
    args[args.index("--weights") + 1] = weights
    err = _err(cli, *args)
    assert "degenerate quantization ranges" in err and "calibration data varies" in err
    assert "zero-initialised classifier head" in err and "blank or constant" not in err
    assert "hint: check the weights" in err
    assert not (tmp_path / "p").exists()


def test_build_with_pruning_and_distillation(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "pruned"
    args = digits_build_args(
        "rpi4",
        "-o",
        out,
        "--prune",
        "channels:0.5",
        "--distill",
        "--train",
        DIGITS / "train.npz",
        "--epochs",
        "3",
        "--max-accuracy-drop",
        "2.0",
    )
    r = cli(*args)
    assert r.code == 0, r.err
    m = json.loads((out / "manifest.json").read_text())
    names = [s["name"] for s in m["stages"]]
    assert names[:4] == ["load", "prune", "distill", "export"]
    prune = next(s for s in m["stages"] if s["name"] == "prune")["metrics"]
    assert prune["params_after"] <= 0.55 * prune["params_before"]
    acc = m["metrics"]["accuracy"]
    # the drop is measured against the model as loaded, not the pruned one
    assert acc["float"] == pytest.approx(99.11, abs=0.01)
    assert acc["compressed_float"] >= 97.0
    assert acc["drop_points"] <= 2.0
    assert "prune" in r.out and "distill" in r.out


def test_error_distill_without_prune_or_train(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    err = _err(cli, *digits_build_args("rpi4", "-o", tmp_path / "p", "--distill"))
    assert "distillation needs training data" in err
    err = _err(
        cli,
        *digits_build_args(
            "rpi4", "-o", tmp_path / "p", "--distill", "--train", DIGITS / "train.npz"
        ),
    )
    assert "--distill needs --prune" in err
    err = _err(cli, *digits_build_args("rpi4", "-o", tmp_path / "p", "--prune", "channels:1.5"))
    assert "pruning sparsity must be between 0 and 1 (exclusive), got 1.5" in err


def _leaky_model(tmp_path: Path) -> Path:
    f = tmp_path / "leaky.py"
    f.write_text(
        "import torch\n"
        "def build():\n"
        "    torch.manual_seed(0)\n"
        "    return torch.nn.Sequential(\n"
        "        torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.LeakyReLU(0.1),\n"
        "        torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.ReLU(),\n"
        "        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 10))\n"
    )
    return f


def test_coral_build_gates_cpu_fallback(cli, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """LEAKY_RELU is not an Edge TPU op: coral targets require full delegation, so the build
    fails (exit 3, no package) unless --allow-cpu-fallback, which records the split."""
    # The uncompiled case, also on a machine where Coral's edgetpu_compiler is installed.
    path = os.environ["PATH"].split(os.pathsep)
    keep = [d for d in path if not (Path(d) / "edgetpu_compiler").exists()]
    monkeypatch.setenv("PATH", os.pathsep.join(keep))
    f = _leaky_model(tmp_path)
    base = [
        "build",
        f"{f}:build",
        "--input-shape",
        "1x1x32x32",
        "--target",
        "coral-usb",
        "--calibration",
        DIGITS / "calib.npz",
        "--latency-runs",
        "0",
    ]
    out = tmp_path / "coral"
    r = cli(*base, "-o", out)
    assert r.code == 3, r.err
    assert "requires full delegation to Edge TPU" in r.err and "LEAKY_RELU" in r.err
    assert "no package was written" in r.err and "--allow-cpu-fallback" in r.err
    assert not out.exists()
    r = cli(*base, "-o", out, "--allow-cpu-fallback")
    assert r.code == 0, r.err
    m = json.loads((out / "manifest.json").read_text())
    tpu = m["compat"]["results"]["edgetpu"]
    assert tpu["fully_delegated"] is False
    assert tpu["split_index"] == 2 and tpu["mac_share"] < 0.2
    assert m["edgetpu"]["compiled"] is False and "edgetpu-compiler" in m["edgetpu"]["note"]
    assert "pre-flight edgetpu" in r.out and "op(s) on the CPU" in r.out


def test_error_require_edgetpu_compiler(cli, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PATH", str(tmp_path))  # no edgetpu_compiler anywhere
    err = _err(
        cli, *digits_build_args("coral-usb", "-o", tmp_path / "p", "--require-edgetpu-compiler")
    )
    assert "edgetpu_compiler is not on PATH" in err and "x86-64" in err
    err = _err(cli, *digits_build_args("rpi4", "-o", tmp_path / "p", "--require-edgetpu-compiler"))
    assert "applies to Edge TPU targets" in err


def test_error_profile_with_toml_syntax_error(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    board = tmp_path / "broken.toml"
    board.write_text('schema = 1\nname = "b\n')
    err = _err(cli, *digits_build_args(str(board), "-o", tmp_path / "p"))
    assert f"target profile {board} is not valid TOML" in err
    assert "line 2" in err


def test_error_option_checks_before_any_work(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    err = _err(
        cli,
        *digits_build_args(
            "rpi4",
            "-o",
            tmp_path / "p",
            "--max-accuracy-drop",
            "-1",
            "--eval-samples",
            "0",
            "--prune",
            "channels:0.5",
            "--distill",
            "--train",
            tmp_path / "nope.npz",
        ),
    )
    assert "--max-accuracy-drop must be >= 0" in err
    assert "--eval-samples must be >= 1" in err
    assert f"--train file not found: {tmp_path / 'nope.npz'}" in err


def test_error_prune_needs_a_factory(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pt2 = tmp_path / "m.pt2"
    pt2.write_bytes(b"")
    err = _err(
        cli, "build", pt2, "--target", "host", "--prune", "channels:0.5", "-o", tmp_path / "p"
    )
    assert "--prune needs a model factory, not a .pt2 program" in err


def test_error_nhwc_needs_a_4d_input(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "lin.py"
    f.write_text("import torch\ndef build():\n    return torch.nn.Linear(4, 2)\n")
    out = tmp_path / "p"
    err = _err(
        cli,
        "build",
        f"{f}:build",
        "--input-shape",
        "1x4",
        "--target",
        "host",
        "--io-layout",
        "nhwc",
        "-o",
        out,
    )
    assert "io_layout 'nhwc' needs at least one 4-D (N, C, H, W) input" in err
    assert "--io-layout nchw" in err
    assert not out.exists()


BAD_NAMES = {
    "parent": "../escaped",
    "absolute": "/tmp/escaped",
    "separator": "a/b",
    "backslash": "a\\b",
    "dots": "..",
    "hidden": ".hidden",
    "empty": "",
    "nul": "a\0b",
    "too long": "n" * 65,
}


@pytest.mark.parametrize("case", sorted(BAD_NAMES))
def test_error_name_cannot_leave_the_output_folder(  # type: ignore[no-untyped-def]
    cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    name = BAD_NAMES[case]
    work = tmp_path / "work"
    (work / "dist").mkdir(parents=True)
    monkeypatch.chdir(work)
    before = sorted(tmp_path.rglob("*"))
    for extra in ([], ["--output-dir", work / "out"]):
        shown = name if len(name) <= 40 else name[:37] + "..."
        err = _err(cli, *digits_build_args("host", "--name", name, *extra))
        assert f"error: --name {shown!r} is not a package name: use 1-64 characters" in err
        assert "(no path separators, no '..')" in err
    assert sorted(tmp_path.rglob("*")) == before  # nothing written anywhere
    assert not Path("/tmp/escaped-host").exists()


def test_error_name_in_a_matrix_build(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    from tests.release.conftest import make_project

    project = make_project(tmp_path / "repo")
    monkeypatch.chdir(project)
    before = sorted(tmp_path.rglob("*"))
    r = cli("build", "--name", "../../escaped")
    assert r.code == 2, r.err
    assert "error: --name '../../escaped' is not a package name" in r.err
    assert "hint: packages go to <output_dir>/<name>-<target>; e.g. --name mynet" in r.err
    assert sorted(tmp_path.rglob("*")) == before


def test_a_good_name_names_the_folder(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    r = cli(*digits_build_args("host", "--name", "net_v1.2-b", "--dry-run"))
    assert r.code == 0, r.err
    assert "dist/net_v1.2-b-host" in r.out


def test_manifest_records_the_calibration_samples_used(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A calibration file smaller than the profile's sample count: the manifest says how many
    samples were really used, not the profile's number; without --eval, the metrics say they
    were measured on the calibration data."""
    from edgepack.targets import load_target

    small = tmp_path / "calib16.npz"
    np.savez(small, x=np.load(DIGITS / "calib.npz")["x"][:16])
    assert load_target("rpi4").quantization.calibration_samples != 16
    args = digits_build_args("rpi4", "-o", tmp_path / "pkg", "--latency-runs", "0")
    args[args.index("--calibration") + 1] = small
    del args[args.index("--eval") : args.index("--eval") + 2]  # metrics on calibration data
    r = cli(*args)
    assert r.code == 0, r.err
    m = json.loads((tmp_path / "pkg" / "manifest.json").read_text())
    assert m["quantization"]["calibration_samples"] == 16
    quantize = next(s for s in m["stages"] if s["name"] == "quantize")
    assert quantize["params"]["calibration_samples"] == 16
    # without --eval the metrics say they were computed on the calibration data
    optimistic = "calibration (optimistic: the quantizer was calibrated on these samples)"
    assert m["metrics"]["fidelity"]["data"] == optimistic
    assert m["metrics"]["data"] == "calibration"
    assert m["metrics"]["accuracy"]["measured"] is False
    assert m["metrics"]["samples"] == 16


TINY_BUILD = [
    "build",
    REPO / "tests" / "fixtures" / "tiny_model.py:build_model",
    "--input-shape",
    "1x1x8x8",
    "--target",
    "rpi4",
    "--quantization",
    "dynamic-range",
]


def test_build_parses_each_model_once_and_bounds_host_latency(  # type: ignore[no-untyped-def]
    cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgepack import tflite

    parsed: list[str] = []
    real = tflite._parse

    def counting(data: bytes, path: str, digest: str) -> tflite.ModelInfo:
        parsed.append(digest)
        return real(data, path, digest)

    monkeypatch.setattr(tflite, "_parse", counting)
    tflite._MEMO.clear()
    out = tmp_path / "a"
    r = cli(*TINY_BUILD, "--latency-runs", "7", "--latency-budget", "30", "-o", out)
    assert r.code == 0, r.err
    m = json.loads((out / "manifest.json").read_text())
    # quantize check, validate, pre-flight and manifest read the built model: one parse
    assert m["model"]["sha256"] in parsed
    assert sorted(parsed) == sorted(set(parsed))
    lat = m["build"]["host_latency"]
    assert (lat["max_runs"], lat["budget_s"]) == (7, 30.0)
    for kind in ("float32", "dynamic-range"):
        assert 3 <= lat[kind]["runs"] <= 7 and lat[kind]["median_ms"] > 0
    assert "host latency" in r.out

    off = tmp_path / "b"
    r = cli(*TINY_BUILD, "--no-host-latency", "-o", off)
    assert r.code == 0, r.err
    m = json.loads((off / "manifest.json").read_text())
    assert m["build"]["host_latency"] == {"measured": False, "reason": "turned off"}
    assert "host latency" not in r.out
