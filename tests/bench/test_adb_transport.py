"""The adb transport end to end against a real adb peer.

The peer: Debian's adbd (bookworm-backports) running in an arm64 Debian rootfs through
qemu-user (scripts/setup-adbd.sh builds it), reached over TCP with the host's real `adb`
client and its own adb server. Real: the adb protocol, device selection, `adb shell` with exit
codes, `adb push`, getprop-based identity and ABI check (getprop itself is a stand-in script
in the rootfs: there is no Android system here), taskset pinning, clean-up.

WHERE THE BOUNDARY IS: no Android `benchmark_model` binary can exist on this machine, so the
"benchmark_model" pushed here is a small shell script written by the test. It honours --graph
(fails like the tool when the file is missing), records its argv, CPU affinity and the sha256
of the graph it was given, and prints a REAL recorded output of TFLite's benchmark_model
(tests/bench/fixtures/benchmark_model/). Everything on the host side of that script is the
production code path.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from bench_helpers import free_port

from edgepack.bench.adb import AdbTransport
from edgepack.bench.options import BenchOptions
from edgepack.errors import DeviceError

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).parent / "fixtures" / "benchmark_model"
# adbd in a private mount namespace: the rootfs gets /dev, /proc and /sys, then chroot.
ADBD_SCRIPT = (
    'mount --rbind /dev "$1/dev" && mount -t proc proc "$1/proc" && '
    'mount -t sysfs sysfs "$1/sys" && exec chroot "$1" env ADBD_PORT="$2" "$3"'
)


def _sysfs_cpus() -> list[int]:
    """CPU ids under /sys/devices/system/cpu (the adbd stand-in mounts the host's sysfs)."""
    return sorted(int(p.name[3:]) for p in Path("/sys/devices/system/cpu").glob("cpu[0-9]*"))


def elf_header(path: Path, machine: int) -> Path:
    """The first 20 bytes of an ELF64 little-endian executable with e_machine ``machine``."""
    head = b"\x7fELF\x02\x01\x01" + b"\x00" * 9 + b"\x02\x00" + machine.to_bytes(2, "little")
    path.write_bytes(head + b"\x00" * 44)
    path.chmod(0o755)
    return path


def _adbd_dir() -> Path:
    return Path(os.environ.get("EDGEPACK_ADBD_DIR", REPO / ".ci" / "work" / "adbd"))


def _adb(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["adb", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


class AdbPeers:
    def __init__(self, rootfs: Path, serials: list[str]) -> None:
        self.rootfs = rootfs
        self.serials = serials

    @property
    def serial(self) -> str:
        return self.serials[0]

    def cat(self, remote: str) -> str:
        return _adb("-s", self.serial, "shell", "cat " + shlex.quote(remote)).stdout


@pytest.fixture(scope="module")
def adbd() -> Iterator[AdbPeers]:
    work = _adbd_dir()
    rootfs = work / "rootfs"
    if not (work / ".complete-v2").is_file() or shutil.which("adb") is None:
        pytest.fail(
            f"the adbd stand-in is missing ({rootfs}); run `sudo scripts/setup-adbd.sh` first "
            "(.ci/run does)",
            pytrace=False,
        )
    adbd_bin = (work / "adbd-path").read_text().strip()
    procs: list[subprocess.Popen[bytes]] = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ANDROID_ADB_SERVER_PORT", str(free_port()))  # our own adb server
        mp.delenv("ANDROID_SERIAL", raising=False)
        serials = []
        try:
            for _ in range(2):  # two devices: selection without --serial must refuse
                port = free_port()
                procs.append(
                    subprocess.Popen(
                        [
                            "unshare",
                            "--mount",
                            "--propagation",
                            "private",
                            "sh",
                            "-c",
                            ADBD_SCRIPT,
                            "sh",
                            str(rootfs),
                            str(port),
                            adbd_bin,
                        ],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                        start_new_session=True,
                    )
                )
                serial = f"127.0.0.1:{port}"
                deadline = time.monotonic() + 20
                while True:
                    out = _adb("connect", serial).stdout
                    if "connected to" in out and "127.0.0.1" in out:
                        state = _adb("-s", serial, "get-state").stdout.strip()
                        if state == "device":
                            break
                    if time.monotonic() > deadline:
                        pytest.fail(f"adbd on {serial} did not come up: {out}", pytrace=False)
                    time.sleep(0.2)
                serials.append(serial)
            yield AdbPeers(rootfs, serials)
        finally:
            _adb("kill-server")
            for p in procs:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGTERM)
                p.wait(timeout=10)


def standin(tmp_path: Path, fixture: str, log: str, exit_code: int = 0, sleep_s: int = 0) -> Path:
    """A stand-in "benchmark_model" script: see the module docstring."""
    text = (FIXTURES / fixture).read_text(encoding="utf-8")
    assert "EDGEPACK_EOF" not in text
    script = tmp_path / "benchmark_model"
    script.write_text(
        "#!/bin/sh\n"
        "# edgepack TEST STAND-IN for TFLite's benchmark_model (not the real tool).\n"
        'graph=""\n'
        'for a in "$@"; do case "$a" in --graph=*) graph="${a#--graph=}";; esac; done\n'
        f"log={shlex.quote(log)}\n"
        '{ echo "argv: $*"; echo "pid: $$"; grep Cpus_allowed_list /proc/self/status;'
        ' echo "cwd: $(pwd)"; [ -f "$graph" ] && sha256sum "$graph"; } > "$log"\n'
        'if [ ! -f "$graph" ]; then\n'
        "  echo \"ERROR: Could not open '$graph'.\"\n"
        '  echo "Benchmarking failed."\n'
        "  exit 1\n"
        "fi\n"
        # A hung benchmark: one process that never prints (exec keeps the pid).
        + (f"exec sleep {sleep_s}\n" if sleep_s else "")
        + "cat <<'EDGEPACK_EOF'\n"
        + text
        + "EDGEPACK_EOF\n"
        f"exit {exit_code}\n"
    )
    script.chmod(0o755)
    return script


@pytest.fixture
def model(tmp_path: Path) -> Path:
    # The stand-in never interprets the model; its bytes only have to arrive intact.
    path = tmp_path / "model.tflite"
    path.write_bytes(bytes(range(256)) * 8)
    return path


def test_run_end_to_end(adbd: AdbPeers, tmp_path: Path, model: Path) -> None:
    log = f"/data/local/tmp/standin-{os.getpid()}-{tmp_path.name}.log"
    binary = standin(tmp_path, "android-info-gpu-nnapi-percentiles.txt", log)
    t = AdbTransport(serial=adbd.serial, benchmark_binary=binary)
    opts = BenchOptions(threads=2, warmup_runs=1, runs=50, delegate="gpu", pin_cores=(0,))
    doc = t.run(model, opts)

    # Parsed from the real recorded output, exact numbers.
    assert doc["schema"] == "edgepack.bench/1"
    assert doc["stats"]["count"] == 50 and doc["stats"]["mean_ms"] == 309.35
    assert doc["stats"]["p50_ms"] == 307.968 and doc["init_ms"] == 5664.363
    assert doc["delegate"]["applied"] is True and doc["delegate"]["delegated_nodes"] == 49
    # Host-side facts: the pushed model and the device.
    assert doc["model"]["bytes"] == 2048
    assert doc["device"]["machine"] == "aarch64"
    assert doc["device"]["abi"] == "arm64-v8a"
    assert doc["device"]["os"] == "Android 14 (SDK 34)"
    assert doc["device"]["cpu_model"] == "qemu-aarch64"
    # The stand-in's sysfs is this machine's: the same CPU directories the device script counts.
    assert doc["device"]["cores"] == len(_sysfs_cpus())

    # What the device actually ran: flags, pinning, the model bytes, the temp dir.
    ran = adbd.cat(log)
    argv = next(line for line in ran.splitlines() if line.startswith("argv: ")).split()[1:]
    remote_dir = next(line for line in ran.splitlines() if line.startswith("cwd: ")).split()[1]
    assert remote_dir.startswith("/data/local/tmp/edgepack-")
    assert argv == [
        f"--graph={remote_dir}/model.tflite",
        "--num_threads=2",
        "--warmup_runs=1",
        "--num_runs=50",
        "--min_secs=0",
        "--max_secs=60",
        "--use_xnnpack=false",
        "--use_gpu=true",
    ]
    assert "Cpus_allowed_list:\t0\n" in ran  # taskset 1
    assert t.shell("sha256sum /dev/null")[0] == 0
    import hashlib

    assert hashlib.sha256(model.read_bytes()).hexdigest() in ran
    # Clean-up: the temp dir is gone.
    status, _ = t.shell(f"test -e {remote_dir}")
    assert status == 1
    t.shell(f"rm -f {log}")


def test_timeout_stops_the_benchmark_and_cleans_up(
    adbd: AdbPeers, tmp_path: Path, model: Path
) -> None:
    log = f"/data/local/tmp/standin-{os.getpid()}-{tmp_path.name}.log"
    binary = standin(tmp_path, "tf2.4-android-cpu.txt", log, sleep_s=120)
    t = AdbTransport(serial=adbd.serial, benchmark_binary=binary)
    start = time.monotonic()
    with pytest.raises(DeviceError) as err:
        t.run(model, BenchOptions(runs=5, timeout_s=4))
    assert time.monotonic() - start < 30
    assert err.value.message == (
        f"benchmark_model did not finish within 4 s on {adbd.serial} (stopped)"
    )
    lines = adbd.cat(log).splitlines()
    pid = next(line.split()[1] for line in lines if line.startswith("pid: "))
    remote_dir = next(line.split()[1] for line in lines if line.startswith("cwd: "))
    # The hung "benchmark" was killed: gone, or a zombie (the stand-in's pid 1 never reaps).
    state = t.shell(f"grep ^State /proc/{pid}/status 2>/dev/null")[1].strip()
    assert state in ("", "State:\tZ (zombie)"), state
    assert t.shell(f"test -e {remote_dir}")[0] == 1
    t.shell(f"rm -f {log}")


def test_external_delegate_with_a_hostile_name_is_pushed_and_passed_literally(
    adbd: AdbPeers, tmp_path: Path, model: Path
) -> None:
    log = f"/data/local/tmp/standin-{os.getpid()}-{tmp_path.name}.log"
    binary = standin(tmp_path, "android-info-xnnpack-percentiles.txt", log)
    lib = tmp_path / "lib$(touch HACKED); x'y.so"
    lib.write_bytes(b"not really a delegate")
    t = AdbTransport(serial=adbd.serial, benchmark_binary=binary)
    doc = t.run(model, BenchOptions(runs=50, delegate=str(lib)))
    assert doc["delegate"]["requested"] == str(lib)
    assert doc["delegate"]["applied"] is None  # the recorded output says nothing about it
    ran = adbd.cat(log)
    remote_dir = next(line.split()[1] for line in ran.splitlines() if line.startswith("cwd: "))
    assert f"--external_delegate_path={remote_dir}/{lib.name}" in ran
    assert "--use_xnnpack=false" in ran
    assert t.shell("ls /data/local/tmp | grep -c HACKED; ls / | grep -c HACKED")[1].split() == [
        "0",
        "0",
    ]
    t.shell(f"rm -f {log}")


def test_identity_from_getprop(adbd: AdbPeers) -> None:
    ident = AdbTransport(serial=adbd.serial).device_identity()
    assert ident == {
        "serial": adbd.serial,
        "model": "edgepack adbd stand-in",
        "manufacturer": "Debian",
        "android_release": "14",
        "sdk": "34",
        "soc": "qemu-aarch64",
        "abi": "arm64-v8a",
    }


def test_push_replaces_a_same_size_file(adbd: AdbPeers, tmp_path: Path) -> None:
    t = AdbTransport(serial=adbd.serial)
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(b"A" * 4096)
    b.write_bytes(b"B" * 4096)
    os.utime(b, (a.stat().st_atime, a.stat().st_mtime))  # same size AND same mtime
    remote = f"/data/local/tmp/push-{os.getpid()}-{tmp_path.name}.bin"
    t.push(a, remote)
    assert adbd.cat(remote) == "A" * 4096
    t.push(b, remote)
    assert adbd.cat(remote) == "B" * 4096
    t.shell(f"rm -f {remote}")


def test_unknown_serial_lists_connected_devices(adbd: AdbPeers, model: Path) -> None:
    t = AdbTransport(serial="R58M00000", benchmark_binary=Path(shutil.which("true") or ""))
    with pytest.raises(DeviceError) as err:
        t.device_identity()
    msg = err.value.message
    assert msg.startswith("no adb device with serial 'R58M00000' (connected: ")
    for s in adbd.serials:
        assert f"{s} (device)" in msg
    assert "--serial" in err.value.hint


def test_several_devices_and_no_serial_is_an_error(adbd: AdbPeers) -> None:
    with pytest.raises(DeviceError) as err:
        AdbTransport().device_identity()
    assert err.value.message == f"2 adb devices are connected: {', '.join(sorted(adbd.serials))}"
    assert err.value.hint == "choose one with --serial SERIAL"


def test_binary_for_another_abi_is_refused_before_any_push(
    adbd: AdbPeers, tmp_path: Path, model: Path
) -> None:
    # A benchmark_model built for x86-64 (EM_X86_64 = 62), whatever this host runs.
    binary = elf_header(tmp_path / "benchmark_model", 62)
    t = AdbTransport(serial=adbd.serial, benchmark_binary=binary)
    before = t.shell("ls /data/local/tmp")[1]
    with pytest.raises(DeviceError) as err:
        t.run(model, BenchOptions())
    assert err.value.message == (
        f"benchmark_model is built for x86_64, device {adbd.serial} runs arm64-v8a"
    )
    assert t.shell("ls /data/local/tmp")[1] == before
    # And a device of another ABI than the target's is refused too.
    other = AdbTransport(serial=adbd.serial, benchmark_binary=binary, expected_abi="armeabi-v7a")
    with pytest.raises(DeviceError, match="the target expects armeabi-v7a"):
        other.run(model, BenchOptions())


def test_failed_benchmark_reports_the_tool_errors_and_cleans_up(
    adbd: AdbPeers, tmp_path: Path, model: Path
) -> None:
    log = f"/data/local/tmp/standin-{os.getpid()}-{tmp_path.name}.log"
    binary = standin(tmp_path, "android-xnnpack-failed.txt", log, exit_code=1)
    t = AdbTransport(serial=adbd.serial, benchmark_binary=binary)
    with pytest.raises(DeviceError) as err:
        t.run(model, BenchOptions(runs=5))
    assert err.value.message == (
        f"benchmark_model failed on {adbd.serial} (exit 1): "
        "Failed to apply XNNPACK delegate.; Benchmarking failed."
    )
    remote_dir = next(
        line.split()[1] for line in adbd.cat(log).splitlines() if line.startswith("cwd: ")
    )
    assert t.shell(f"test -e {remote_dir}")[0] == 1
    t.shell(f"rm -f {log}")


# ---------------------------------------------------------------------------- the CLI
# `edgepack bench ... --serial` goes through bench-ssh's command and plan to AdbTransport.


def _standin_profile(tmp_path: Path, big_cores: list[int] | None = None) -> Path:
    """android-arm64 pinned to ``big_cores`` (default [0]: the stand-in machine has this
    host's CPUs, however many, a phone 8)."""
    cores = big_cores if big_cores is not None else [0]
    text = (REPO / "targets" / "android-arm64.toml").read_text(encoding="utf-8")
    text = text.replace('name = "android-arm64"', 'name = "android-standin"')
    text = text.replace("big_cores = [4, 5, 6, 7]", f"big_cores = {cores}")
    assert f"big_cores = {cores}" in text and "android-standin" in text
    path = tmp_path / "android-standin.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_cli_bench_over_adb(
    adbd: AdbPeers, tmp_path: Path, model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from edgepack.cli import main

    log = f"/data/local/tmp/standin-{os.getpid()}-{tmp_path.name}.log"
    binary = standin(tmp_path, "android-info-xnnpack-percentiles.txt", log)
    code = main(
        [
            "bench",
            str(model),
            "--target",
            str(_standin_profile(tmp_path)),
            "--serial",
            adbd.serial,
            "--benchmark-binary",
            str(binary),
            "--runs",
            "50",
            "--json",
        ]
    )
    out = capsys.readouterr()
    assert code == 0, out.err
    result = json.loads(out.out)
    assert result["transport"] == "adb"
    assert result["target"] == "android-standin"
    assert result["device"]["serial"] == adbd.serial
    assert result["device"]["abi"] == "arm64-v8a"
    h = result["harness"]
    assert h["tool"]["name"] == "benchmark_model"
    assert (h["stats"]["count"], h["stats"]["mean_ms"], h["stats"]["p50_ms"]) == (
        50,
        699.438,
        576.856,
    )
    assert h["delegate"]["delegated_nodes"] == 49
    assert h["config"]["threads"] == 4 and h["config"]["pin_cores"] == [0]
    saved = Path(result["saved_to"])
    assert saved.is_file() and json.loads(saved.read_text())["harness"] == h
    ran = adbd.cat(log)
    assert "--num_threads=4" in ran and "--use_xnnpack=true" in ran
    assert "Cpus_allowed_list:\t0\n" in ran
    _adb("-s", adbd.serial, "shell", "rm -f " + shlex.quote(log))


def test_cli_bench_over_adb_errors(
    adbd: AdbPeers, tmp_path: Path, model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from edgepack.cli import main

    # A profile pinned to a CPU the stand-in cannot have (one past the highest CPU id of this
    # machine): taskset refuses, benchmark_model never starts, and the CLI says so (exit 4).
    binary = standin(tmp_path, "android-info-xnnpack-percentiles.txt", "/dev/null")
    missing_cpu = _sysfs_cpus()[-1] + 1
    code = main(
        [
            "bench",
            str(model),
            "--target",
            str(_standin_profile(tmp_path, [missing_cpu])),
            "--serial",
            adbd.serial,
            "--benchmark-binary",
            str(binary),
            "--no-save",
        ]
    )
    err = capsys.readouterr().err
    assert code == 4
    assert f"error: benchmark_model failed on {adbd.serial} (exit 1): taskset: " in err
    assert "hint: run the same command by hand with `adb shell`" in err

    code = main(
        [
            "bench",
            str(model),
            "--target",
            "android-arm64",
            "--serial",
            "nosuchphone",
            "--benchmark-binary",
            str(binary),
            "--no-save",
        ]
    )
    err = capsys.readouterr().err
    assert code == 4
    assert "error: no adb device with serial 'nosuchphone' (connected: " in err
