"""A package is data: no command that runs on the device comes from its manifest.

The manifest's profile carries ``runtime.python = "sh -c 'touch MARKER; exec ...' <python>"``; benchmarking the
package over the real loopback sshd, locally and through a fleet must never create MARKER.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from bench_helpers import make_package

from edgepack.bench import plan
from edgepack.bench.results import load_subject
from edgepack.cli import main


def _evil(tmp_path: Path, tiny_tflite: Path, target: str) -> tuple[Path, Path]:
    marker = tmp_path / "ran"
    # survives edgepack's shlex quoting: sh runs the touch, then execs the real Python
    command = f'sh -c \'touch {marker}; exec "$0" "$@"\' {sys.executable}'
    return make_package(tmp_path, tiny_tflite, target, device_python=command), marker


def test_device_python_never_comes_from_the_manifest(tmp_path: Path, tiny_tflite: Path) -> None:
    pkg, _ = _evil(tmp_path, tiny_tflite, "rpi4")
    subject = load_subject(pkg)
    profile = plan.resolve_profile(subject, None)
    assert profile.runtime.python.startswith("sh -c 'touch ")  # the package says so...
    assert plan.device_python(subject, profile, plan.Connection()) == "python3"  # ...ignored
    given = plan.Connection(remote_python="/opt/py/bin/python3")
    assert plan.device_python(subject, profile, given) == "/opt/py/bin/python3"

    # a package for a target that is not built in: still nothing from the manifest
    manifest = json.loads((pkg / "manifest.json").read_text())
    manifest["target"]["name"] = "../board.toml"
    (pkg / "manifest.json").write_text(json.dumps(manifest))
    subject = load_subject(pkg)
    assert plan.device_python(subject, profile, plan.Connection()) == "python3"


@pytest.mark.integration
def test_ssh_bench_ignores_the_manifest_python(  # type: ignore[no-untyped-def]
    sshd, tiny_tflite, tmp_path, monkeypatch, capsys
) -> None:
    monkeypatch.setenv("HOME", str(sshd.home))
    pkg, marker = _evil(tmp_path, tiny_tflite, "rpi4")
    argv = ["bench", str(pkg), "--host", "benchbox", "--runs", "2", "--warmup-runs", "0"]
    code = main([*argv, "--remote-python", sys.executable, "--json", "--no-save"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert json.loads(out.out)["harness"]["stats"]["count"] == 2
    assert not marker.exists()
    # without --remote-python the device's own python3 is used: it may lack numpy or a
    # TFLite runtime (exit 4), but the package's command never runs
    code = main([*argv, "--no-save"])
    capsys.readouterr()
    assert code in (0, 4)
    assert not marker.exists()


@pytest.mark.integration
def test_fleet_bench_ignores_the_manifest_python(  # type: ignore[no-untyped-def]
    sshd, tiny_tflite, tmp_path, monkeypatch, capsys
) -> None:
    monkeypatch.setenv("HOME", str(sshd.home))
    pkg, marker = _evil(tmp_path, tiny_tflite, "rpi4")
    fleet = tmp_path / "devices.toml"
    fleet.write_text(
        f'[[device]]\nname = "pi"\ntarget = "rpi4"\ntransport = "ssh"\n'
        f'address = "{sshd.user}@127.0.0.1"\nport = {sshd.port}\nidentity = "{sshd.identity}"\n'
    )
    argv = ["bench", str(pkg), "--fleet", str(fleet), "--runs", "2", "--warmup-runs", "0"]
    code = main([*argv, "--remote-python", sys.executable, "--no-save"])
    assert code == 0, capsys.readouterr().err
    assert not marker.exists()


def test_local_bench_ignores_the_manifest_python(tiny_tflite, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    pkg, marker = _evil(tmp_path, tiny_tflite, "host")
    code = main(["bench", str(pkg), "--runs", "2", "--warmup-runs", "0", "--no-save", "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert json.loads(out.out)["device"]["python"] == sys.executable
    assert not marker.exists()
