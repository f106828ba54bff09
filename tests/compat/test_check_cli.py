"""`edgepack check`: the per-op table, JSON, exit codes and error messages."""

from __future__ import annotations

import json
import shutil

import pytest

from edgepack.cli import main


@pytest.mark.slow  # converted models (conftest.py)
def test_coral_usb_nhwc_digits_is_fully_delegated(models, capsys):
    assert main(["check", str(models["digits_nhwc_uint8"]), "--target", "coral-usb"]) == 0
    out = capsys.readouterr().out
    assert "Edge TPU pre-flight (edgetpu rules v1, edgetpu_compiler 16.0)" in out
    assert "0  QUANTIZE           UINT8->INT8  accelerator" in out
    assert (
        "ops on accelerator: 9/9  partitions: 1  first split: none  "
        "MACs on accelerator: 100.0% (663872/663872)"
    ) in out
    assert "result: fully delegated" in out


@pytest.mark.slow  # converted models (conftest.py)
def test_json_report(models, capsys):
    path = str(models["leaky_late_uint8"])
    assert main(["check", path, "--target", "android-arm64", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    xnn = data["results"]["xnnpack"]
    assert (xnn["partitions"], xnn["split_index"], xnn["split_op"]) == (1, 9, "QUANTIZE")
    assert xnn["ok"] is True and xnn["fully_delegated"] is False
    assert [c["op"] for c in xnn["cpu_ops"]] == ["QUANTIZE", "QUANTIZE"]


@pytest.mark.slow  # converted models (conftest.py)
def test_required_full_delegation_fails_with_exit_3(models, capsys):
    code = main(["check", str(models["leaky_early_uint8"]), "--target", "coral-usb"])
    assert code == 3
    captured = capsys.readouterr()
    assert "2  LEAKY_RELU         INT8         cpu          op not supported" in captured.out
    assert "partitions: 1  first split: op 2 (LEAKY_RELU)  MACs on accelerator: 11.1%" in (
        captured.out
    )
    assert captured.err.splitlines()[0] == (
        "error: target 'coral-usb' requires full delegation to Edge TPU, but 8 of 10 ops fall "
        "back to the CPU (first: op 2 LEAKY_RELU: op not supported; MACs on the accelerator: "
        "11.1%)"
    )
    assert captured.err.splitlines()[1].startswith("hint: run `edgepack check MODEL --target")


@pytest.mark.slow  # converted models (conftest.py)
def test_gpu_target_flags_argmax(models, capsys):
    assert main(["check", str(models["argmax_float"]), "--target", "android-gpu"]) == 3
    captured = capsys.readouterr()
    assert "7  ARG_MAX" in captured.out and "op not supported: ARG_MAX is not in the GPU" in (
        captured.out
    )
    assert "first: op 7 ARG_MAX: op not supported" in captured.err


@pytest.mark.slow  # converted models (conftest.py)
def test_package_folder_and_rules_override(models, tmp_path, capsys):
    shutil.copy(models["digits_nhwc_float"], tmp_path / "model.tflite")
    assert main(["check", str(tmp_path), "--target", "host", "--rules", "gpu,xnnpack"]) == 0
    out = capsys.readouterr().out
    assert "GPU delegate pre-flight" in out and "XNNPACK pre-flight" in out


@pytest.mark.parametrize(
    ("argv", "message", "hint"),
    [
        (
            ["check", "missing.tflite", "--target", "coral-usb"],
            "error: model file not found: missing.tflite",
            "hint: pass the path of a .tflite file or a package folder",
        ),
        (
            ["check", "NOTES", "--target", "coral-usb"],
            "error: NOTES is not a TFLite flatbuffer (no TFL3 identifier)",
            "hint: edgepack reads .tflite files produced by litert-torch or the TFLite converter",
        ),
        (
            ["check", "x.tflite", "--target", "coral"],
            "error: unknown target 'coral'",
            "hint: did you mean 'coral-usb' or 'coral-devboard'? `edgepack targets list` shows "
            "all targets",
        ),
        (
            ["check", "x.tflite", "--target", "./board.toml"],
            "error: target 'board' declares no compatibility rules",
            "hint: pass --rules with one of: edgetpu, gpu, xnnpack",
        ),
        (
            ["check", "x.tflite", "--target", "host", "--rules", "npu"],
            "error: unknown rule table 'npu'",
            "hint: known rule tables: edgetpu, gpu, xnnpack",
        ),
    ],
)
def test_errors(argv, message, hint, tmp_path, monkeypatch, capsys):
    from edgepack.targets import targets_dir

    monkeypatch.chdir(tmp_path)
    (tmp_path / "NOTES").write_text("not a model, just text\n")
    host = (targets_dir() / "host.toml").read_text()
    board = host.split("[compat]")[0].replace('name = "host"', 'name = "board"')
    (tmp_path / "board.toml").write_text(board)
    assert main(argv) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [message, hint]
