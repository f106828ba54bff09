"""Fleets: a devices.toml names devices; every device of the package's target is benchmarked
concurrently (one thread per device). An unreachable device is reported, not fatal.

    [[device]]
    name = "pi-kitchen"
    target = "rpi4"
    transport = "ssh"
    address = "pi@10.0.0.7"      # [user@]host[:port] or a Host alias of ~/.ssh/config
    port = 22                    # optional
    user = "pi"                  # optional
    identity = "~/.ssh/id_ed25519"  # optional

    [[device]]
    name = "pixel"
    target = "android-arm64"
    transport = "adb"
    serial = "R58M12345"
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from edgepack.bench.options import BenchOptions
from edgepack.bench.transport import Transport
from edgepack.errors import DeviceError, EdgepackError, UsageError, decode_problem
from edgepack.targets import Transport as TransportKind

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib


class FleetDevice(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    target: str = Field(min_length=1)
    transport: TransportKind
    address: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    user: str | None = None
    identity: str | None = None
    serial: str | None = None
    python: str | None = None  # the device's Python (default: the target profile's)

    @model_validator(mode="after")
    def _address(self) -> FleetDevice:
        if self.transport is TransportKind.SSH and not self.address:
            raise ValueError("an ssh device needs an address ([user@]host[:port])")
        return self


def load_fleet(path: str | Path) -> list[FleetDevice]:
    p = Path(path)
    try:
        raw = tomllib.loads(p.read_bytes().decode("utf-8"))
    except FileNotFoundError as exc:
        raise UsageError(f"fleet file not found: {p}", "pass --fleet devices.toml") from exc
    except (OSError, ValueError, RecursionError) as exc:  # ValueError: TOML, UTF-8
        raise UsageError(
            f"cannot read fleet file {p}: {decode_problem(exc)}",
            "see `edgepack bench --help` for its format",
        ) from exc
    extra = sorted(set(raw) - {"device"})
    entries = raw.get("device")
    if extra or not isinstance(entries, list) or not entries:
        raise UsageError(
            f"fleet file {p} must hold [[device]] tables"
            + (f" (unknown keys: {', '.join(extra)})" if extra else ""),
            'each device: [[device]] name = "..." target = "rpi4" transport = "ssh" '
            'address = "pi@host"',
        )
    devices, problems = [], []
    for i, entry in enumerate(entries):
        try:
            devices.append(FleetDevice.model_validate(entry))
        except ValidationError as exc:
            label = entry.get("name") if isinstance(entry, dict) else None
            for e in exc.errors():
                loc = ".".join(str(x) for x in e["loc"]) or "device"
                problems.append(f"device {label or i + 1}: {loc}: {e['msg']}")
    names = [str(e["name"]) for e in entries if isinstance(e, dict) and e.get("name")]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        problems.append(f"duplicate device names: {', '.join(dupes)}")
    if problems:
        raise UsageError(
            f"invalid fleet file {p}: " + "; ".join(problems), "fix the entries named above"
        )
    return devices


def select_devices(devices: Sequence[FleetDevice], target: str, source: str) -> list[FleetDevice]:
    chosen = [d for d in devices if d.target == target]
    if not chosen:
        have = sorted({d.target for d in devices})
        raise UsageError(
            f"no device in {source} has target '{target}' (it lists {', '.join(have)})",
            f'add a [[device]] with target = "{target}" or bench a package for one of those',
        )
    return chosen


@dataclass(frozen=True)
class FleetOutcome:
    device: FleetDevice
    identity: dict[str, Any]
    harness: dict[str, Any] | None
    error: EdgepackError | None
    seconds: float

    @property
    def ok(self) -> bool:
        return self.harness is not None


def run_fleet(
    devices: Sequence[FleetDevice],
    make_transport: Callable[[FleetDevice], Transport],
    model_path: Path,
    options: BenchOptions,
    max_workers: int | None = None,
) -> list[FleetOutcome]:
    """Benchmarks every device concurrently; outcomes in the order of ``devices``.

    An EdgepackError on one device (unreachable, auth, missing runtime, ...) becomes that
    device's outcome; the others carry on. Anything else is a bug and propagates. Ctrl-C
    cancels the runs still going (transports with a ``cancel_event``) and waits for their
    clean-up.
    """

    cancel = threading.Event()

    def one(device: FleetDevice) -> FleetOutcome:
        t0 = time.perf_counter()
        identity: dict[str, Any] = {"name": device.name, "address": device.address}
        try:
            transport = make_transport(device)
            if hasattr(transport, "cancel_event"):
                transport.cancel_event = cancel
            if cancel.is_set():
                raise DeviceError("cancelled before it started", hint="rerun the fleet")
            identity = {**transport.device_identity(), "name": device.name}
            doc = transport.run(model_path, options)
        except EdgepackError as err:
            return FleetOutcome(device, identity, None, err, time.perf_counter() - t0)
        return FleetOutcome(device, identity, doc, None, time.perf_counter() - t0)

    workers = max_workers or max(1, len(devices))
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="edgepack-bench")
    try:
        futures = [pool.submit(one, d) for d in devices]
        return [f.result() for f in futures]
    except BaseException:
        # Ctrl-C (or a bug) in this thread: stop the other devices' runs; each one still
        # kills its remote harness and removes its temp dir before the pool shuts down.
        cancel.set()
        raise
    finally:
        pool.shutdown(wait=True)
