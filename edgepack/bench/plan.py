"""From the user's options and the package's target profile to a transport and BenchOptions.

Defaults come from the target profile (``runtime`` and ``bench`` sections); explicit options
win. The transport is ``--host`` -> ssh, ``--serial`` -> adb, else the profile's transport.

A package is data: no command that runs on a device comes from it. The device's Python is
``--remote-python``, a fleet entry's ``python``, the ``runtime.python`` of the profile the user
named (a bare model's ``--target``, or the built-in profile of the package's target), or
``python3`` - never the ``runtime.python`` copied into a package's manifest.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgepack.bench.fleet import FleetDevice
from edgepack.bench.options import BenchOptions
from edgepack.bench.results import BenchSubject
from edgepack.bench.transport import Transport
from edgepack.errors import PackageError, ProfileError, UsageError
from edgepack.targets import TargetProfile, builtin_names, load_target
from edgepack.targets import Transport as TransportKind


def resolve_profile(subject: BenchSubject, target: str | None) -> TargetProfile:
    if subject.manifest is None:
        if not target:
            raise UsageError(
                f"{subject.model_path.name} is a bare model: which device is it for?",
                "pass --target NAME (e.g. --target host or --target rpi4); "
                "`edgepack targets list` shows all",
            )
        return load_target(target)
    if target and target != subject.target:
        raise UsageError(
            f"the package was built for target '{subject.target}', not '{target}'",
            f"drop --target, or build a package for '{target}' with `edgepack build`",
        )
    prof = subject.profile_dict
    if prof is None:
        return load_target(str(subject.target))
    try:
        return TargetProfile.from_dict(prof, f"in the manifest of {subject.name}")
    except ProfileError as exc:
        raise PackageError(exc.message, "rebuild the package with this edgepack version") from exc


@dataclass(frozen=True)
class Overrides:
    """Options given on the command line (None = take the profile's value)."""

    threads: int | None = None
    runs: int | None = None
    warmup_runs: int | None = None
    min_seconds: float | None = None
    max_seconds: float | None = None
    delegate: str | None = None
    input_file: Path | None = None
    timeout_s: float | None = None


def bench_options(profile: TargetProfile, o: Overrides) -> BenchOptions:
    def pick(value: Any, default: Any) -> Any:
        return default if value is None else value

    if o.input_file is not None and not o.input_file.is_file():
        raise UsageError(
            f"input data file not found: {o.input_file}", "pass an existing .npy or .npz file"
        )
    return BenchOptions(
        threads=pick(o.threads, profile.runtime.threads),
        warmup_runs=pick(o.warmup_runs, profile.bench.warmup_runs),
        runs=pick(o.runs, profile.bench.runs),
        min_seconds=pick(o.min_seconds, profile.bench.min_seconds),
        max_seconds=pick(o.max_seconds, profile.bench.max_seconds),
        delegate=pick(o.delegate, profile.runtime.delegate.value),
        input_file=o.input_file,
        timeout_s=pick(o.timeout_s, 600.0),
        pin_cores=tuple(profile.device.big_cores),
    )


def transport_kind(profile: TargetProfile, host: str | None, serial: str | None) -> TransportKind:
    if host and serial:
        raise UsageError("pass either --host (SSH) or --serial (adb), not both", "pick one device")
    if host:
        return TransportKind.SSH
    if serial:
        return TransportKind.ADB
    kind = profile.bench.transport
    if kind is TransportKind.SSH:
        raise UsageError(
            f"target '{profile.name}' is benchmarked over SSH: which device?",
            "pass --host user@host[:port] (or --fleet devices.toml)",
        )
    return kind


@dataclass(frozen=True)
class Connection:
    """How to reach devices: CLI flags shared by single runs and fleets."""

    host: str | None = None
    port: int | None = None
    identity: str | None = None
    accept_new_host_key: bool = False
    serial: str | None = None
    benchmark_binary: str | None = None
    remote_python: str | None = None


def device_python(subject: BenchSubject, profile: TargetProfile, c: Connection) -> str:
    """The command that starts Python on the device, from the user's side only."""
    if c.remote_python:
        return c.remote_python
    if subject.manifest is None:
        return profile.runtime.python or "python3"  # the user's own --target
    if str(subject.target) in builtin_names():
        return load_target(str(subject.target)).runtime.python or "python3"
    return "python3"


def make_transport(
    kind: TransportKind, profile: TargetProfile, c: Connection, python: str = "python3"
) -> Transport:
    """``python`` is the device's Python command from :func:`device_python`."""
    if kind is TransportKind.SSH:
        from edgepack.bench.ssh import SshTransport

        if not c.host:
            raise UsageError("the SSH transport needs --host", "pass --host user@host[:port]")
        return SshTransport(
            c.host,
            port=c.port,
            identity=c.identity,
            accept_new_host_key=c.accept_new_host_key,
            python=python,
        )
    if kind is TransportKind.ADB:
        return _adb(c.serial, c.benchmark_binary)
    from edgepack.bench.local import LocalTransport

    return LocalTransport(python=sys.executable)


def run_once(
    subject: BenchSubject,
    profile: TargetProfile,
    options: BenchOptions,
    conn: Connection,
    kind: TransportKind,
) -> dict[str, Any]:
    """One benchmark on one device (`edgepack bench` and ``Package.bench``): the result
    document, not saved. A package's samples of its build data are the default inputs (valid
    token ids, say) unless the options name an input file; benchmark_model (adb) feeds its own."""
    from edgepack.bench.results import make_result

    samples = subject.default_inputs
    if options.input_file is None and samples is not None and kind is not TransportKind.ADB:
        options = dataclasses.replace(options, input_file=samples)
    transport = make_transport(kind, profile, conn, device_python(subject, profile, conn))
    harness = transport.run(subject.model_path, options)
    return make_result(
        subject,
        profile.name,
        transport.kind,
        transport.device_identity(),
        harness,
        profile_sha256=subject.profile_sha256 or profile.sha256,
    )


def _adb(serial: str | None, benchmark_binary: str | None) -> Transport:
    try:
        from edgepack.bench.adb import AdbTransport
    except ModuleNotFoundError as exc:
        if exc.name != "edgepack.bench.adb":
            raise
        raise UsageError(
            "this edgepack has no adb transport", "install an edgepack release with adb support"
        ) from exc
    transport: Transport = AdbTransport(
        serial=serial, benchmark_binary=benchmark_binary, adb_path=None
    )
    return transport


def fleet_transport(device: FleetDevice, c: Connection, python: str = "python3") -> Transport:
    """The transport of one fleet entry (connection flags apply to every SSH device)."""
    if device.transport is TransportKind.SSH:
        from edgepack.bench.ssh import SshTransport

        return SshTransport(
            str(device.address),
            user=device.user,
            port=device.port,
            identity=device.identity or c.identity,
            accept_new_host_key=c.accept_new_host_key,
            python=device.python or python,
            name=device.name,
        )
    if device.transport is TransportKind.ADB:
        return _adb(device.serial or device.address, c.benchmark_binary)
    from edgepack.bench.local import LocalTransport

    return LocalTransport(python=device.python or sys.executable, name=device.name)
