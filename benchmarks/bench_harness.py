"""Benchmarks of the bench harness itself; prints ratios measured side by side in one run.

(a) fidelity: on the same model and threads, the median latency reported by edgepack's
    harness (devices/edgepack_bench.py) vs ai_edge_litert's own benchmark tool
    (python -m ai_edge_litert.tools.benchmark_litert_model). Goal: ratio within 0.95-1.05.
    The two run interleaved (A B B A ...) so drift on a shared machine hits both; other
    processes only ever ADD time, so the least-disturbed round (the minimum of each tool's
    per-round medians) is the estimate of the uncontended latency; the median of the
    back-to-back paired ratios is printed too.
(b) overhead per invoke on a tiny model: the harness's measured loop (wall time per run, and
    the latency it reports) vs a bare ``interpreter.invoke()`` loop in this process.
(c) fleet: N SSH stand-ins (a real sshd on 127.0.0.1) benchmarked concurrently vs one
    device alone: wall ratio. Goal <= 1.3x for N = 3. Two device kinds:
      - "real harness": the stand-ins run the harness on this machine's CPU, so N devices
        share its cores (on a 2-core CI box 3 CPU-bound devices cannot finish as fast as 1);
      - "off-host work": each device's own time is spent off the host CPU (a 2 s sleep before
        the harness, as a real board computes on its own CPU); this isolates what edgepack
        adds: connections, transfers and threads.

Run:  python benchmarks/bench_harness.py [--rounds 5] [--threads 1] [--fleet-n 3]
Needs: sshd (scripts/install-system-deps.sh) for (c); ai_edge_litert; litert-torch for the
models (converted here, nothing is downloaded).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HARNESS = ROOT / "devices" / "edgepack_bench.py"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "bench"))


def convert_mid(path: Path) -> Path:
    """A small CNN (a few ms per invoke on one core): latency well above timer noise."""
    import litert_torch
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 32, 3, stride=2, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(32, 64, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(64, 64, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(64, 64, 3, stride=2, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(64, 10),
    ).eval()
    litert_torch.convert(net, (torch.randn(1, 3, 96, 96),)).export(str(path))
    return path


def run_harness(model: Path, *args: str) -> dict:
    proc = subprocess.run(
        [sys.executable, str(HARNESS), f"--graph={model}", *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_litert_tool(model: Path, threads: int, runs: int, warmup: int, out: Path) -> dict:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "ai_edge_litert.tools.benchmark_litert_model",
            f"--model={model}",
            f"--num_threads={threads}",
            f"--num_runs={runs}",
            f"--warmup_runs={warmup}",
            f"--result_json={out}",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.read_text())


def fidelity(model: Path, threads: int, rounds: int, runs: int, tmp: Path) -> float:
    ours, theirs = [], []
    for r in range(rounds):
        order = ("ours", "theirs") if r % 2 == 0 else ("theirs", "ours")
        for who in order:
            if who == "ours":
                doc = run_harness(
                    model, f"--num_threads={threads}", f"--num_runs={runs}", "--warmup_runs=20"
                )
                ours.append(doc["stats"]["p50_ms"])
            else:
                res = run_litert_tool(model, threads, runs, 20, tmp / f"lt{r}.json")
                theirs.append(res["latency"]["median_ms"])
    paired = [x / y for x, y in zip(ours, theirs, strict=True)]
    a, b = min(ours), min(theirs)
    print(f"(a) fidelity, {model.name}, threads={threads}, {rounds} rounds x {runs} runs")
    print(f"    edgepack_bench p50 per round:        {', '.join(f'{x:.2f}' for x in ours)} ms")
    print(f"    benchmark_litert_model median/round: {', '.join(f'{x:.2f}' for x in theirs)} ms")
    print(
        f"    least-disturbed round (min of the per-round medians): edgepack {a:.3f} ms, "
        f"ai_edge_litert tool {b:.3f} ms"
    )
    ratio = a / b
    verdict = "within" if 0.95 <= ratio <= 1.05 else "OUTSIDE"
    print(f"    RATIO edgepack / ai_edge_litert = {ratio:.3f}  ({verdict} goal 0.95-1.05)")
    print(
        f"    median of the {rounds} paired (back-to-back) ratios = {statistics.median(paired):.3f}"
    )
    return ratio


def overhead(model: Path, rounds: int, n: int) -> tuple[float, float]:
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    bare, wall, reported = [], [], []
    for _ in range(rounds):
        it = Interpreter(model_path=str(model), num_threads=1)
        it.allocate_tensors()
        d = it.get_input_details()[0]
        it.set_tensor(d["index"], np.zeros(d["shape"], dtype=d["dtype"]))
        invoke = it.invoke
        for _ in range(200):
            invoke()
        t0 = time.perf_counter()
        for _ in range(n):
            invoke()
        bare.append((time.perf_counter() - t0) / n * 1e6)
        doc = run_harness(model, f"--num_runs={n}", "--warmup_runs=200")
        wall.append(doc["wall_s"] / doc["stats"]["count"] * 1e6)
        reported.append(doc["stats"]["mean_ms"] * 1000)
    b, w, r = statistics.median(bare), statistics.median(wall), statistics.median(reported)
    print(f"(b) overhead per invoke, {model.name}, {rounds} rounds x {n} invokes")
    print(f"    bare invoke loop:            {b:.3f} us/invoke")
    print(f"    harness loop (wall per run): {w:.3f} us/run  -> overhead {w - b:+.3f} us/invoke")
    print(f"    harness reported mean:       {r:.3f} us       -> bias {r - b:+.3f} us")
    print(f"    RATIO harness wall / bare = {w / b:.3f}; reported / bare = {r / b:.3f}")
    return w - b, r / b


def fleet(model: Path, n: int, repeats: int, tmp: Path) -> dict[str, float]:
    from bench_helpers import run_sshd

    from edgepack.bench.fleet import FleetDevice, run_fleet
    from edgepack.bench.options import BenchOptions
    from edgepack.bench.ssh import SshTransport

    out: dict[str, float] = {}
    with run_sshd(tmp / "sshd") as sshd:
        kinds = {
            "real harness": (sys.executable, BenchOptions(runs=300, warmup_runs=10)),
            "off-host work": (
                f'sh -c \'sleep 2; exec "$0" "$@"\' {sys.executable}',
                BenchOptions(runs=20, warmup_runs=2),
            ),
        }
        for kind, (python, options) in kinds.items():

            def transport(d: FleetDevice, python: str = python) -> SshTransport:
                return SshTransport(
                    str(d.address),
                    identity=sshd.identity,
                    known_hosts=sshd.known_hosts,
                    ssh_config=None,
                    python=python,
                    name=d.name,
                )

            devices = [
                FleetDevice(
                    name=f"stand-in-{i}", target="rpi4", transport="ssh", address=sshd.address
                )
                for i in range(n)
            ]
            singles, groups = [], []
            for _ in range(repeats):
                t0 = time.perf_counter()
                res = run_fleet(devices[:1], transport, model, options)
                singles.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                res += run_fleet(devices, transport, model, options)
                groups.append(time.perf_counter() - t0)
                failed = [o.error for o in res if not o.ok]
                if failed:
                    raise SystemExit(f"fleet benchmark failed: {failed[0]}")
            one, many = statistics.median(singles), statistics.median(groups)
            out[kind] = many / one
            print(
                f"(c) fleet, {kind}: 1 device {one:.2f} s, {n} devices concurrently "
                f"{many:.2f} s (median of {repeats})"
            )
            print(
                f"    RATIO {n} concurrent / 1 = {many / one:.2f}x  (goal <= 1.3x for N=3; "
                f"sequential would be {n:.1f}x)"
            )
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=12)
    p.add_argument("--runs", type=int, default=100)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--fleet-n", type=int, default=3)
    p.add_argument("--fleet-repeats", type=int, default=3)
    p.add_argument("--skip-fleet", action="store_true")
    args = p.parse_args()
    from bench_helpers import convert_tiny

    with tempfile.TemporaryDirectory(prefix="edgepack-bench-") as d:
        tmp = Path(d)
        mid = convert_mid(tmp / "cnn96.tflite")
        tiny = convert_tiny(tmp / "tiny.tflite")
        print(
            f"machine: {run_harness(tiny, '--num_runs=1')['device']['cpu_model']}, "
            f"python {sys.version.split()[0]}"
        )
        fidelity(mid, args.threads, args.rounds, args.runs, tmp)
        overhead(tiny, 5, 20000)
        if not args.skip_fleet:
            fleet(mid, args.fleet_n, args.fleet_repeats, tmp)


if __name__ == "__main__":
    main()
