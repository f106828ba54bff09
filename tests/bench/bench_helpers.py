"""Helpers of the bench tests (imported by conftest.py and the tests)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from edgepack.manifest import sha256_file
from edgepack.targets import load_target

DELEGATE_SOURCE = Path(__file__).resolve().parents[1] / "devices" / "passthrough_delegate.c"


def convert_tiny(path: Path, seed: int = 0) -> Path:
    """A tiny conv net converted with litert-torch (fixed seed)."""
    import litert_torch
    import torch

    torch.manual_seed(seed)

    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 3)
            self.fc = torch.nn.Linear(8, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = torch.relu(self.conv(x)).mean(dim=(2, 3))
            return torch.softmax(self.fc(y), -1)

    litert_torch.convert(Tiny().eval(), (torch.randn(1, 3, 16, 16),)).export(str(path))
    return path


def make_package(
    root: Path, model: Path, target: str, name: str = "tiny", device_python: str | None = None
) -> Path:
    """A package folder with the manifest keys `edgepack bench` relies on (schema 1).

    ``device_python`` sets the profile's runtime.python (the device's interpreter): the
    loopback "device" runs the harness with this test session's Python.
    """
    pkg = root / f"{name}-{target}"
    pkg.mkdir(parents=True)
    shutil.copy(model, pkg / "model.tflite")
    profile = load_target(target).to_dict()
    if device_python:
        profile["runtime"]["python"] = device_python
    manifest = {
        "schema_version": 1,
        "name": name,
        "model_file": "model.tflite",
        "target": {"name": target, "sha256": load_target(target).sha256, "profile": profile},
        "files": {
            "model.tflite": {
                "sha256": sha256_file(pkg / "model.tflite"),
                "bytes": (pkg / "model.tflite").stat().st_size,
            }
        },
    }
    (pkg / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return pkg


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Sshd:
    port: int
    user: str
    identity: Path  # client private key
    known_hosts: Path  # has the server's host key
    host_pub: str  # the server's public host key line
    ssh_config: Path  # client config with Host alias "benchbox"
    home: Path  # a HOME with .ssh/config + known_hosts for CLI tests

    @property
    def address(self) -> str:
        return f"{self.user}@127.0.0.1:{self.port}"


def keygen(path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
        check=True,
        capture_output=True,
    )


def build_passthrough_delegate(out_dir: Path) -> Path:
    """Compile tests/devices/passthrough_delegate.c: a real TFLite external delegate that
    claims every SOFTMAX node."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.fail("no C compiler: run scripts/install-system-deps.sh", pytrace=False)
    lib = out_dir / "libpassthrough_delegate.so"
    subprocess.run(
        [cc, "-O2", "-shared", "-fPIC", "-Wall", "-Werror", "-o", str(lib), str(DELEGATE_SOURCE)],
        check=True,
        capture_output=True,
    )
    return lib
