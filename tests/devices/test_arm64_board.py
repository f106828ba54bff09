"""devices/edgepack_bench.py on an emulated aarch64 board, reached over SSH.

The board: an arm64 Debian userland with the aarch64 wheels of tflite-runtime 2.14 + numpy 1.x
(scripts/setup-arm64-board.sh), executed through qemu-user-static via binfmt_misc. The SSH
server is the host's real OpenSSH sshd, configured like the bench tests' sshd fixture
(tests/bench/conftest.py: own host key, authorized_keys, known_hosts) plus ChrootDirectory
into the rootfs. ChrootDirectory refuses paths under /tmp and the repo, so sshd runs in a
private mount namespace where the rootfs is bind-mounted at /mnt/board (with /dev, /proc,
/sys). The clients are the real `ssh`/`scp` with host key checking on, and edgepack's own SSH
transport (`edgepack bench PKG --host ...`, paramiko, host key checked against known_hosts).
Every command the session runs is aarch64 code: bash, python3, numpy, tflite_runtime, the
harness.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.bench.bench_helpers import SSHD, free_port, keygen, sshd_config

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
HARNESS = REPO / "devices" / "edgepack_bench.py"
MOUNT = "/mnt/board"
# In a private mount namespace: a root-owned tmpfs on /mnt, the rootfs bind-mounted below it
# (ChrootDirectory wants every path component root-owned and not group/world-writable).
SSHD_SCRIPT = (
    "set -e; mount -t tmpfs -o mode=755 edgepack-board /mnt; mkdir /mnt/board; "
    'mount --bind "$1" /mnt/board; mount --rbind /dev /mnt/board/dev; '
    "mount -t proc proc /mnt/board/proc; mount -t sysfs sysfs /mnt/board/sys; "
    'exec "$2" -D -e -f "$3"'
)


def _board_dir() -> Path:
    return Path(os.environ.get("EDGEPACK_ARM64_DIR", REPO / ".ci" / "work" / "arm64"))


def tiny_add_model(factory: pytest.TempPathFactory) -> Path:
    """One float ADD of two [1, 8] inputs, converted with litert-torch (cached per session)."""
    path = factory.getbasetemp() / "edgepack-tiny-add" / "add.tflite"
    if not path.is_file():
        import litert_torch
        import torch

        class Add(torch.nn.Module):
            def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
                return x + y

        path.parent.mkdir(exist_ok=True)
        example = (torch.zeros(1, 8), torch.zeros(1, 8))
        litert_torch.convert(Add().eval(), example).export(str(path))
    return path


@dataclass(frozen=True)
class Board:
    port: int
    identity: Path
    known_hosts: Path
    rootfs: Path

    def ssh_argv(self, program: str = "ssh") -> list[str]:
        port_flag = "-p" if program == "ssh" else "-P"
        return [
            program,
            port_flag,
            str(self.port),
            "-i",
            str(self.identity),
            "-o",
            f"UserKnownHostsFile={self.known_hosts}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
        ]

    def run(self, command: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.ssh_argv(), "root@127.0.0.1", command],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def put(self, local: Path, remote: str) -> None:
        subprocess.run(
            [*self.ssh_argv("scp"), "-q", str(local), f"root@127.0.0.1:{remote}"],
            check=True,
            capture_output=True,
            timeout=60,
        )


@pytest.fixture(scope="module")
def board(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Board]:
    work = _board_dir()
    if not (work / ".complete-v1").is_file():
        pytest.fail(
            f"the emulated aarch64 board is missing ({work / 'rootfs'}); run "
            "`sudo scripts/setup-arm64-board.sh` first (.ci/run does)",
            pytrace=False,
        )
    if not os.access(SSHD, os.X_OK) or shutil.which("ssh") is None:
        pytest.fail(
            "openssh-server/openssh-client are missing; run scripts/setup-arm64-board.sh",
            pytrace=False,
        )
    d = tmp_path_factory.mktemp("board-sshd")
    for key in ("host_ed25519", "client_ed25519"):
        keygen(d / key)
    (d / "authorized_keys").write_text((d / "client_ed25519.pub").read_text())
    port = free_port()
    config = d / "sshd_config"
    config.write_text(sshd_config(d, port, [f"ChrootDirectory {MOUNT}"]))
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation dir
    log = open(d / "sshd.log", "wb")  # noqa: SIM115 - stays open while sshd runs
    proc = subprocess.Popen(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            SSHD_SCRIPT,
            "sh",
            str(work / "rootfs"),
            SSHD,
            str(config),
        ],
        stdout=log,
        stderr=log,
    )
    deadline = time.monotonic() + 15
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                log.close()
                pytest.fail(
                    f"board sshd did not start: {(d / 'sshd.log').read_text()}", pytrace=False
                )
            time.sleep(0.05)
    kind, key = (d / "host_ed25519.pub").read_text().split()[:2]
    known_hosts = d / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {kind} {key}\n")
    try:
        yield Board(port, d / "client_ed25519", known_hosts, work / "rootfs")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_the_ssh_session_runs_aarch64_code(board: Board) -> None:
    r = board.run("uname -m; python3 -c 'import platform; print(platform.machine())'")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["aarch64", "aarch64"]


def test_harness_runs_as_aarch64_with_the_aarch64_runtime(
    board: Board, tmp_path_factory: pytest.TempPathFactory
) -> None:
    assert HARNESS.is_file(), f"{HARNESS} is missing (the device harness of this repo)"
    model = tiny_add_model(tmp_path_factory)
    mk = board.run("mktemp -d /tmp/edgepack-XXXXXX")
    assert mk.returncode == 0, mk.stderr
    remote = mk.stdout.strip()
    try:
        board.put(HARNESS, f"{remote}/edgepack_bench.py")
        board.put(model, f"{remote}/model.tflite")
        cmd = shlex.join(
            [
                "python3",
                f"{remote}/edgepack_bench.py",
                f"--graph={remote}/model.tflite",
                "--num_threads=1",
                "--warmup_runs=2",
                "--num_runs=5",
                "--delegate=xnnpack",
            ]
        )
        r = board.run(cmd)
    finally:
        board.run(shlex.join(["rm", "-rf", remote]))
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["schema"] == "edgepack.bench/1"
    assert doc["errors"] == []
    # aarch64 code with the aarch64 runtime, not the host's.
    assert doc["device"]["machine"] == "aarch64"
    assert doc["runtime"] == {"name": "tflite_runtime", "version": "2.14.0"}
    assert doc["device"]["numpy"].startswith("1.")
    assert doc["device"]["python"].startswith("3.11.")
    # The model the board ran is ours, byte for byte, and it was measured.
    assert doc["model"] == {
        "sha256": hashlib.sha256(model.read_bytes()).hexdigest(),
        "bytes": model.stat().st_size,
    }
    assert doc["stats"]["count"] == 5 and len(doc["latencies_ms"]) == 5
    assert all(x > 0 for x in doc["latencies_ms"])
    assert doc["delegate"]["total_nodes"] == 1
    # The session's temp dir is gone.
    assert board.run(shlex.join(["test", "-e", remote])).returncode == 1


def test_cli_bench_over_edgepacks_ssh_transport(
    board: Board,
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`edgepack bench PKG --host root@127.0.0.1 --port P --identity KEY`: edgepack's own SSH
    transport (paramiko, host key checked against ~/.ssh/known_hosts) pushes the harness and
    the model to the board and runs them there with the board's python3."""
    from edgepack.cli import main
    from tests.bench.bench_helpers import make_package

    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True, mode=0o700)
    shutil.copy(board.known_hosts, home / ".ssh" / "known_hosts")
    monkeypatch.setenv("HOME", str(home))
    model = tiny_add_model(tmp_path_factory)
    pkg = make_package(tmp_path, model, "rpi4", name="add")
    argv = [
        "bench",
        str(pkg),
        "--host",
        "root@127.0.0.1",
        "--port",
        str(board.port),
        "--identity",
        str(board.identity),
        "--runs",
        "5",
        "--warmup-runs",
        "1",
        "--timeout",
        "300",
        "--json",
    ]
    before = sorted((board.rootfs / "tmp").iterdir())
    code = main(argv)
    out = capsys.readouterr()
    assert code == 0, out.err
    printed = json.loads(out.out)
    saved = Path(printed["saved_to"])
    assert saved.parent == pkg / "bench"  # the package got the result
    doc = json.loads(saved.read_text())
    assert doc["transport"] == "ssh" and doc["target"] == "rpi4"
    assert doc["device"]["address"] == "127.0.0.1" and doc["device"]["port"] == board.port
    h = doc["harness"]
    assert h == printed["harness"]
    assert h["errors"] == []
    assert h["device"]["machine"] == "aarch64"  # ran on the board, not on this host
    assert h["runtime"]["name"] == "tflite_runtime"
    assert h["model"]["sha256"] == hashlib.sha256(model.read_bytes()).hexdigest()
    assert h["stats"]["count"] == 5 and len(h["latencies_ms"]) == 5
    assert all(x > 0 for x in h["latencies_ms"])
    # The transport cleaned up its temp dir on the board (mktemp -d: /tmp/tmp.XXXXXXXXXX).
    assert sorted((board.rootfs / "tmp").iterdir()) == before

    # A board whose host key is not in known_hosts is refused before anything runs.
    (home / ".ssh" / "known_hosts").write_text("")
    assert main(argv) == 4
    err = capsys.readouterr().err
    assert f"the host key of root@127.0.0.1:{board.port} is not in " in err
    assert "--accept-new-host-key" in err
