"""The Ray executor vs the local one on this machine, measured side by side in one run.

Two models x three targets (rpi4, host, android-arm64): the bundled digits CNN under two
package names, each an edgepack.toml matrix (one export per model, --no-cache so every target
converts). Built twice, from clean output folders:
  L. `edgepack build --jobs 2` for each model (local worker processes);
  R. `edgepack build --executor ray` for each model, on a Ray cluster started here: a head
     with no CPUs and two worker nodes with one CPU each (the same parallelism as --jobs 2).
Prints the wall times, R/L, and per Ray task (from the --json summary): ``wait`` (submission
to start on a worker: queueing, scheduling, worker start-up), ``build`` (inside the build)
and ``overhead`` (inputs written on the worker, the package sent back and written into dist/).
The cluster's start-up is not counted. Checks every model.tflite is byte-identical.
Run: python benchmarks/release_ray.py   (the ratios are what to read on a busy machine)
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DIGITS = REPO / "examples" / "digits"
TARGETS = ("rpi4", "host", "android-arm64")
MODELS = ("digits", "digits-b")


def env() -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_AUTH_MODE": "disabled",  # a token in ~/.ray from another Ray must not apply
    }


def project(root: Path, name: str) -> Path:
    proj = root / name
    proj.mkdir(parents=True)
    for f in ("model.py", "weights.pt", "calib.npz", "eval.npz"):
        shutil.copyfile(DIGITS / f, proj / f)
    entries = "".join(f'\n[[targets]]\ntarget = "{t}"\n' for t in TARGETS)
    (proj / "edgepack.toml").write_text(
        f'[model]\nsource = "model.py:build_model"\nweights = "weights.pt"\n'
        f'input_shapes = ["1x1x32x32"]\nname = "{name}"\n'
        '[data]\ncalibration = "calib.npz"\neval = "eval.npz"\n'
        "[build]\nlatency_runs = 20\n[build.ray]\nmemory_mb = 512\n" + entries
    )
    return proj


def build(proj: Path, args: list[str]) -> tuple[float, dict]:
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "edgepack", "build", "--no-cache", "--json", *args],
        cwd=proj,
        env=env(),
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"build failed in {proj}:\n{out.stderr[-3000:]}")
    return wall, json.loads(out.stdout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ray_start(*args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "ray.scripts.scripts", "start", *args],
        env=env(),
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop_cluster(folder: str) -> None:
    """End the processes of this cluster only (`ray stop` would end every Ray here)."""

    def cmdline(pid: int) -> str:
        try:
            return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            return ""

    def ppid(pid: int) -> int | None:
        try:
            return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            return None

    pids = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]
    ours = {p for p in pids if folder in cmdline(p)}
    ours |= {p for p in pids if ppid(p) in ours}
    ours.discard(os.getpid())
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for p in ours:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, sig)
        time.sleep(3)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        projects = [project(root, m) for m in MODELS]
        local_wall = 0.0
        for p in projects:
            local_wall += build(p, ["--jobs", "2", "--output-dir", "dist-local"])[0]

        cluster = tempfile.mkdtemp(prefix="epray-")  # short: Ray's socket paths
        port = free_port()
        common = ["--object-store-memory=100000000", "--node-ip-address=127.0.0.1"]
        t0 = time.perf_counter()
        try:
            ray_start(
                "--head",
                f"--port={port}",
                "--num-cpus=0",
                "--include-dashboard=false",
                "--disable-usage-stats",
                f"--temp-dir={cluster}/h",
                *common,
            )
            for i in (1, 2):
                ray_start(
                    f"--address=127.0.0.1:{port}",
                    "--num-cpus=1",
                    f"--temp-dir={cluster}/w{i}",
                    *common,
                )
            startup = time.perf_counter() - t0
            ray_wall = 0.0
            tasks = []
            for p in projects:
                wall, summary = build(p, ["--executor", "ray", "--address", f"127.0.0.1:{port}"])
                ray_wall += wall
                tasks += [t["ray"] | {"id": f"{p.name}/{t['id']}"} for t in summary["targets"]]
        finally:
            stop_cluster(cluster)
            shutil.rmtree(cluster, ignore_errors=True)

        same = all(
            (p / "dist" / f"{p.name}-{t}" / "model.tflite").read_bytes()
            == (p / "dist-local" / f"{p.name}-{t}" / "model.tflite").read_bytes()
            for p in projects
            for t in TARGETS
        )
    n = len(MODELS) * len(TARGETS)
    print(f"{len(MODELS)} models x {len(TARGETS)} targets = {n} builds, --no-cache")
    print(f"local executor (--jobs 2):            {local_wall:7.1f} s")
    print(
        f"ray executor (2 nodes x 1 CPU):       {ray_wall:7.1f} s   (cluster start {startup:.1f} s, not counted)"
    )
    print(f"ratio ray / local:                    {ray_wall / local_wall:7.2f}")
    print(f"model.tflite byte-identical:          {same}")
    print(f"\n{'task':<24} {'node':<22} {'wait s':>7} {'build s':>8} {'overhead s':>10}")
    for t in tasks:
        print(
            f"{t['id']:<24} {t['node']:<22} {t['wait_s']:7.2f} {t['build_s']:8.2f} {t['overhead_s']:10.2f}"
        )
    over = [t["overhead_s"] for t in tasks]
    print(
        f"\nRay overhead per task (outside the build): mean {statistics.mean(over):.2f} s, "
        f"max {max(over):.2f} s (goal < 2 s)"
    )


if __name__ == "__main__":
    main()
