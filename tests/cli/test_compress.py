from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from edgepack.cli import main
from edgepack.pt2 import load_program

REPO = Path(__file__).resolve().parents[2]
DIGITS = REPO / "examples" / "digits"
SOURCE = [f"{DIGITS / 'model.py'}:build_model", "--weights", str(DIGITS / "weights.pt")]
SHAPE = ["--input-shape", "1x1x32x32"]

CUSTOM_MODEL = """
import torch
import torch.nn.functional as F
from torch import nn


class Mixer(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(8, 8, 3, 3) * 0.1)

    def forward(self, x):
        return F.conv2d(x, self.weight, padding=1)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.mixer = Mixer()
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        return self.fc(self.mixer(F.relu(self.conv(x))).mean(dim=(2, 3)))


def build():
    torch.manual_seed(0)
    return Net()
"""


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.slow
def test_compress_channels_with_distillation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "pruned.pt2"
    argv = ["compress", *SOURCE, *SHAPE, "--prune", "channels:0.5", "--round-to", "8"]
    argv += ["--distill", "--train", str(DIGITS / "train.npz"), "--epochs", "2"]
    argv += [
        "--samples",
        "320",
        "--batch-size",
        "32",
        "--lr",
        "3e-3",
        "--eval",
        str(DIGITS / "eval.npz"),
        "-o",
        str(out),
    ]
    code, stdout, stderr = run(argv, capsys)
    assert code == 0, stderr
    assert "  distill: epoch 2/2 loss" in stderr
    lines = stdout.splitlines()
    assert lines[0].split() == ["stage", "params", "MACs", "sparsity", "top-1"]
    assert lines[2].startswith("prune") and "94186 -> 24058" in lines[2]
    assert lines[3].startswith("distill")
    assert f"wrote {out} and {tmp_path / 'pruned.json'}" in stdout

    doc = json.loads((tmp_path / "pruned.json").read_text())
    prune_rec, distill_rec = doc["stages"][0], doc["stages"][1]
    assert prune_rec["params"] == {"method": "channels", "sparsity": 0.5, "round_to": 8}
    assert prune_rec["metrics"]["channels_per_layer"]["features.8"] == [128, 64]
    assert prune_rec["metrics"]["top1_before"] == 99.11
    assert distill_rec["metrics"]["top1_after"] > prune_rec["metrics"]["top1_after"] + 40
    assert [s["name"] for s in doc["stages"]] == ["prune", "distill", "export"]

    ep = load_program(out)  # edgepack's own .pt2 passes the safe-loading checks
    assert ep.state_dict["features.0.weight"].shape == (16, 1, 3, 3)
    assert ep.module()(torch.zeros(1, 1, 32, 32)).shape == (1, 10)


def _nothing_written(tmp_path: Path) -> None:
    assert [p.name for p in tmp_path.iterdir() if p.suffix in (".pt2", ".json")] == []


