"""Local transport: the device-side harness in a subprocess of the current Python."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from edgepack.bench.options import BenchOptions
from edgepack.bench.transport import harness_path, parse_harness_output
from edgepack.errors import DeviceError


class LocalTransport:
    """Runs ``devices/edgepack_bench.py`` on this machine with ``python`` (default: ours)."""

    kind = "local"

    def __init__(self, python: str | None = None, name: str = "local") -> None:
        self.python = python or sys.executable
        self.name = name

    def device_identity(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "address": "localhost",
            "hostname": platform.node() or None,
            "machine": platform.machine() or None,
            "python": self.python,
        }

    def run(self, model_path: Path, options: BenchOptions) -> dict[str, Any]:
        model_path = Path(model_path)
        if not model_path.is_file():
            raise DeviceError(
                f"model file not found: {model_path}", hint="pass an existing .tflite or package"
            )
        argv = [
            self.python,
            str(harness_path()),
            f"--graph={model_path}",
            *options.to_harness_args(),
        ]
        try:
            proc = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                timeout=options.timeout_s,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as exc:
            raise DeviceError(
                f"the local benchmark did not finish within {options.timeout_s:g} s",
                hint="lower --runs or --max-seconds",
            ) from exc
        except OSError as exc:
            raise DeviceError(
                f"cannot start {self.python}: {exc}", hint="check the Python interpreter path"
            ) from exc
        return parse_harness_output(proc.stdout, proc.stderr, proc.returncode, "this machine")
