"""Stages "preflight" and "edgetpu_compile"."""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
from pathlib import Path

import pytest

from edgepack.errors import CompatibilityError
from edgepack.stages import edgetpu, preflight
from edgepack.stages.base import StageContext, TFLiteArtifact
from edgepack.targets import load_target

FIXTURES = Path(__file__).parent / "fixtures" / "edgetpu_compiler"


def artifact(path: Path) -> TFLiteArtifact:
    return TFLiteArtifact(path=path, kind="full-int8", io_layout="nhwc")


@pytest.mark.slow  # converted models (conftest.py)
def test_preflight_records_rules_versions_and_summary(models, tmp_path):
    ctx = StageContext(workdir=tmp_path)
    report = preflight.run(artifact(models["leaky_late_uint8"]), load_target("coral-usb"), ctx)
    assert report.result("edgetpu").split_index == 7
    (rec,) = ctx.records
    assert rec.name == "preflight"
    assert rec.params == {
        "rules": {
            "edgetpu": {
                "name": "edgetpu",
                "version": "1",
                "applies_to": "edgetpu_compiler 16.0",
                "source": "https://coral.ai/docs/edgetpu/models-intro/#supported-operations",
            }
        },
        "require_full_delegation": True,
    }
    assert rec.metrics["ok"] is False
    assert rec.metrics["edgetpu"] == {
        "ok": False,
        "fully_delegated": False,
        "partitions": 1,
        "split_index": 7,
        "ops_on_accelerator": 7,
        "ops_total": 10,
        "mac_share": 0.999518,
        "cpu_ops": ["FULLY_CONNECTED", "LEAKY_RELU", "QUANTIZE"],
    }
    written = json.loads((tmp_path / "preflight" / "compat.json").read_text())
    assert written == json.loads(json.dumps(report.to_dict()))  # JSON-able, manifest-ready
    assert list(rec.outputs) == ["compat.json"]


