"""Shared helper for benchmarks: time whole commands, interleaved, and report medians."""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path


def time_once(cmd: Sequence[str], cwd: str | None = None) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def cpu_once(
    cmd: Sequence[str], cwd: str | None = None, env: Mapping[str, str] | None = None
) -> tuple[float, float]:
    """(wall seconds, CPU seconds user + system of the command and its children)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(
        cmd,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def interleaved(
    commands: dict[str, Sequence[str]], runs: int, warmup: int = 1, cwd: str | None = None
) -> dict[str, list[float]]:
    """Run every command in turn (A B C A B C ...) so drift hits all of them alike."""
    for _ in range(warmup):
        for cmd in commands.values():
            time_once(cmd, cwd)
    out: dict[str, list[float]] = {k: [] for k in commands}
    for _ in range(runs):
        for k, cmd in commands.items():
            out[k].append(time_once(cmd, cwd))
    return out


def paired_ratio(a: list[float], b: list[float]) -> float:
    """Median of the per-pair ratios a[i] / b[i]."""
    return statistics.median(x / y for x, y in zip(a, b, strict=True))


def seeded_data(
    name: str, shape: tuple[int, ...], n_calib: int, n_eval: int, work: Path
) -> tuple[Path, Path]:
    """(calibration, eval) .npz files of seeded standard-normal samples of ``shape``."""
    import numpy as np

    rng = np.random.default_rng(0)
    calib, ev = work / f"{name}-calib.npz", work / f"{name}-eval.npz"
    np.savez(calib, x=rng.standard_normal((n_calib, *shape[1:])).astype(np.float32))
    np.savez(ev, x=rng.standard_normal((n_eval, *shape[1:])).astype(np.float32))
    return calib, ev
