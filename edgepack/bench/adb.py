"""adb transport: TFLite's ``benchmark_model`` on an Android device over the real adb client.

Per run: pick the device (by serial), check its ABI and the binary's ELF machine, make a fresh
``/data/local/tmp/edgepack-<random>``, push the model and the binary there (always: a plain
``adb push``, never ``--sync``, and the pushed bytes are verified by sha256), run the binary
pinned to the requested cores with ``taskset``, parse its output into an ``edgepack.bench/1``
document, and remove the directory in ``finally``.

Every adb call is an argv list. What ``adb shell`` runs on the device is one string built
with :func:`shlex.quote` around every part that is not a constant of this module.
"""

from __future__ import annotations

import os
import secrets
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

from edgepack.bench.benchmark_model import (
    benchmark_flags,
    core_mask,
    harness_document,
    parse_benchmark_output,
)
from edgepack.bench.options import BenchOptions, Delegate, is_delegate_path
from edgepack.errors import DeviceError
from edgepack.manifest import sha256_file

BENCHMARK_ENV = "EDGEPACK_BENCHMARK_MODEL"
REMOTE_BASE = "/data/local/tmp"
EXPECTED_ABI = "arm64-v8a"
GET_BINARY_HINT = (
    "pass --benchmark-binary PATH or set EDGEPACK_BENCHMARK_MODEL; get TFLite's prebuilt "
    "nightly benchmark_model for android_aarch64 (linked from the LiteRT/TensorFlow Lite "
    "'performance measurement' docs) or build it with bazel: "
    "bazel build -c opt --config=android_arm64 //tensorflow/lite/tools/benchmark:benchmark_model"
)
# ELF e_machine -> Android ABI name.
ELF_MACHINES = {183: "arm64-v8a", 40: "armeabi-v7a", 62: "x86_64", 3: "x86"}
_RC_MARK = "__EDGEPACK_RC="
# Runs "$@" with the shell's pid written to "$1" first, so a run that times out can be killed.
_PIDFILE_EXEC = 'echo $$ > "$1"; shift; exec "$@"'
# Device facts in one round trip; "$1" is the CPU whose governor/frequency we report.
_FACTS_SCRIPT = (
    'echo "machine=$(uname -m)"; '
    'echo "cores=$(ls -d /sys/devices/system/cpu/cpu[0-9]* 2>/dev/null | wc -l)"; '
    'echo "governor=$(cat /sys/devices/system/cpu/$1/cpufreq/scaling_governor 2>/dev/null)"; '
    'echo "freq_khz=$(cat /sys/devices/system/cpu/$1/cpufreq/scaling_cur_freq 2>/dev/null)"; '
    'echo "kernel=$(uname -r)"'
)
_THERMAL_SCRIPT = (
    "for z in /sys/class/thermal/thermal_zone*; do "
    '[ -r "$z/temp" ] || continue; '
    't=$(cat "$z/temp" 2>/dev/null) || continue; '
    'n=$(cat "$z/type" 2>/dev/null); echo "${n:-${z##*/}}=$t"; done'
)
_PROPS = (
    "ro.product.model",
    "ro.product.manufacturer",
    "ro.build.version.release",
    "ro.build.version.sdk",
    "ro.soc.model",
    "ro.product.cpu.abi",
    "ro.product.cpu.abilist",
)


def elf_abi(path: Path) -> str | None:
    """The Android ABI an ELF executable was built for; None when ``path`` is not ELF."""
    with open(path, "rb") as f:
        head = f.read(20)
    if len(head) < 20 or head[:4] != b"\x7fELF":
        return None
    machine = int.from_bytes(head[18:20], "little" if head[5] == 1 else "big")
    return ELF_MACHINES.get(machine, f"elf-machine-{machine}")


def _q(*parts: str) -> str:
    return " ".join(shlex.quote(p) for p in parts)


