"""Gates fail closed in `edgepack build`: the target profile's default accuracy guard, no
accuracy claimed on calibration data, meaningless labels refused, and an Edge TPU package
built without edgetpu_compiler that says so (build, summary, verify)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import DIGITS, digits_build_args

pytestmark = pytest.mark.slow


def _without_eval(args: list[str | Path]) -> list[str | Path]:
    i = args.index("--eval")
    return args[:i] + args[i + 2 :]


def test_readme_prune_example_fails_the_profiles_default_accuracy_gate(cli, tmp_path: Path):  # type: ignore[no-untyped-def]
    """README: `edgepack build ... --target rpi4 --prune magnitude:0.8` with eval data and no
    gate of the user's: the rpi4 profile's max_accuracy_drop stops it (exit 3, no package)."""
    out = tmp_path / "dist" / "digits-rpi4"
    r = cli(*digits_build_args("rpi4", "--prune", "magnitude:0.8", "-o", out))
    assert r.code == 3, r.err
    # Every mode of the profile's list (full-int8, dynamic-range) misses it: the drop is the
    # pruning's, whatever the quantization.
    assert "error: no mode of the rpi4 profile's quantization list passed: full-int8: " in r.err
    assert "; dynamic-range: accuracy gate failed: top-1 dropped" in r.err
    assert r.err.count("no package was written") == 1
    m = re.search(
        r"full-int8: accuracy gate failed: top-1 dropped ([\d.]+) points \(float ([\d.]+)% -> "
        r"full-int8 ([\d.]+)%\), the limit is 2.0 points \(the target profile's default\)",
        r.err,
    )
    assert m, r.err
    drop, before, after = (float(g) for g in m.groups())
    assert drop > 2.0 and before - after == pytest.approx(drop, abs=0.01)
    assert "--no-accuracy-gate turns the gate off" in r.err and "Traceback" not in r.err
    assert not out.exists() and list((tmp_path / "dist").iterdir()) == []

    # Opting out is explicit, and recorded: the same model ships, with its real top-1.
    r = cli(*digits_build_args("rpi4", "--prune", "magnitude:0.8", "--no-accuracy-gate", "-o", out))
    assert r.code == 0, r.err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["accuracy_gate"] == {"status": "opted out", "reason": "--no-accuracy-gate"}
    assert manifest["metrics"]["accuracy"]["drop_points"] == pytest.approx(drop, abs=0.01)
    # no release cap in the stock profile: the RAM limit is the board's (device.ram_mb)
    assert [g["gate"] for g in manifest["metrics"]["gates"]] == ["max_ram_mb"]
    assert "| accuracy gate | opted out (--no-accuracy-gate) |" in (out / "summary.md").read_text()

    # --no-accuracy-gate and a gate of one's own contradict each other: exit 2 before any work.
    r = cli(*digits_build_args("rpi4", "--no-accuracy-gate", "--max-accuracy-drop", "1", "-o", out))
    assert r.code == 2 and "--no-accuracy-gate (accuracy_gate = false) turns the accuracy" in r.err


def test_plain_digits_build_passes_the_default_gate_and_says_so(cli, tmp_path: Path):  # type: ignore[no-untyped-def]
    out = tmp_path / "digits-rpi4"
    r = cli(*digits_build_args("rpi4", "-o", out))
    assert r.code == 0, r.err
    m = json.loads((out / "manifest.json").read_text())
    assert m["accuracy_gate"] == {
        "status": "enforced",
        "max_accuracy_drop": {"limit": 2.0, "from": "profile"},
    }
    (gate,) = [g for g in m["metrics"]["gates"] if g["gate"] == "max_accuracy_drop"]
    assert gate["limit"] == 2.0 and gate["passed"] is True
    assert gate["value"] == pytest.approx(m["metrics"]["accuracy"]["drop_points"], abs=1e-4)


def test_unlabelled_eval_data_gets_the_default_fidelity_gate(cli, tmp_path: Path):  # type: ignore[no-untyped-def]
    unlabelled = tmp_path / "unlabelled.npz"
    np.savez(unlabelled, x=np.load(DIGITS / "eval.npz")["x"][:100])
    args = digits_build_args("host", "-o", tmp_path / "p")
    args[args.index("--eval") + 1] = unlabelled
    r = cli(*args)
    assert r.code == 0, r.err
    m = json.loads((tmp_path / "p" / "manifest.json").read_text())
    assert m["accuracy_gate"] == {
        "status": "enforced",
        "min_fidelity": {"limit": 0.98, "from": "profile"},
    }
    (gate,) = [g for g in m["metrics"]["gates"] if g["gate"] != "max_ram_mb"]
    assert gate["gate"] == "min_fidelity" and gate["limit"] == 0.98
    assert gate["value"] == m["metrics"]["fidelity"]["cosine"] and gate["passed"] is True
    # A limit the model cannot meet fails the build, with the measured cosine in the message.
    cos = m["metrics"]["fidelity"]["cosine"]
    if cos < 1.0:
        # (host's list would go on to float32: the mode is explicit here)
        r = cli(
            *args[:-1], tmp_path / "q", "--min-fidelity", "1.0", "--quantization", "dynamic-range"
        )
        assert r.code == 3 and f"output cosine vs the float model {cos:.4f} < 1.0" in r.err
        assert not (tmp_path / "q").exists()


def test_without_eval_no_accuracy_is_claimed_on_calibration_data(cli, tmp_path: Path):  # type: ignore[no-untyped-def]
    """calib.npz holds labels; without --eval no top-1 may be shown (it is not held out)."""
    out = tmp_path / "digits-rpi4"
    r = cli(*_without_eval(digits_build_args("rpi4", "-o", out)))
    assert r.code == 0, r.err
    m = json.loads((out / "manifest.json").read_text())
    assert m["metrics"]["accuracy"]["measured"] is False
    assert "calibration data is not held out" in m["metrics"]["accuracy"]["reason"]
    assert "quantized" not in m["metrics"]["accuracy"]
    assert m["metrics"]["data"] == "calibration"
    assert m["accuracy_gate"] == {"status": "not measured", "reason": "no --eval data"}
    validate = next(s for s in m["stages"] if s["name"] == "validate")
    assert validate["params"]["data"] == "calibration"
    summary = (out / "summary.md").read_text()
    for text in (summary, r.out):
        assert "not measured (no --eval data; calibration data is not held out)" in text
        assert "fidelity vs PyTorch (on calibration data)" in text
        top1 = [line for line in text.splitlines() if "top-1" in line]
        assert len(top1) == 1 and "%" not in top1[0]  # no top-1 figure anywhere


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (lambda y: y - 1, "negative labels (class indices start at 0)"),
        (lambda y: y.astype(np.float32), "labels must be a 1-D integer array, got float32"),
    ],
)
def test_meaningless_labels_are_refused_before_the_export(cli, tmp_path: Path, labels, message):  # type: ignore[no-untyped-def]
    ev = np.load(DIGITS / "eval.npz")
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=ev["x"], y=labels(ev["y"]))
    args = digits_build_args("host", "-o", tmp_path / "p")
    args[args.index("--eval") + 1] = bad
    r = cli(*args)
    assert r.code == 2, r.err
    assert f"error: evaluation data {bad} does not fit the model" in r.err and message in r.err
    assert "hint:" in r.err and not (tmp_path / "p").exists()


def test_labels_out_of_the_models_range_are_refused(cli, tmp_path: Path):  # type: ignore[no-untyped-def]
    ev = np.load(DIGITS / "eval.npz")
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=ev["x"], y=ev["y"] + 5)  # digits 5..14 for a 10-class model
    n_bad = int((ev["y"] + 5 >= 10).sum())
    args = digits_build_args("host", "-o", tmp_path / "p", "--latency-runs", "0")
    args[args.index("--eval") + 1] = bad
    r = cli(*args)
    assert r.code == 2, r.err
    assert (
        f"error: {n_bad} of {len(ev['y'])} labels lie outside 0..9 (the model has 10 classes; "
        "labels span 5..14)" in r.err
    )
    assert "hint: labels are class indices 0..C-1 of a classifier" in r.err
    assert not (tmp_path / "p").exists()


def test_labels_for_a_model_that_is_not_a_classifier_are_refused(cli, tmp_path: Path):  # type: ignore[no-untyped-def]
    f = tmp_path / "features.py"
    f.write_text(
        "import torch\n"
        "def build():\n"
        "    return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU())\n"
    )
    r = cli(
        "build",
        f"{f}:build",
        "--input-shape",
        "1x1x32x32",
        "--target",
        "host",
        "--eval",
        DIGITS / "eval.npz",
        "--latency-runs",
        "0",
        "-o",
        tmp_path / "p",
    )
    assert r.code == 2, r.err
    assert "the model's output [450, 4, 32, 32] is not a classifier's [N, C] scores" in r.err
    assert "gate on --min-fidelity" in r.err and not (tmp_path / "p").exists()


def test_coral_without_edgetpu_compiler_never_claims_the_accelerator(  # type: ignore[no-untyped-def]
    cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    bin_dir = tmp_path / "bin"  # a PATH with python but no edgetpu_compiler
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(sys.executable)
    monkeypatch.setenv("PATH", str(bin_dir))
    out = tmp_path / "digits-coral-usb"
    r = cli(*digits_build_args("coral-usb", "-o", out))
    assert r.code == 0, r.err
    m = json.loads((out / "manifest.json").read_text())
    assert m["edgetpu"]["compiled"] is False and m["model_file"] == "model.tflite"
    assert m["compat"]["results"]["edgetpu"]["fully_delegated"] is True  # the prediction
    summary = (out / "summary.md").read_text()
    for text in (summary, r.out):
        assert "every op on the accelerator" not in text
        assert "predicted: every op maps to the accelerator" in text
        assert "(a prediction: the model is NOT compiled for the Edge TPU)" in text
        assert "NOT compiled for the Edge TPU (edgetpu_compiler not on PATH)" in text

    r = cli("verify", out)
    assert r.code == 0, r.err
    assert re.search(r"edgetpu\s+SKIP\s+NOT compiled for the Edge TPU", r.out)
    assert f"{out}: verified (NOT compiled for the Edge TPU: it runs on the CPU)" in r.out

    # The strict mode stays an error.
    r = cli(*digits_build_args("coral-usb", "-o", tmp_path / "s", "--require-edgetpu-compiler"))
    assert r.code == 2 and "edgetpu_compiler is not on PATH" in r.err


def test_single_build_latency_budget_fails_closed_without_a_device_result(cli, tmp_path: Path):  # type: ignore[no-untyped-def]
    """A profile's max_latency_ms on `edgepack build SRC --target board.toml`: no result from
    such a device yet, so exit 3 with the command that gets one; the opt-out is explicit."""
    from edgepack.targets import targets_dir

    board = tmp_path / "lab-host.toml"
    board.write_text(
        (targets_dir() / "host.toml")
        .read_text()
        .replace('name = "host"', 'name = "lab-host"')
        .replace("[budgets]\n", "[budgets]\nmax_latency_ms = 1000\n")
    )
    out = tmp_path / "p"
    r = cli(*digits_build_args(str(board), "-o", out))
    assert r.code == 3, r.err
    assert (
        "error: latency gate failed: max_latency_ms (p50): no benchmark result from a lab-host "
        f"device for this model: run `edgepack bench {out}` on a lab-host device"
    ) in r.err
    assert "hint: the package was written" in r.err and (out / "manifest.json").is_file()
    r = cli(*digits_build_args(str(board), "-o", tmp_path / "q", "--allow-missing-latency"))
    assert r.code == 0, r.err
    assert "max_latency_ms (p50): skipped (no benchmark result from a lab-host device" in r.err
