"""The Transport protocol every benchmark transport (local, SSH, adb) implements."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from edgepack.bench.options import BenchOptions

HARNESS_SCHEMA = "edgepack.bench/1"
HARNESS_FILE = "edgepack_bench.py"


@runtime_checkable
class Transport(Protocol):
    """Runs the benchmark harness for one model on one device.

    ``run`` returns ONE harness document (schema ``edgepack.bench/1``) and raises
    :class:`edgepack.errors.DeviceError` with a hint on any failure (unreachable, auth,
    host key, missing numpy/runtime, timeout). It always cleans up its remote temp dir.
    """

    kind: str  # "local" | "ssh" | "adb"

    def device_identity(self) -> dict[str, Any]: ...

    def run(self, model_path: Path, options: BenchOptions) -> dict[str, Any]: ...


def harness_path() -> Path:
    """Location of ``devices/edgepack_bench.py`` (the device-side harness script)."""
    from edgepack.errors import DeviceError

    here = Path(__file__).resolve()
    candidates = [
        here.parents[1] / "_data" / "devices" / HARNESS_FILE,  # inside a wheel
        here.parents[2] / "devices" / HARNESS_FILE,  # source checkout / editable install
    ]
    for path in candidates:
        if path.is_file():
            return path
    raise DeviceError(
        f"the device-side harness {HARNESS_FILE} was not found",
        hint="reinstall edgepack from a source checkout (it ships devices/edgepack_bench.py)",
    )
