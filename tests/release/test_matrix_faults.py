"""Killing a build: no orphan worker, no temporary folder, no partial package.

Real `python -m edgepack build` processes (a two-target matrix with its "spawn" worker pool,
and a single-target build) are started with TMPDIR pointing at a test folder, then signalled
once a target's build has begun (its `edgepack-target-*` folder exists in TMPDIR).
Processes are read from /proc (Linux).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import DIGITS, REPO

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)"),
]


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, ppid) of a process, None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return fields[0], int(fields[1])


def _alive(pid: int) -> bool:
    st = _stat(pid)
    return st is not None and st[0] not in ("Z", "X")  # a zombie has exited


def _descendants(root: int) -> set[int]:
    parents: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            st = _stat(int(d.name))
            if st is not None:
                parents[int(d.name)] = st[1]
    out: set[int] = set()
    frontier = {root}
    while frontier:
        frontier = {p for p, pp in parents.items() if pp in frontier and p not in out}
        out |= frontier
    return out


def _wait_for(cond, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


def _start(tmp_path: Path, *targets: str) -> tuple[subprocess.Popen[bytes], Path, Path]:
    tmp, dist = tmp_path / "tmp", tmp_path / "dist"
    tmp.mkdir()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "TMPDIR": str(tmp),
        # torch's compile cache would otherwise live in TMPDIR: not edgepack's to remove
        "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor"),
        # a cold export/conversion cache: the session's warm one would let the build finish
        # (and the process reach its teardown, where SIGTERM kills) before the signal
        "EDGEPACK_CACHE_DIR": str(tmp_path / "cache"),
        "LITERT_TORCH_SHOW_PROGRESS": "n",
    }
    args = [
        sys.executable,
        "-m",
        "edgepack",
        "build",
        f"{DIGITS}/model.py:build_model",
        "--weights",
        str(DIGITS / "weights.pt"),
        "--input-shape",
        "1x1x32x32",
        "--calibration",
        str(DIGITS / "calib.npz"),
        "--latency-runs",
        "1",
        "--quiet",
    ]
    for t in targets:
        args += ["--target", t]
    args += ["--output-dir", str(dist)] if len(targets) > 1 else ["-o", str(dist / "pkg")]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return proc, tmp, dist


def _building(tmp: Path) -> bool:
    return any(p.name.startswith(("edgepack-target-", "edgepack-build-")) for p in tmp.iterdir())


def _no_partial_package(dist: Path) -> None:
    for p in dist.iterdir() if dist.exists() else []:
        assert not p.name.startswith("."), f"staging folder left: {p.name}"
        if p.name.endswith(".gates.json"):  # a written package's release-gate record
            assert (dist / p.name.removesuffix(".gates.json") / "manifest.json").is_file()
            continue
        assert (p / "manifest.json").is_file(), f"partial package: {p.name}"


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_killing_a_matrix_build_leaves_no_worker(tmp_path: Path, sig: signal.Signals) -> None:
    proc, tmp, dist = _start(tmp_path, "host", "rpi4")
    workers: set[int] = set()
    try:
        _wait_for(lambda: len(_descendants(proc.pid)) >= 2, 120, "the worker processes")
        _wait_for(lambda: _building(tmp) or proc.poll() is not None, 180, "a target build")
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        workers = _descendants(proc.pid)
        assert len(workers) >= 2
        proc.send_signal(sig)
        proc.wait(timeout=60)
        _wait_for(lambda: not any(_alive(p) for p in workers), 60, "the workers to exit")
    finally:  # on failure, orphans of this test must not outlive it
        for p in workers | _descendants(proc.pid) | {proc.pid}:
            if _alive(p):
                os.kill(p, signal.SIGKILL)
        proc.wait(timeout=10)
    err = proc.stderr.read().decode() if proc.stderr else ""
    assert "Traceback" not in err, err
    if sig == signal.SIGTERM:
        assert proc.returncode == 128 + signal.SIGTERM, err
        assert "stopped by SIGTERM" in err
        # Every temporary folder (parent's export, each worker's build) is gone.
        assert sorted(p.name for p in tmp.iterdir()) == []
    else:
        assert proc.returncode == -signal.SIGKILL
    _no_partial_package(dist)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_sigterm_and_sighup_clean_up_a_single_build(tmp_path: Path, sig: signal.Signals) -> None:
    proc, tmp, dist = _start(tmp_path, "rpi4")
    try:
        _wait_for(lambda: _building(tmp) or proc.poll() is not None, 120, "the build")
        time.sleep(0.5)  # inside the build (load, a cold export, convert)
        proc.send_signal(sig)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode == 0 or (dist / "pkg" / "manifest.json").is_file():
        # a very fast machine: the package was written before the signal (which then met
        # the interpreter's teardown, after edgepack's handlers were gone)
        pytest.skip("the build finished before the signal")
    assert proc.returncode == 128 + sig, err
    assert f"stopped by {sig.name}" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp.iterdir()) == []
    _no_partial_package(dist)
    assert not (dist / "pkg").exists()
