"""SSH transport against a real sshd on 127.0.0.1 (see conftest.py)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from edgepack.bench.options import BenchOptions
from edgepack.bench.ssh import SshTransport, parse_address
from edgepack.errors import DeviceError, UsageError
from edgepack.manifest import sha256_file

pytestmark = pytest.mark.integration

FAST = BenchOptions(runs=7, warmup_runs=2, timeout_s=60)


def transport(sshd, **kw) -> SshTransport:
    kw.setdefault("known_hosts", sshd.known_hosts)
    kw.setdefault("identity", sshd.identity)
    kw.setdefault("ssh_config", None)
    kw.setdefault("python", sys.executable)  # the "device" Python: ours, with ai_edge_litert
    return SshTransport(sshd.address, **kw)


def test_bench_over_ssh_end_to_end(sshd, tiny_tflite: Path) -> None:
    t = transport(sshd)
    doc = t.run(tiny_tflite, FAST)
    assert doc["schema"] == "edgepack.bench/1"
    assert doc["stats"]["count"] == 7 == len(doc["latencies_ms"])
    assert 0 < doc["stats"]["min_ms"] <= doc["stats"]["p50_ms"] <= doc["stats"]["p90_ms"]
    assert doc["model"]["sha256"] == sha256_file(tiny_tflite)
    assert doc["model"]["bytes"] == tiny_tflite.stat().st_size
    assert doc["config"]["threads"] == 1 and doc["config"]["warmup_runs"] == 2
    assert doc["delegate"]["requested"] == "xnnpack"
    assert doc["delegate"]["total_nodes"] == 6 and doc["delegate"]["delegated_nodes"] == 6
    assert doc["errors"] == []
    # The remote temp dir existed (mktemp -d) and is gone afterwards.
    assert t.last_remote_dir is not None and t.last_remote_dir.startswith("/")
    assert not os.path.exists(t.last_remote_dir)
    assert t.cleanup_error is None
    assert t.device_identity() == {
        "name": sshd.address,
        "address": "127.0.0.1",
        "port": sshd.port,
        "user": sshd.user,
        "alias": None,
    }


def test_ssh_config_alias_is_honoured(sshd, tiny_tflite: Path) -> None:
    t = SshTransport("benchbox", ssh_config=sshd.ssh_config, python=sys.executable)
    assert (t.hostname, t.port, t.user) == ("127.0.0.1", sshd.port, sshd.user)
    assert t.identities == [str(sshd.identity)]
    assert t.known_hosts == sshd.known_hosts
    doc = t.run(tiny_tflite, BenchOptions(runs=3, warmup_runs=1))
    assert doc["stats"]["count"] == 3


HOSTILE = ['sp ace\'s "q".tflite', "$(touch PWNED).tflite", "a;rm -rf x;`touch PWNED2`.tflite"]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_file_names_execute_nothing(sshd, tiny_tflite: Path, tmp_path: Path, name):
    canary = tmp_path / "x"
    canary.mkdir()
    model = canary / name
    shutil.copy(tiny_tflite, model)
    inp = canary / ("in $(touch PWNED3);'.npy")
    import numpy as np

    np.save(inp, np.zeros((1, 3, 16, 16), np.float32))
    t = transport(sshd)
    doc = t.run(model, BenchOptions(runs=2, warmup_runs=1, input_file=inp))
    assert doc["model"]["sha256"] == sha256_file(tiny_tflite)
    assert doc["config"]["input"] == "file"
    # Nothing named PWNED* was created anywhere a shell would have run it.
    for where in (canary, Path.home(), Path("/tmp"), Path.cwd()):
        assert not list(where.glob("PWNED*")), where
    assert not os.path.exists(t.last_remote_dir)


def test_unknown_host_key_rejected_by_default_then_accepted_with_flag(
    sshd, tiny_tflite: Path, tmp_path: Path
) -> None:
    kh = tmp_path / "sub" / "known_hosts"
    with pytest.raises(DeviceError) as exc:
        transport(sshd, known_hosts=kh).run(tiny_tflite, FAST)
    assert "is not in" in exc.value.message and "SHA256:" in exc.value.message
    assert "--accept-new-host-key" in exc.value.hint
    assert exc.value.exit_code == 4
    assert not kh.exists()  # nothing recorded without the flag

    t = transport(sshd, known_hosts=kh, accept_new_host_key=True)
    doc = t.run(tiny_tflite, BenchOptions(runs=2, warmup_runs=0))
    assert doc["stats"]["count"] == 2
    assert t.host_key_recorded
    assert kh.read_text().strip() == f"[127.0.0.1]:{sshd.port} {sshd.host_pub}"
    # Known now: the default (rejecting) policy connects.
    t2 = transport(sshd, known_hosts=kh)
    assert t2.run(tiny_tflite, BenchOptions(runs=1, warmup_runs=0))["stats"]["count"] == 1
    assert not t2.host_key_recorded


def test_changed_host_key_is_refused_even_with_accept_flag(sshd, tiny_tflite, tmp_path):
    kh = tmp_path / "known_hosts"
    # A different (valid) ed25519 key recorded for this host:port.
    other = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
    kh.write_text(f"[127.0.0.1]:{sshd.port} ssh-ed25519 {other}\n")
    with pytest.raises(DeviceError) as exc:
        transport(sshd, known_hosts=kh, accept_new_host_key=True).run(tiny_tflite, FAST)
    assert "CHANGED" in exc.value.message
    assert "ssh-keygen" in exc.value.hint
    assert other in kh.read_text()


def test_wrong_port_is_a_device_error_with_hint(sshd, tiny_tflite) -> None:
    from bench_helpers import free_port

    port = free_port()  # nothing listens there
    t = SshTransport(f"{sshd.user}@127.0.0.1:{port}", identity=sshd.identity, ssh_config=None)
    with pytest.raises(DeviceError) as exc:
        t.run(tiny_tflite, FAST)
    assert exc.value.exit_code == 4
    assert f"127.0.0.1:{port}" in exc.value.message and "refused" in exc.value.message
    assert "port" in exc.value.hint


def test_wrong_key_is_an_authentication_error(sshd, tiny_tflite, tmp_path) -> None:
    import subprocess

    key = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    t = transport(sshd, identity=key)
    with pytest.raises(DeviceError) as exc:
        t.run(tiny_tflite, FAST)
    assert "authentication failed" in exc.value.message
    assert "--identity" in exc.value.hint


def test_failing_and_timed_out_runs_still_remove_the_remote_dir(sshd, tiny_tflite, tmp_path):
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(b"not a flatbuffer" * 8)
    t = transport(sshd)
    with pytest.raises(DeviceError) as exc:
        t.run(broken, FAST)
    assert "the benchmark failed on" in exc.value.message
    assert "broken.tflite" in exc.value.message
    assert t.last_remote_dir and not os.path.exists(t.last_remote_dir)

    t = transport(sshd)
    slow = BenchOptions(runs=10**9, warmup_runs=0, max_seconds=300, timeout_s=1.5)
    with pytest.raises(DeviceError) as exc:
        t.run(tiny_tflite, slow)
    assert "did not finish within 1.5 s" in exc.value.message
    assert t.last_remote_dir and not os.path.exists(t.last_remote_dir)
    assert _processes_mentioning(t.last_remote_dir) == []  # the harness was killed


def test_missing_numpy_on_the_device_says_what_to_install(sshd, tiny_tflite) -> None:
    # `python -S` has no site-packages: a device Python without numpy or any runtime.
    t = transport(sshd, python=f"{sys.executable} -S")
    with pytest.raises(DeviceError) as exc:
        t.run(tiny_tflite, FAST)
    assert "numpy is not installed" in exc.value.message
    assert exc.value.hint.startswith("on the device run: pip install")
    assert not os.path.exists(t.last_remote_dir)


def test_missing_runtime_on_the_device_says_what_to_install(sshd, tiny_tflite, tmp_path):
    import numpy

    # A device Python with numpy but no TFLite runtime: -S drops site-packages, PYTHONPATH
    # brings back only numpy (and its bundled libraries).
    site = tmp_path / "site"
    site.mkdir()
    src = Path(numpy.__file__).parent
    for p in src.parent.iterdir():
        if p.name == "numpy" or p.name.startswith("numpy.libs"):
            (site / p.name).symlink_to(p)
    t = transport(sshd, python=f"env PYTHONPATH={site} {sys.executable} -S")
    with pytest.raises(DeviceError) as exc:
        t.run(tiny_tflite, FAST)
    assert "no TFLite runtime" in exc.value.message
    assert exc.value.hint == "on the device run: pip install ai-edge-litert"
    assert not os.path.exists(t.last_remote_dir)


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("pi@raspberrypi.local", ("raspberrypi.local", "pi", None)),
        ("pi@10.0.0.7:2222", ("10.0.0.7", "pi", 2222)),
        ("board", ("board", None, None)),
        ("me@[::1]:22", ("::1", "me", 22)),
        ("::1", ("::1", None, None)),
    ],
)
def test_parse_address(text, want) -> None:
    a = parse_address(text)
    assert (a.host, a.user, a.port) == want


@pytest.mark.parametrize("bad", ["", "@host", "pi@host:99999", "pi@host:x", "pi@[::1"])
def test_parse_address_rejects(bad) -> None:
    with pytest.raises(UsageError):
        parse_address(bad)


def test_external_delegate_library_is_pushed_and_loaded(
    sshd, tiny_tflite: Path, passthrough_delegate: Path, tmp_path: Path
) -> None:
    lib = tmp_path / "lib $(touch PWNED4) delegate.so"
    shutil.copy(passthrough_delegate, lib)
    t = transport(sshd)
    doc = t.run(tiny_tflite, BenchOptions(runs=3, warmup_runs=1, delegate=str(lib)))
    d = doc["delegate"]
    assert (d["applied"], d["delegated_nodes"], d["total_nodes"]) == (True, 1, 6)
    # Loaded from the pushed copy inside the remote temp dir (removed afterwards).
    assert d["library"] == f"{t.last_remote_dir}/delegate-{lib.name}"
    assert not os.path.exists(t.last_remote_dir)
    assert not list(Path.home().glob("PWNED*")) and not list(tmp_path.glob("PWNED*"))


def test_missing_sshd_fails_naming_the_setup_script(tmp_path, monkeypatch) -> None:
    import bench_helpers

    monkeypatch.setattr(bench_helpers, "SSHD", str(tmp_path / "no-sshd"))
    with (
        pytest.raises(bench_helpers.SshdError, match=r"scripts/install-system-deps\.sh"),
        bench_helpers.run_sshd(tmp_path),
    ):
        pass


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline:
            found.append(int(proc.name))
    return found


def test_ctrl_c_kills_the_remote_harness_and_removes_the_dir(sshd, tiny_tflite) -> None:
    import signal
    import time

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    t = transport(sshd)
    old = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 2.5)  # the harness is in its measured loop by then
    try:
        with pytest.raises(KeyboardInterrupt):
            t.run(tiny_tflite, BenchOptions(runs=10**9, warmup_runs=0, max_seconds=300))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert t.last_remote_dir and not os.path.exists(t.last_remote_dir)
    deadline = time.monotonic() + 5
    while _processes_mentioning(t.last_remote_dir) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _processes_mentioning(t.last_remote_dir) == []