def parse_devices(text: str) -> dict[str, str]:
    """``adb devices`` output -> {serial: state} (device, offline, unauthorized, ...)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("List of devices", "*")):
            continue
        parts = line.split()
        if len(parts) >= 2:
            out[parts[0]] = parts[1]
    return out


class _AdbTimeout(DeviceError):
    """An adb command outlived its timeout (the adb client was killed)."""


class AdbTransport:
    """Benchmarks with ``benchmark_model`` on one Android device through the adb client."""

    kind = "adb"

    def __init__(
        self,
        serial: str | None = None,
        benchmark_binary: Path | str | None = None,
        adb_path: str | None = None,
        expected_abi: str = EXPECTED_ABI,
    ) -> None:
        self.requested_serial = serial or os.environ.get("ANDROID_SERIAL") or None
        self.benchmark_binary = benchmark_binary
        self.adb_path = adb_path
        self.expected_abi = expected_abi
        self._serial: str | None = None
        self._props: dict[str, str] | None = None

    # ------------------------------------------------------------------ adb plumbing

    def _adb(self) -> str:
        exe = self.adb_path or shutil.which("adb")
        if not exe or not (Path(exe).is_file() or shutil.which(exe)):
            raise DeviceError(
                f"the adb client was not found{f' at {self.adb_path}' if self.adb_path else ''}",
                hint="install Android platform-tools (Debian/Ubuntu: apt install adb) or pass "
                "--adb PATH",
            )
        return exe

    def _call(
        self, args: list[str], *, timeout: float = 60.0, device: bool = True
    ) -> subprocess.CompletedProcess[str]:
        argv = [self._adb()]
        if device:
            argv += ["-s", self.serial]
        argv += args
        try:
            return subprocess.run(
                argv,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
                stdin=subprocess.DEVNULL,
                errors="replace",
            )
        except subprocess.TimeoutExpired as exc:
            raise _AdbTimeout(
                f"adb {args[0]} did not finish within {timeout:g} s",
                hint="check the device (adb devices) or raise --timeout",
            ) from exc
        except OSError as exc:
            raise DeviceError(
                f"cannot run the adb client: {exc}", hint="check --adb or your PATH"
            ) from exc

    def shell(self, command: str, *, timeout: float = 60.0) -> tuple[int, str]:
        """Run one device shell command line; returns (exit status, stdout+stderr).

        The status comes from a marker echoed after the command, so it is right even with
        adbd versions whose ``adb shell`` always exits 0.
        """
        proc = self._call(["shell", f"{command}; echo {_RC_MARK}$?"], timeout=timeout)
        text = proc.stdout + proc.stderr
        head, sep, tail = text.rpartition(_RC_MARK)
        if not sep:
            raise DeviceError(
                f"adb shell on {self.serial} failed: {text.strip() or f'exit {proc.returncode}'}",
                hint="check that the device is connected and authorized (adb devices)",
            )
        try:
            status = int(tail.split()[0])
        except (IndexError, ValueError):
            status = 255
        return status, head

    def push(self, local: Path, remote: str, *, timeout: float = 600.0) -> None:
        """``adb push`` (never ``--sync``: a same-size file is still replaced), then check the
        sha256 of what the device holds."""
        proc = self._call(["push", str(local), remote], timeout=timeout)
        if proc.returncode != 0:
            raise DeviceError(
                f"adb push of {local.name} to {self.serial} failed: "
                f"{(proc.stderr or proc.stdout).strip()}",
                hint="check free space in /data/local/tmp on the device",
            )
        status, out = self.shell(_q("sha256sum", remote))
        if status == 0 and out.split():
            remote_sha = out.split()[0]
            if remote_sha != sha256_file(local):
                raise DeviceError(
                    f"{remote} on {self.serial} does not match {local.name} after adb push",
                    hint="the device storage may be full or failing; retry the benchmark",
                )

    # ------------------------------------------------------------------ device selection

    def connected(self) -> dict[str, str]:
        proc = self._call(["devices"], device=False)
        if proc.returncode != 0:
            raise DeviceError(
                f"adb devices failed: {(proc.stderr or proc.stdout).strip()}",
                hint="start the adb server (adb start-server) and retry",
            )
        return parse_devices(proc.stdout)

    @property
    def serial(self) -> str:
        if self._serial is None:
            self._serial = self._select()
        return self._serial

    def _select(self) -> str:
        devices = self.connected()
        listing = ", ".join(f"{s} ({st})" for s, st in devices.items()) or "none"
        if self.requested_serial is not None:
            state = devices.get(self.requested_serial)
            if state is None:
                raise DeviceError(
                    f"no adb device with serial '{self.requested_serial}' (connected: {listing})",
                    hint="pick one of the connected serials with --serial; for a device over "
                    "TCP run `adb connect HOST:PORT` first",
                )
            if state != "device":
                raise DeviceError(
                    f"adb device '{self.requested_serial}' is {state}",
                    hint="unlock the phone and accept the USB debugging prompt"
                    if state == "unauthorized"
                    else "reconnect the device and check `adb devices`",
                )
            return self.requested_serial
        ready = sorted(s for s, st in devices.items() if st == "device")
        if not ready:
            raise DeviceError(
                f"no adb device is connected (adb devices: {listing})",
                hint="connect a phone with USB debugging on, or `adb connect HOST:PORT`",
            )
        if len(ready) > 1:
            raise DeviceError(
                f"{len(ready)} adb devices are connected: {', '.join(ready)}",
                hint="choose one with --serial SERIAL",
            )
        return ready[0]

    # ------------------------------------------------------------------ identity

    def properties(self) -> dict[str, str]:
        if self._props is None:
            script = "; ".join(f"echo {p}=$(getprop {p})" for p in _PROPS)
            status, out = self.shell(script)
            if status != 0:
                raise DeviceError(
                    f"getprop failed on {self.serial}: {out.strip()}",
                    hint="is this an Android device? `adb shell getprop` must work",
                )
            props = {}
            for line in out.splitlines():
                key, sep, value = line.strip().partition("=")
                if sep and key in _PROPS:
                    props[key] = value.strip()
            self._props = props
        return self._props

    def device_identity(self) -> dict[str, Any]:
        p = self.properties()
        return {
            "serial": self.serial,
            "model": p.get("ro.product.model") or None,
            "manufacturer": p.get("ro.product.manufacturer") or None,
            "android_release": p.get("ro.build.version.release") or None,
            "sdk": p.get("ro.build.version.sdk") or None,
            "soc": p.get("ro.soc.model") or None,
            "abi": p.get("ro.product.cpu.abi") or None,
        }

    # ------------------------------------------------------------------ checks

    def _binary(self) -> Path:
        raw = self.benchmark_binary or os.environ.get(BENCHMARK_ENV)
        if not raw:
            raise DeviceError(
                "no benchmark_model binary was given for the adb transport", hint=GET_BINARY_HINT
            )
        path = Path(raw)
        if not path.is_file():
            raise DeviceError(f"benchmark_model binary not found: {path}", hint=GET_BINARY_HINT)
        return path

    def check_abi(self, binary: Path) -> str:
        """The device ABI, after checking it against the target and the binary's ELF machine."""
        p = self.properties()
        abi = p.get("ro.product.cpu.abi", "")
        if abi != self.expected_abi:
            raise DeviceError(
                f"device {self.serial} is {abi or 'of unknown ABI'}, the target expects "
                f"{self.expected_abi}",
                hint="pick a device of the target's ABI with --serial, or another --target",
            )
        supported = [a for a in p.get("ro.product.cpu.abilist", "").split(",") if a] or [abi]
        built_for = elf_abi(binary)
        if built_for is not None and built_for not in supported:
            raise DeviceError(
                f"{binary.name} is built for {built_for}, device {self.serial} runs "
                f"{', '.join(supported)}",
                hint="use the android_aarch64 benchmark_model build for arm64-v8a phones",
            )
        if built_for is None:
            with open(binary, "rb") as f:
                if f.read(2) != b"#!":
                    raise DeviceError(
                        f"{binary} is neither an ELF executable nor a script",
                        hint=GET_BINARY_HINT,
                    )
        return abi

    # ------------------------------------------------------------------ run

    def _facts(self, cpu: int) -> dict[str, str]:
        _, out = self.shell(_q("sh", "-c", _FACTS_SCRIPT, "sh", f"cpu{cpu}"))
        facts = {}
        for line in out.splitlines():
            key, sep, value = line.partition("=")
            if sep:
                facts[key.strip()] = value.strip()
        return facts

    def _thermal(self) -> dict[str, float]:
        _, out = self.shell(_q("sh", "-c", _THERMAL_SCRIPT))
        zones: dict[str, float] = {}
        for line in out.splitlines():
            name, sep, raw = line.rpartition("=")
            try:
                value = float(raw)
            except ValueError:
                continue
            if sep and name:
                zones[name if name not in zones else f"{name}:{len(zones)}"] = round(
                    value / 1000.0 if abs(value) > 1000 else value, 1
                )
        return zones

    def _device_doc(self, facts: dict[str, str], abi: str) -> dict[str, Any]:
        p = self.properties()
        release, sdk = p.get("ro.build.version.release"), p.get("ro.build.version.sdk")
        freq = facts.get("freq_khz", "")
        cores = facts.get("cores", "")
        return {
            "machine": facts.get("machine") or None,
            "cpu_model": p.get("ro.soc.model") or None,
            "cores": int(cores) if cores.isdigit() and int(cores) > 0 else None,
            "governor": facts.get("governor") or None,
            "freq_khz": int(freq) if freq.isdigit() else None,
            "python": None,
            "os": f"Android {release} (SDK {sdk})" if release else None,
            "numpy": None,
            "abi": abi,
            "model": p.get("ro.product.model") or None,
            "kernel": facts.get("kernel") or None,
        }

    def run(self, model_path: Path, options: BenchOptions) -> dict[str, Any]:
        model_path = Path(model_path)
        if not model_path.is_file():
            raise DeviceError(
                f"model file not found: {model_path}", hint="pass an existing .tflite or package"
            )
        if options.delegate == Delegate.EDGETPU.value:
            raise DeviceError(
                "benchmark_model over adb cannot use the Edge TPU delegate",
                hint="benchmark Coral boards over SSH with --host",
            )
        if options.input_file is not None:
            raise DeviceError(
                "--input data files are not supported by the adb transport",
                hint="benchmark_model feeds random data; drop --input for Android devices",
            )
        delegate_lib = Path(options.delegate) if is_delegate_path(options.delegate) else None
        if delegate_lib is not None and not delegate_lib.is_file():
            raise DeviceError(
                f"external delegate not found: {delegate_lib}",
                hint="pass the path of a delegate .so built for the device",
            )
        binary = self._binary()
        abi = self.check_abi(binary)
        remote = f"{REMOTE_BASE}/edgepack-{secrets.token_hex(6)}"
        status, out = self.shell(_q("mkdir", "-p", remote))
        if status != 0:
            raise DeviceError(
                f"cannot create {remote} on {self.serial}: {out.strip()}",
                hint="check that /data/local/tmp is writable for the shell user",
            )
        ok = False
        try:
            remote_model = f"{remote}/model.tflite"
            remote_bin = f"{remote}/benchmark_model"
            self.push(model_path, remote_model)
            self.push(binary, remote_bin)
            remote_lib = None
            if delegate_lib is not None:
                remote_lib = f"{remote}/{delegate_lib.name}"
                self.push(delegate_lib, remote_lib)
            status, out = self.shell(_q("chmod", "755", remote_bin))
            if status != 0:
                raise DeviceError(
                    f"cannot make {remote_bin} executable: {out.strip()}",
                    hint="/data/local/tmp must allow executables (it does on stock Android)",
                )
            cpu = options.pin_cores[0] if options.pin_cores else 0
            facts = self._facts(cpu)
            before = self._thermal()
            argv = [remote_bin, *benchmark_flags(options, remote_model, remote_lib)]
            if options.pin_cores:
                argv = ["taskset", core_mask(options.pin_cores), *argv]
            pidfile = f"{remote}/benchmark.pid"
            command = _q("sh", "-c", _PIDFILE_EXEC, "sh", pidfile, *argv)
            try:
                status, output = self.shell(
                    f"cd {shlex.quote(remote)} && {command} 2>&1", timeout=options.timeout_s
                )
            except _AdbTimeout as exc:
                raise DeviceError(
                    f"benchmark_model did not finish within {options.timeout_s:g} s on "
                    f"{self.serial} (stopped)",
                    hint="lower --runs or --max-seconds, or raise --timeout",
                ) from exc
            after = self._thermal()
            parsed = parse_benchmark_output(output)
            if status != 0 or not parsed.complete:
                detail = "; ".join(parsed.errors) or (output.strip().splitlines() or ["?"])[-1]
                raise DeviceError(
                    f"benchmark_model failed on {self.serial} (exit {status}): {detail}",
                    hint="run the same command by hand with `adb shell` to see the full log; "
                    "check the delegate and --threads for this device",
                )
            doc = harness_document(
                parsed,
                options,
                model_sha256=sha256_file(model_path),
                model_bytes=model_path.stat().st_size,
                device=self._device_doc(facts, abi),
                thermal_before=before,
                thermal_after=after,
            )
            ok = True
            return doc
        finally:
            # On any failure (timeout, Ctrl-C) first stop a benchmark still running on the
            # device: it would keep the phone busy and hot. Then remove the temp dir.
            pid = shlex.quote(f"{remote}/benchmark.pid")
            stop = "" if ok else f"[ -f {pid} ] && kill $(cat {pid}) 2>/dev/null; "
            try:
                self.shell(stop + _q("rm", "-rf", remote))
            except DeviceError:
                if ok:  # on failure, the original error is the one worth reporting
                    raise
