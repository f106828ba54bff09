"""Fixtures of the bench tests: a tiny converted model, packages, and a REAL sshd on loopback.

The sshd fixture starts ``/usr/sbin/sshd -D`` on 127.0.0.1 with its own host key, config,
authorized_keys and a known_hosts file for the client. Without sshd the tests FAIL (they are
never skipped): run scripts/install-system-deps.sh first.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from bench_helpers import Sshd, build_passthrough_delegate, convert_tiny, free_port, keygen

SSHD = "/usr/sbin/sshd"


@pytest.fixture(scope="session")
def tiny_tflite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return convert_tiny(tmp_path_factory.mktemp("model") / "tiny.tflite")


@pytest.fixture(scope="session")
def passthrough_delegate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_passthrough_delegate(tmp_path_factory.mktemp("delegate"))


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    if not os.access(SSHD, os.X_OK) or shutil.which("ssh-keygen") is None:
        pytest.fail(
            f"{SSHD} (openssh-server) is missing: the SSH tests need a real sshd. "
            "Run scripts/install-system-deps.sh (as root) once on this machine.",
            pytrace=False,
        )
    d = tmp_path_factory.mktemp("sshd")
    host_key, client_key = d / "host_ed25519", d / "client_ed25519"
    keygen(host_key)
    keygen(client_key)
    (d / "authorized_keys").write_text((d / "client_ed25519.pub").read_text())
    port = free_port()
    config = d / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {host_key}",
                f"PidFile {d / 'sshd.pid'}",
                f"AuthorizedKeysFile {d / 'authorized_keys'}",
                "StrictModes no",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                "PermitRootLogin prohibit-password",
                "Subsystem sftp internal-sftp",
                "MaxSessions 50",
                "MaxStartups 50:30:100",
                "LogLevel ERROR",
                "",
            ]
        )
    )
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
                pytest.fail(
                    f"sshd did not start: {(d / 'sshd.log').read_text()[-2000:]}", pytrace=False
                )
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
