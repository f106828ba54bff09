"""Helpers of the bench tests (imported by conftest.py and the tests)."""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from edgepack.manifest import sha256_file
from edgepack.targets import load_target

SSHD = "/usr/sbin/sshd"
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

    ``device_python`` writes a runtime.python into the manifest's profile; bench must ignore
    it (the device's Python comes from the user: --remote-python or the built-in profile).
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


def sshd_config(d: Path, port: int, extra: list[str]) -> str:
    """An sshd_config for a test sshd on 127.0.0.1: keys and pid file in ``d``, public keys
    only, no PAM. ``extra`` lines go before the log level."""
    lines = [
        f"Port {port}",
        "ListenAddress 127.0.0.1",
        f"HostKey {d / 'host_ed25519'}",
        f"PidFile {d / 'sshd.pid'}",
        f"AuthorizedKeysFile {d / 'authorized_keys'}",
        "StrictModes no",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "PermitRootLogin prohibit-password",
        "Subsystem sftp internal-sftp",
        *extra,
        "LogLevel ERROR",
    ]
    return "\n".join(lines) + "\n"


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


class SshdError(RuntimeError):
    """sshd is missing or did not start."""


@contextlib.contextmanager
def run_sshd(workdir: Path, extra: tuple[str, ...] = ()) -> Iterator[Sshd]:
    """A real ``sshd -D`` on 127.0.0.1 (free port) with its own host key, sshd_config,
    authorized_keys (a generated client key), StrictModes no, and a client known_hosts.
    ``extra``: more sshd_config lines (e.g. ``SetEnv`` for the sessions: the device's setup)."""
    if not os.access(SSHD, os.X_OK) or shutil.which("ssh-keygen") is None:
        raise SshdError(
            f"{SSHD} (openssh-server) is missing: the SSH tests need a real sshd. "
            "Run scripts/install-system-deps.sh (as root) once on this machine."
        )
    d = workdir
    d.mkdir(parents=True, exist_ok=True)
    host_key, client_key = d / "host_ed25519", d / "client_ed25519"
    keygen(host_key)
    keygen(client_key)
    (d / "authorized_keys").write_text((d / "client_ed25519.pub").read_text())
    port = free_port()
    config = d / "sshd_config"
    config.write_text(sshd_config(d, port, ["MaxSessions 50", "MaxStartups 50:30:100", *extra]))
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation dir
    log = open(d / "sshd.log", "wb")  # noqa: SIM115 - stays open while sshd runs
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=log, stderr=log)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                log.close()
                raise SshdError(
                    f"sshd did not start: {(d / 'sshd.log').read_text()[-2000:]}"
                ) from None
            time.sleep(0.05)
    host_pub = (d / "host_ed25519.pub").read_text().split()
    known_hosts = d / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
    user = getpass.getuser()
    ssh_config = d / "ssh_config"
    ssh_config.write_text(
        f"Host benchbox\n  HostName 127.0.0.1\n  Port {port}\n  User {user}\n"
        f"  IdentityFile {client_key}\n  UserKnownHostsFile {known_hosts}\n"
    )
    home = d / "home"
    (home / ".ssh").mkdir(parents=True, mode=0o700)
    shutil.copy(ssh_config, home / ".ssh" / "config")
    shutil.copy(known_hosts, home / ".ssh" / "known_hosts")
    try:
        yield Sshd(
            port=port,
            user=user,
            identity=client_key,
            known_hosts=known_hosts,
            host_pub=f"{host_pub[0]} {host_pub[1]}",
            ssh_config=ssh_config,
            home=home,
        )
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
