"""The Transport protocol every benchmark transport (local, SSH, adb) implements."""

from __future__ import annotations

import json
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


# Exit codes of devices/edgepack_bench.py.
HARNESS_EXIT_FAILED = 1
HARNESS_EXIT_USAGE = 2
HARNESS_EXIT_MISSING = 3


def parse_harness_output(stdout: str, stderr: str, returncode: int, where: str) -> dict[str, Any]:
    """The harness document printed by ``devices/edgepack_bench.py`` on ``where``.

    The document is the last stdout line that parses as a JSON object (a runtime may print
    its own lines before it). A document with errors, or no document, raises DeviceError
    whose hint says what to do (for a missing numpy/runtime: the exact pip command).
    """
    from edgepack.errors import DeviceError

    doc: dict[str, Any] | None = None
    for line in reversed(stdout.splitlines()):
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            parsed = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(parsed, dict) and parsed.get("schema") == HARNESS_SCHEMA:
            doc = parsed
            break
    last_err = _last_line(stderr)
    if doc is None:
        if returncode == 127 or ("not found" in last_err.lower() and "python" in last_err.lower()):
            raise DeviceError(
                f"the harness could not start on {where}: {last_err or 'exit code 127'}",
                hint="install python3 on the device, or name its interpreter with "
                "--remote-python (or a fleet entry's python)",
            )
        raise DeviceError(
            f"the harness on {where} exited with code {returncode} without a result"
            + (f": {last_err}" if last_err else ""),
            hint="run `python3 edgepack_bench.py --graph model.tflite` on the device to see "
            "the full error",
        )
    errors = doc.get("errors") or []
    if errors or returncode != 0:
        message = "; ".join(str(e) for e in errors) or f"exit code {returncode}"
        hint = doc.get("hint") or ""
        if returncode == HARNESS_EXIT_MISSING and hint:
            raise DeviceError(
                f"{where} cannot run the benchmark: {message}",
                hint=f"on the device run: {hint}",
            )
        raise DeviceError(
            f"the benchmark failed on {where}: {message}",
            hint=hint or "see the error above; the harness ran but could not benchmark",
        )
    return doc


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else ""