def test_compiler_absent_returns_none_with_a_note(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    model = tmp_path / "model.tflite"
    model.write_bytes(b"\0\0\0\0TFL3")
    ctx = StageContext(workdir=tmp_path / "work")
    result = edgetpu.run(artifact(model), ctx)
    assert result.artifact is None
    assert result.note.startswith("edgetpu_compiler not found on PATH: packaged the uncompiled")
    assert "x86-64 Linux only" in result.note and "'edgetpu-compiler' package" in result.note
    assert ctx.records[0].metrics == {"compiled": False, "note": result.note}
    assert edgetpu.require_compiler(required=False) is None
    with pytest.raises(CompatibilityError) as e:
        edgetpu.require_compiler(required=True)
    assert e.value.message == (
        "edgetpu_compiler is not on PATH but --require-edgetpu-compiler was given"
    )
    assert e.value.hint.startswith("edgetpu_compiler runs on x86-64 Linux only")


STAND_IN = """#!{python}
# Stand-in for edgetpu_compiler (see the tests below): replays ONE recorded real compilation.
import pathlib, shutil, sys
args = sys.argv[1:]
out = pathlib.Path(args[args.index("--out_dir") + 1])
model = pathlib.Path(args[-1])
shutil.copy(model, out / (model.stem + "_edgetpu.tflite"))
oplog, stdout = {oplog!r}, {stdout!r}
if oplog:
    shutil.copy(oplog, out / (model.stem + "_edgetpu.log"))
if stdout:
    sys.stdout.write(open(stdout).read())
pathlib.Path({argv_file!r}).write_text("\\n".join(args))
"""


def install_stand_in(
    bin_dir: Path, record: Path, oplog: Path | None = None, stdout: Path | None = None
) -> None:
    bin_dir.mkdir()
    script = bin_dir / "edgetpu_compiler"
    script.write_text(
        STAND_IN.format(
            python=sys.executable,
            oplog=str(oplog) if oplog else None,
            stdout=str(stdout) if stdout else None,
            argv_file=str(record),
        )
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)


def compile_with_stand_in(tmp_path, monkeypatch, model_name: str, **recording: Path):
    """edgetpu_compiler is a closed x86-64 binary that cannot exist on this machine, so a
    STAND-IN script named edgetpu_compiler is put on PATH. It replays one real recorded
    compilation (tests/compat/fixtures/edgetpu_compiler/README.md) of a model named like
    ours and copies the model to <stem>_edgetpu.tflite. This tests our side only: argv,
    output folder, parsing, the returned artifact and what goes into the manifest."""
    record = tmp_path / "argv.txt"
    install_stand_in(tmp_path / "bin", record, **recording)
    monkeypatch.setenv("PATH", str(tmp_path / "bin") + os.pathsep + os.environ["PATH"])
    model = tmp_path / model_name
    model.write_bytes(b"\0\0\0\0TFL3 stand-in model bytes")
    ctx = StageContext(workdir=tmp_path / "work")
    assert edgetpu.require_compiler(required=True) == str(tmp_path / "bin" / "edgetpu_compiler")
    result = edgetpu.run(artifact(model), ctx, timeout_s=60)
    stage_dir = tmp_path / "work" / "edgetpu_compile"
    assert record.read_text().splitlines() == [
        "--out_dir", str(stage_dir), "--show_operations", "--timeout_sec", "60", str(model),
    ]  # fmt: skip
    assert result.artifact is not None
    assert result.artifact.path == stage_dir / f"{model.stem}_edgetpu.tflite"
    assert result.artifact.path.read_bytes() == model.read_bytes()
    (rec,) = ctx.records
    assert rec.name == "edgetpu_compile"
    assert "compile_ms" not in rec.metrics  # timing is not deterministic
    assert result.to_dict()["file"] == f"{model.stem}_edgetpu.tflite"
    return result, rec


def test_stand_in_replays_the_compiler_summary(tmp_path, monkeypatch):
    """google-coral/edgetpu#433: the compiler's stdout summary of a MobileNet (1 of 191 ops on
    the Edge TPU). Its operation log was not published, so none is written."""
    result, rec = compile_with_stand_in(
        tmp_path,
        monkeypatch,
        "inference_proxy_mobilenet_quantized_v2.tflite",
        stdout=FIXTURES / "coral_issue433_stdout.log",
    )
    log = result.log
    assert log["compiler_version"] == "16.0.384591198"
    assert log["success"] is True
    assert log["input_model"] == "inference_proxy_mobilenet_quantized_v2.tflite"
    assert log["output_model"] == "inference_proxy_mobilenet_quantized_v2_edgetpu.tflite"
    assert log["on_chip_memory_used_bytes"] == 81920
    assert log["off_chip_memory_used_bytes"] == 0
    assert (log["edgetpu_subgraphs"], log["total_operations"]) == (1, 191)
    assert (log["ops_on_edgetpu"], log["ops_on_cpu"]) == (1, 190)
    assert "mapped" not in log and "operations" not in log  # no op table in this recording
    assert rec.params["compiler"] == "16.0.384591198"
    assert list(rec.outputs) == ["inference_proxy_mobilenet_quantized_v2_edgetpu.tflite"]
    assert rec.metrics["operation_log"] == "inference_proxy_mobilenet_quantized_v2_edgetpu.log"


def test_stand_in_replays_the_operation_log(tmp_path, monkeypatch):
    """nrf20 mnist7 (integer I/O): the compiler's operation log, every op mapped. The stand-in
    prints nothing and writes the log file, so the table comes from the file."""
    result, rec = compile_with_stand_in(
        tmp_path, monkeypatch, "mnist7.tflite", oplog=FIXTURES / "nrf20_mnist7.log"
    )
    log = result.log
    assert log["compiler_version"] == "15.0.340273435"
    assert (log["input_model"], log["output_model"]) == ("mnist7.tflite", "mnist7_edgetpu.tflite")
    assert log["mapped"] == {
        "CONV_2D": 2,
        "FULLY_CONNECTED": 2,
        "MAX_POOL_2D": 2,
        "RESHAPE": 1,
        "SOFTMAX": 1,
    }
    assert log["not_mapped"] == {}
    assert log["ops_mapped_in_table"] == log["ops_in_table"] == 8
    # Nothing the recording does not hold: no summary counts, no memory figures.
    assert not {"ops_on_edgetpu", "ops_on_cpu", "on_chip_memory_used_bytes"} & set(log)
    assert rec.params["compiler"] == "15.0.340273435"
    assert sorted(rec.outputs) == ["mnist7_edgetpu.log", "mnist7_edgetpu.tflite"]


def test_compiler_failure_is_an_error(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "edgetpu_compiler"
    script.write_text(
        "#!/bin/sh\necho 'Edge TPU Compiler version 16.0.384591198'\n"
        "echo 'Internal compiler error. Aborting! '\nexit 1\n"
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    model = tmp_path / "m.tflite"
    model.write_bytes(b"x")
    with pytest.raises(CompatibilityError) as e:
        edgetpu.run(artifact(model), StageContext(workdir=tmp_path / "w"))
    assert e.value.message == (
        "edgetpu_compiler failed on m.tflite (exit 1): Edge TPU Compiler version "
        "16.0.384591198 | Internal compiler error. Aborting!"
    )
    assert shutil.which("edgetpu_compiler") == str(script)
