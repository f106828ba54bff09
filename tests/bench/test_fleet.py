"""Fleets: devices.toml, target filtering, concurrent runs against the real sshd."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from bench_helpers import free_port, make_package

from edgepack.bench.fleet import load_fleet, select_devices
from edgepack.cli import main
from edgepack.errors import UsageError


def write_fleet(path: Path, sshd, dead_port: int) -> Path:
    entries = []
    for name in ("pi-a", "pi-b", "pi-c"):
        entries.append(
            f'[[device]]\nname = "{name}"\ntarget = "rpi4"\ntransport = "ssh"\n'
            f'address = "{sshd.user}@127.0.0.1"\nport = {sshd.port}\n'
            f'identity = "{sshd.identity}"\npython = "{sys.executable}"\n'
        )
    entries.append(
        f'[[device]]\nname = "pi-dead"\ntarget = "rpi4"\ntransport = "ssh"\n'
        f'address = "{sshd.user}@127.0.0.1:{dead_port}"\nidentity = "{sshd.identity}"\n'
    )
    entries.append(  # another target: not benchmarked with an rpi4 package
        '[[device]]\nname = "phone"\ntarget = "android-arm64"\ntransport = "adb"\n'
        'serial = "R58M12345"\n'
    )
    path.write_text("\n".join(entries))
    return path


@pytest.mark.integration
def test_fleet_three_ok_one_unreachable(sshd, tiny_tflite, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HOME", str(sshd.home))  # known_hosts of the test sshd
    pkg = make_package(tmp_path, tiny_tflite, "rpi4")
    fleet = write_fleet(tmp_path / "devices.toml", sshd, free_port())
    code = main(
        ["bench", str(pkg), "--fleet", str(fleet), "--runs", "4", "--warmup-runs", "1", "--json"]
    )
    out = capsys.readouterr()
    assert code == 4
    doc = json.loads(out.out)
    assert sorted(r["device"]["name"] for r in doc["results"]) == ["pi-a", "pi-b", "pi-c"]
    assert all(r["harness"]["stats"]["count"] == 4 for r in doc["results"])
    assert [f["device"] for f in doc["failures"]] == ["pi-dead"]
    assert "connection refused" in doc["failures"][0]["error"]
    assert "error: 1 of 4 devices failed: pi-dead" in out.err
    saved = sorted(p.name.split("-2026")[0] for p in (pkg / "bench").glob("*.json"))
    assert len(saved) == 3 and all(s.startswith("rpi4-ssh-pi-") for s in saved)


def test_fleet_file_validation(tmp_path) -> None:
    p = tmp_path / "f.toml"
    p.write_text(
        '[[device]]\nname = "a"\ntarget = "rpi4"\ntransport = "ssh"\n'
        '[[device]]\nname = "a"\ntarget = "rpi4"\ntransport = "telnet"\naddress = "x"\n'
        'colour = "red"\n'
    )
    with pytest.raises(UsageError) as exc:
        load_fleet(p)
    msg = exc.value.message
    assert "an ssh device needs an address" in msg
    assert "transport" in msg and "colour" in msg and "duplicate device names: a" in msg


def test_fleet_without_matching_target(tmp_path) -> None:
    p = tmp_path / "f.toml"
    p.write_text('[[device]]\nname = "a"\ntarget = "rpi5"\ntransport = "ssh"\naddress = "h"\n')
    with pytest.raises(UsageError, match=r"no device in f\.toml has target 'rpi4'"):
        select_devices(load_fleet(p), "rpi4", "f.toml")


@pytest.mark.integration
def test_ctrl_c_cancels_every_device_and_cleans_up(sshd, tiny_tflite) -> None:
    import os
    import signal
    import time

    from edgepack.bench.fleet import FleetDevice, run_fleet
    from edgepack.bench.options import BenchOptions
    from edgepack.bench.ssh import SshTransport

    made: list[SshTransport] = []

    def transport(d: FleetDevice) -> SshTransport:
        t = SshTransport(
            str(d.address),
            identity=sshd.identity,
            known_hosts=sshd.known_hosts,
            ssh_config=None,
            python=sys.executable,
            name=d.name,
        )
        made.append(t)
        return t

    devices = [
        FleetDevice(name=f"d{i}", target="rpi4", transport="ssh", address=sshd.address)
        for i in range(2)
    ]

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 3.0)
    t0 = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            run_fleet(
                devices,
                transport,
                tiny_tflite,
                BenchOptions(runs=10**9, warmup_runs=0, max_seconds=300, timeout_s=300),
            )
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert time.monotonic() - t0 < 15  # not the 300 s the runs were allowed
    assert len(made) == 2
    for t in made:
        assert t.last_remote_dir and not os.path.exists(t.last_remote_dir)
