"""Benchmark options shared by every transport (local, SSH, adb)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgepack.errors import UsageError
from edgepack.targets import Delegate


# Delegates known by name (the targets' own enum); anything else is a path to an external
# delegate .so.
def is_delegate_path(delegate: str) -> bool:
    """True when ``delegate`` names an external delegate library rather than a known name."""
    return delegate not in {d.value for d in Delegate}


@dataclass(frozen=True)
class BenchOptions:
    threads: int = 1
    warmup_runs: int = 10
    runs: int = 100
    min_seconds: float = 0.0
    max_seconds: float = 60.0
    delegate: str = "xnnpack"  # xnnpack | none | gpu | edgetpu | nnapi | path/to/delegate.so
    input_file: Path | None = None  # .npy/.npz input data, else random data of the right dtype
    timeout_s: float = 600.0
    pin_cores: tuple[int, ...] = ()  # adb: taskset mask for the big cores

    def __post_init__(self) -> None:
        problems = []
        if self.threads < 1:
            problems.append(f"threads must be >= 1 (got {self.threads})")
        if self.warmup_runs < 0:
            problems.append(f"warmup runs must be >= 0 (got {self.warmup_runs})")
        if self.runs < 1:
            problems.append(f"runs must be >= 1 (got {self.runs})")
        if self.min_seconds < 0:
            problems.append(f"min seconds must be >= 0 (got {self.min_seconds})")
        if self.max_seconds <= 0:
            problems.append(f"max seconds must be > 0 (got {self.max_seconds})")
        if self.min_seconds > self.max_seconds:
            problems.append(
                f"min seconds ({self.min_seconds}) is larger than max seconds ({self.max_seconds})"
            )
        if self.timeout_s <= 0:
            problems.append(f"timeout must be > 0 s (got {self.timeout_s})")
        if not self.delegate:
            problems.append("delegate must not be empty")
        if any(c < 0 for c in self.pin_cores):
            problems.append(f"pin cores must be CPU numbers >= 0 (got {list(self.pin_cores)})")
        if problems:
            raise UsageError(
                "invalid benchmark options: " + "; ".join(problems),
                hint="see `edgepack bench --help` for the allowed values",
            )

    @property
    def delegate_is_path(self) -> bool:
        return is_delegate_path(self.delegate)

    def to_harness_args(
        self, *, input_path: str | None = None, delegate_path: str | None = None
    ) -> list[str]:
        """The flags of ``devices/edgepack_bench.py`` (without ``--graph``).

        A transport that copies the input file or an external delegate library to a device
        passes the remote locations as ``input_path`` / ``delegate_path``; by default the
        local paths are used (local transport).
        """
        args = [
            f"--num_threads={self.threads}",
            f"--warmup_runs={self.warmup_runs}",
            f"--num_runs={self.runs}",
            f"--min_secs={self.min_seconds!r}",
            f"--max_secs={self.max_seconds!r}",
        ]
        delegate = self.delegate
        if self.delegate_is_path and delegate_path is not None:
            delegate = delegate_path
        args.append(f"--delegate={delegate}")
        if input_path is not None:
            args.append(f"--input_data={input_path}")
        elif self.input_file is not None:
            args.append(f"--input_data={self.input_file}")
        if self.pin_cores:
            args.append("--pin_cores=" + ",".join(str(c) for c in self.pin_cores))
        return args