@pytest.mark.parametrize(
    ("prune", "message", "hint"),
    [
        (
            "channels:1.5",
            "error: pruning sparsity must be between 0 and 1 (exclusive), got 1.5",
            "hint: a fraction of the weights (magnitude) or channels (channels) to remove",
        ),
        (
            "magnitude:0",
            "error: pruning sparsity must be between 0 and 1 (exclusive), got 0",
            "hint: a fraction",
        ),
        (
            "random:0.5",
            "error: unknown pruning method 'random' (known: magnitude, channels)",
            "hint: write METHOD:SPARSITY, e.g. --prune magnitude:0.7 or --prune channels:0.5",
        ),
    ],
)
def test_bad_prune_option(
    prune: str, message: str, hint: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["compress", *SOURCE, *SHAPE, "--prune", prune, "-o", str(tmp_path / "m.pt2")]
    code, _, stderr = run(argv, capsys)
    assert code == 2
    lines = stderr.splitlines()
    assert lines[0] == message
    assert lines[1].startswith(hint)
    assert len(lines) == 2 and "Traceback" not in stderr
    _nothing_written(tmp_path)


def test_model_the_pruner_cannot_analyse(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "custom.py"
    model.write_text(CUSTOM_MODEL)
    argv = ["compress", f"{model}:build", *SHAPE, "--prune", "channels:0.5", "--quiet"]
    code, _, stderr = run([*argv, "-o", str(tmp_path / "m.pt2")], capsys)
    assert code == 2
    assert stderr.splitlines()[0] == (
        "error: channel pruning cannot analyse layer 'mixer' (Mixer): its parameter 'weight' "
        "(shape 8x8x3x3) is used directly in forward(), not through a Conv/Linear/Norm module "
        "torch-pruning knows"
    )
    assert stderr.splitlines()[1].startswith("hint: use torch.nn layers")
    _nothing_written(tmp_path)


def test_distill_without_training_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["compress", *SOURCE, *SHAPE, "--prune", "channels:0.5", "--distill"]
    code, _, stderr = run([*argv, "-o", str(tmp_path / "m.pt2")], capsys)
    assert code == 2
    assert stderr.splitlines() == [
        "error: distillation needs training data, but no --train was given",
        "hint: pass --train data.npz (inputs 'x'; labels 'y' optional: pure distillation needs "
        "none)",
    ]
    _nothing_written(tmp_path)


def test_training_data_that_does_not_match(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["compress", *SOURCE, "--input-shape", "1x1x28x28", "--prune", "channels:0.5"]
    argv += ["--distill", "--train", str(DIGITS / "train.npz"), "-o", str(tmp_path / "m.pt2")]
    code, _, stderr = run(argv, capsys)
    assert code == 2
    first = stderr.splitlines()[0]
    assert first.startswith("error: training data ") and first.endswith(
        "train.npz does not fit the model: input 'x' has samples of shape (1, 32, 32), "
        "the model takes (1, 28, 28) (full shape (1, 1, 28, 28))"
    )
    assert stderr.splitlines()[1].startswith("hint: samples are stacked on axis 0")
    _nothing_written(tmp_path)


def test_existing_output_and_missing_prune(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "m.pt2"
    out.write_bytes(b"keep")
    code, _, stderr = run(
        ["compress", *SOURCE, *SHAPE, "--prune", "magnitude:0.5", "-o", str(out)], capsys
    )
    assert code == 2
    assert stderr.splitlines() == [
        f"error: {out} already exists",
        "hint: pass --force to overwrite it, or choose another -o",
    ]
    assert out.read_bytes() == b"keep"
    code, _, stderr = run(["compress", *SOURCE, *SHAPE, "-o", str(tmp_path / "n.pt2")], capsys)
    assert code == 2
    assert stderr.startswith("error: nothing to do: compress needs --prune METHOD:SPARSITY\n")


def test_magnitude_compress_writes_sparse_weights(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "sparse.pt2"
    argv = ["compress", *SOURCE, *SHAPE, "--prune", "magnitude:0.6", "--scope", "layer"]
    code, stdout, stderr = run([*argv, "-o", str(out)], capsys)
    assert code == 0, stderr
    assert stdout.splitlines()[2].split() == [
        "prune",
        "94186",
        "->",
        "94186",
        "9733376",
        "->",
        "9733376",
        "0.0%",
        "->",
        "60.0%",
        "-",
    ]
    assert len(stdout.splitlines()) == 4  # header, rule, prune, "wrote ..."
    ep = torch.export.load(str(out))
    w = ep.state_dict["features.4.weight"]
    assert float((w == 0).float().mean()) == pytest.approx(0.6, abs=0.001)
    # an exported program has no module code to prune: refused, nothing written
    again = ["compress", str(out), "--prune", "channels:0.5", "-o", str(tmp_path / "b.pt2")]
    code, _, stderr = run(again, capsys)
    assert code == 2
    assert stderr.splitlines()[-2:] == [
        "error: pruning needs the PyTorch model's code, but this source is an exported program "
        "(.pt2)",
        "hint: load the model from its factory (module:factory or file.py:factory) to prune it",
    ]
    assert not (tmp_path / "b.pt2").exists()


@pytest.mark.slow
def test_compressed_program_builds_into_a_package(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "small.pt2"
    argv = ["compress", *SOURCE, *SHAPE, "--prune", "channels:0.5", "--round-to", "8"]
    code, _, stderr = run([*argv, "--quiet", "-o", str(out)], capsys)
    assert code == 0, stderr
    pkg = tmp_path / "pkg"
    build = ["build", str(out), "--target", "host", "--quantization", "float32"]
    build += ["--latency-runs", "0", "--quiet", "-o", str(pkg)]
    code, _, stderr = run(build, capsys)
    assert code == 0, stderr
    manifest = json.loads((pkg / "manifest.json").read_text())
    assert manifest["source"]["kind"] == "exported"
    assert manifest["metrics"]["float_parity"]["max_abs_diff"] < 1e-4
    # the built model carries the pruned weights: 16/32/64 filters instead of 32/64/128
    from edgepack.tflite import read_model

    shapes = {tuple(t.shape) for t in read_model(pkg / "model.tflite").tensors if t.is_constant}
    assert {(1, 3, 3, 16), (32, 3, 3, 16), (64, 3, 3, 32), (10, 64)} <= shapes
