"""Package.bench() of the Python API: local by default, SSH with host= (a real sshd)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from bench_helpers import make_package

from edgepack import Package
from edgepack.manifest import sha256_file


@pytest.fixture()
def rpi4_pkg(tmp_path: Path, tiny_tflite: Path) -> Path:
    return make_package(tmp_path, tiny_tflite, "rpi4")


def test_bench_is_local_by_default_even_for_an_ssh_target(rpi4_pkg: Path) -> None:
    result = Package.open(rpi4_pkg).bench(runs=3, warmup_runs=1)
    assert result["transport"] == "local" and result["target"] == "rpi4"
    assert result["harness"]["stats"]["count"] == 3
    assert result["package"]["model_sha256"] == sha256_file(rpi4_pkg / "model.tflite")
    saved = Path(result["saved_to"])
    assert saved.parent == rpi4_pkg / "bench"
    assert json.loads(saved.read_text())["harness"] == result["harness"]


@pytest.mark.integration
def test_bench_over_ssh_with_host(rpi4_pkg: Path, sshd, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("HOME", str(sshd.home))  # ~/.ssh/config (Host benchbox), known_hosts
    pkg = Package.open(rpi4_pkg)
    result = pkg.bench("benchbox", remote_python=sys.executable, runs=4, warmup_runs=1, save=False)
    assert result["transport"] == "ssh"
    assert result["device"]["alias"] == "benchbox" and result["device"]["port"] == sshd.port
    assert result["harness"]["stats"]["count"] == 4
    assert result["harness"]["config"]["threads"] == 4  # the rpi4 profile's
    assert "saved_to" not in result and not (rpi4_pkg / "bench").exists()
