"""`edgepack bench` through edgepack.cli.main: local, SSH (real sshd), errors, baseline."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from bench_helpers import free_port, make_package, run_sshd

from edgepack.cli import main
from edgepack.manifest import manifest_sha256, sha256_file


@pytest.fixture()
def rpi4_pkg(tmp_path: Path, tiny_tflite: Path) -> Path:
    return make_package(tmp_path, tiny_tflite, "rpi4")


@pytest.fixture()
def host_pkg(tmp_path: Path, tiny_tflite: Path) -> Path:
    return make_package(tmp_path, tiny_tflite, "host")


@pytest.fixture()
def ssh_home(sshd, monkeypatch: pytest.MonkeyPatch) -> Path:
    """HOME with ~/.ssh/config (Host benchbox) and ~/.ssh/known_hosts of the test sshd."""
    monkeypatch.setenv("HOME", str(sshd.home))
    return sshd.home


@pytest.mark.integration
def test_bench_package_over_ssh_json_and_saved(rpi4_pkg, ssh_home, sshd, capsys) -> None:
    argv = ["bench", str(rpi4_pkg), "--host", "benchbox", "--runs", "6", "--warmup-runs", "1"]
    code = main([*argv, "--remote-python", sys.executable, "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    doc = json.loads(out.out)
    assert doc["schema"] == "edgepack.bench-result/1"
    assert doc["package"] == {
        "name": "tiny",
        "manifest_sha256": manifest_sha256(rpi4_pkg),
        "model_sha256": sha256_file(rpi4_pkg / "model.tflite"),
    }
    assert doc["target"] == "rpi4" and doc["transport"] == "ssh"
    assert doc["device"]["address"] == "127.0.0.1" and doc["device"]["port"] == sshd.port
    assert doc["device"]["alias"] == "benchbox"
    h = doc["harness"]
    assert h["stats"]["count"] == 6 and h["config"]["warmup_runs"] == 1
    assert h["config"]["threads"] == 4  # rpi4 profile default
    assert h["model"]["sha256"] == doc["package"]["model_sha256"]
    saved = Path(doc["saved_to"])
    assert saved.parent == rpi4_pkg / "bench"
    assert saved.name.startswith("rpi4-ssh-benchbox-") and saved.suffix == ".json"
    on_disk = json.loads(saved.read_text())
    assert on_disk["harness"]["latencies_ms"] == h["latencies_ms"]


@pytest.mark.integration
def test_wrong_port_exit_4_with_hint(rpi4_pkg, ssh_home, sshd, capsys) -> None:
    port = free_port()
    code = main(
        [
            "bench",
            str(rpi4_pkg),
            "--host",
            f"{sshd.user}@127.0.0.1",
            "--port",
            str(port),
            "--identity",
            str(sshd.identity),
            "--no-save",
        ]
    )
    err = capsys.readouterr().err
    assert code == 4
    assert f"error: cannot connect to {sshd.user}@127.0.0.1:{port}: connection refused" in err
    assert "hint: is sshd running on the device and is the port right?" in err
    assert not (rpi4_pkg / "bench").exists()


@pytest.mark.integration
def test_unknown_host_key_needs_the_flag(rpi4_pkg, sshd, tmp_path, monkeypatch, capsys) -> None:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    args = [
        "bench",
        str(rpi4_pkg),
        "--host",
        sshd.address,
        "--identity",
        str(sshd.identity),
        "--runs",
        "2",
        "--warmup-runs",
        "0",
        "--no-save",
        "--remote-python",
        sys.executable,
    ]
    assert main(args) == 4
    err = capsys.readouterr().err
    assert "is not in" in err and "known_hosts" in err and "--accept-new-host-key" in err
    assert main([*args, "--accept-new-host-key"]) == 0
    known = (home / ".ssh" / "known_hosts").read_text()
    assert known.strip() == f"[127.0.0.1]:{sshd.port} {sshd.host_pub}"
    assert main(args) == 0  # recorded: the default policy accepts it now


def test_bench_host_package_locally_prints_table(host_pkg, capsys) -> None:
    code = main(["bench", str(host_pkg), "--runs", "5", "--warmup-runs", "1", "--threads", "2"])
    out = capsys.readouterr().out
    assert code == 0
    assert "runtime             ai_edge_litert" in out
    assert "delegate            applied, 6/6 nodes, 1 partition(s)" in out
    assert "threads / delegate  2 / xnnpack" in out
    saved = list((host_pkg / "bench").glob("host-local-local-*.json"))
    assert len(saved) == 1 and f"saved: {saved[0]}" in out
    doc = json.loads(saved[0].read_text())
    assert doc["harness"]["config"]["threads"] == 2 and doc["harness"]["stats"]["count"] == 5


def test_bare_tflite_needs_target(tiny_tflite, capsys) -> None:
    assert main(["bench", str(tiny_tflite), "--no-save"]) == 2
    err = capsys.readouterr().err
    assert "error: tiny.tflite is a bare model: which device is it for?" in err
    assert "--target" in err


def test_bare_tflite_with_target(tiny_tflite, capsys) -> None:
    code = main(
        [
            "bench",
            str(tiny_tflite),
            "--target",
            "host",
            "--runs",
            "3",
            "--no-save",
            "--json",
            "--delegate",
            "none",
        ]
    )
    doc = json.loads(capsys.readouterr().out)
    assert code == 0 and doc["package"]["manifest_sha256"] is None
    assert doc["harness"]["delegate"]["requested"] == "none" and doc["saved_to"] is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--target", "rpi5"], "the package was built for target 'rpi4', not 'rpi5'"),
        ([], "target 'rpi4' is benchmarked over SSH: which device?"),
        (["--host", "a", "--serial", "b"], "pass either --host (SSH) or --serial (adb)"),
        (["--host", "pi@h:notaport"], "bad port in SSH address"),
        (["--max-regression", "10", "--host", "x"], "--max-regression '10' is ambiguous"),
        (["--runs", "0", "--host", "x"], "runs must be >= 1 (got 0)"),
        (["--input-data", "missing.npy", "--host", "x"], "input data file not found"),
        (["--host", "x", "--identity", "no-such-key"], "identity file not found: no-such-key"),
    ],
)
def test_usage_errors_exit_2(rpi4_pkg, args, message, capsys) -> None:
    assert main(["bench", str(rpi4_pkg), *args]) == 2
    assert message in capsys.readouterr().err


def test_not_a_package(tmp_path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    assert main(["bench", str(tmp_path / "empty")]) == 2
    assert "is not a package: it has no manifest.json" in capsys.readouterr().err


def test_tampered_package_model(host_pkg, capsys) -> None:
    (host_pkg / "model.tflite").write_bytes(b"changed")
    assert main(["bench", str(host_pkg)]) == 2
    assert "does not match the sha256 in its manifest" in capsys.readouterr().err


def _baseline(tmp_path: Path, p50: float, p90: float) -> Path:
    doc = {
        "schema": "edgepack.bench-result/1",
        "harness": {
            "schema": "edgepack.bench/1",
            "stats": {"p50_ms": p50, "p90_ms": p90},
            "config": {"threads": 1, "delegate": "xnnpack"},
        },
    }
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(doc))
    return path


def test_baseline_gate_exit_5_on_regression_and_0_on_improvement(host_pkg, tmp_path, capsys):
    # The tiny model takes microseconds: a 1-nanosecond baseline makes any run a regression.
    fast = _baseline(tmp_path, 1e-6, 1.1e-6)
    code = main(["bench", str(host_pkg), "--runs", "20", "--baseline", str(fast), "--json"])
    captured = capsys.readouterr()
    assert code == 5
    doc = json.loads(captured.out)
    assert doc["comparison"]["regressed"] is True
    assert [m["verdict"] for m in doc["comparison"]["metrics"]] == ["regressed", "regressed"]
    assert "error: latency regressed beyond 10% and the runs' spread: p50" in captured.err
    # The result is saved with its comparison even when the gate fails.
    saved = json.loads(Path(doc["saved_to"]).read_text())
    assert saved["comparison"]["regressed"] is True

    slow = _baseline(tmp_path, 1000.0, 1001.0)
    code = main(["bench", str(host_pkg), "--runs", "20", "--baseline", str(slow)])
    out = capsys.readouterr().out
    assert code == 0
    assert "improved" in out and "regressed" not in out


def test_bad_baseline_file(host_pkg, tmp_path, capsys) -> None:
    bad = tmp_path / "b.json"
    bad.write_text(json.dumps({"schema": "something"}))
    assert main(["bench", str(host_pkg), "--baseline", str(bad)]) == 2
    assert "is not a benchmark result" in capsys.readouterr().err


@pytest.mark.integration
def test_coral_package_without_the_edgetpu_runtime_names_the_package(
    tmp_path, tiny_tflite, ssh_home, capsys
):
    # No Edge TPU runtime on this device: the harness tries libedgetpu.so.1 (the coral
    # profile's delegate), the load fails and the error names the package to install.
    pkg = make_package(tmp_path, tiny_tflite, "coral-usb")
    argv = ["bench", str(pkg), "--host", "benchbox", "--runs", "2", "--no-save"]
    code = main([*argv, "--remote-python", sys.executable])
    err = capsys.readouterr().err
    assert code == 4
    assert "error: the benchmark failed on" in err
    assert "cannot load the edgetpu delegate from libedgetpu.so.1" in err
    assert "hint: install the Edge TPU runtime (Debian package libedgetpu1-std)" in err


@pytest.mark.integration
def test_coral_package_loads_the_edgetpu_delegate(
    tmp_path, tiny_tflite, passthrough_delegate, monkeypatch, capsys
):
    """A device WITH an "Edge TPU runtime": a real external delegate installed as
    libedgetpu.so.1 in a library folder the device's sshd puts on LD_LIBRARY_PATH (SetEnv).
    It is tests/devices/passthrough_delegate.c (claims every SOFTMAX node), not Google's
    runtime, which cannot run without the USB accelerator; what is tested is that the coral
    profile makes the harness load libedgetpu.so.1 as its delegate and report what it took."""
    libdir = tmp_path / "device-lib"
    libdir.mkdir()
    shutil.copy(passthrough_delegate, libdir / "libedgetpu.so.1")
    with run_sshd(tmp_path / "sshd", (f"SetEnv LD_LIBRARY_PATH={libdir}",)) as device:
        monkeypatch.setenv("HOME", str(device.home))
        pkg = make_package(tmp_path, tiny_tflite, "coral-usb")
        argv = ["bench", str(pkg), "--host", "benchbox", "--runs", "3", "--json"]
        code = main([*argv, "--remote-python", sys.executable])
        out = capsys.readouterr()
    assert code == 0, out.err
    doc = json.loads(out.out)
    assert doc["target"] == "coral-usb" and doc["device"]["port"] == device.port
    h = doc["harness"]
    assert h["errors"] == []
    assert h["config"]["delegate"] == "edgetpu"
    d = h["delegate"]
    assert d["library"] == "libedgetpu.so.1"
    # The delegate took the model's one SOFTMAX node out of 6, and the runs went through it.
    assert (d["applied"], d["delegated_nodes"], d["total_nodes"]) == (True, 1, 6)
    assert h["stats"]["count"] == 3 and all(x > 0 for x in h["latencies_ms"])
    assert json.loads(Path(doc["saved_to"]).read_text())["harness"] == h


@pytest.mark.integration
def test_bench_says_an_uncompiled_coral_package_is_not_on_the_accelerator(
    tmp_path, tiny_tflite, ssh_home, capsys
):
    """A coral package built without edgetpu_compiler: the figures are the CPU's, and the
    output says so in the table, in a note line and in the saved result."""
    pkg = make_package(tmp_path, tiny_tflite, "coral-usb")
    manifest = json.loads((pkg / "manifest.json").read_text())
    manifest["edgetpu"] = {"compiled": False, "log": {}, "note": "edgetpu_compiler not found"}
    (pkg / "manifest.json").write_text(json.dumps(manifest))
    argv = ["bench", str(pkg), "--host", "benchbox", "--runs", "2", "--delegate", "none"]
    code = main([*argv, "--remote-python", sys.executable])
    out = capsys.readouterr().out
    assert code == 0
    assert "NOT compiled for the Edge TPU: CPU figures" in out
    assert (
        "note: the package is NOT compiled for the Edge TPU (edgetpu_compiler did not run at "
        "build time): these figures are the CPU's, not the accelerator's"
    ) in out
    (saved,) = (pkg / "bench").glob("*.json")
    doc = json.loads(saved.read_text())
    assert doc["edgetpu"]["compiled"] is False
    assert doc["profile_sha256"] == manifest["target"]["sha256"]
