"""Wall time of a second build for another target with the export/conversion cache warm.

One benchmark run, one fresh EDGEPACK_CACHE_DIR per repeat:

1. cold: `edgepack build` for the first target (rpi4) with an empty cache (exports,
   converts, fills the cache);
2. warm: the same model for another target (host), cache warm (export and conversion hit);
3. no-cache: that second build again with `--no-cache`, the side-by-side reference.

It prints the walls and the ratio warm / cold (goal <= 0.35x) and warm / no-cache. Every build
runs as `python -m edgepack` with this checkout on PYTHONPATH and `--no-host-latency`, so host
timing noise does not dominate. Repeats are interleaved (cold, warm, no-cache, cold, ...);
the ratios are medians of the per-repeat ratios.

Models (fixed seeds, nothing downloaded): a MobileNetV2-like net (3.5M params, 224x224,
benchmarks/bench_models.py) or, for a quick run, the digits example. Calibration (full-int8)
and eval data for the random net are generated here with a fixed seed.

Run: python benchmarks/cache.py [--model mobilenet_v2|digits]
     [--mode dynamic-range|full-int8] [--runs 1]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import cpu_once, seeded_data

REPO = Path(__file__).resolve().parent.parent
DIGITS = REPO / "examples" / "digits"
MODELS = REPO / "benchmarks" / "bench_models.py"
GOAL = 0.35
FIRST, SECOND = "rpi4", "host"

# name: (factory spec, weights, input shape, calibration samples, eval samples)
MODELS_TABLE = {
    "digits": (f"{DIGITS}/model.py:build_model", DIGITS / "weights.pt", (1, 1, 32, 32), 200, 0),
    "mobilenet_v2": (f"{MODELS}:mobilenet_v2_like", None, (1, 3, 224, 224), 16, 8),
}


def _data(model: str, work: Path) -> tuple[Path, Path]:
    """(calibration, eval) files: the example's own for digits, seeded random data else."""
    if model == "digits":
        return DIGITS / "calib.npz", DIGITS / "eval.npz"
    _, _, shape, n_calib, n_eval = MODELS_TABLE[model]
    return seeded_data(model, shape, n_calib, n_eval, work)


def _build(model: str, mode: str, target: str, work: Path, out: str) -> list[str]:
    spec, weights, shape, n_calib, _ = MODELS_TABLE[model]
    calib, ev = _data(model, work)
    cmd = [sys.executable, "-m", "edgepack", "build", spec]
    cmd += ["--input-shape", "x".join(str(d) for d in shape)]
    cmd += ["--weights", str(weights)] if weights else []
    cmd += ["--target", target, "--quantization", mode, "--eval", str(ev)]
    if mode == "full-int8":
        cmd += ["--calibration", str(calib), "--calibration-samples", str(n_calib)]
    # digits has labels (the profile's accuracy guard); a random net gets no gate to pass
    cmd += ["--max-accuracy-drop", "1.0"] if model == "digits" else ["--no-accuracy-gate"]
    cmd += ["--no-host-latency", "-o", str(work / out), "--force", "--quiet"]
    return cmd


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=sorted(MODELS_TABLE), default="mobilenet_v2")
    ap.add_argument("--mode", choices=("dynamic-range", "full-int8"), default="dynamic-range")
    ap.add_argument("--runs", type=int, default=1, help="interleaved repeats")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="edgepack-bench-"))
    walls: dict[str, list[float]] = {"cold": [], "warm": [], "no-cache": []}
    try:
        cold = _build(args.model, args.mode, FIRST, work, "pkg-cold")
        warm = _build(args.model, args.mode, SECOND, work, "pkg-warm")
        cmds = {"cold": cold, "warm": warm, "no-cache": [*warm, "--no-cache"]}
        for i in range(args.runs):
            cache = Path(tempfile.mkdtemp(prefix="cache-", dir=work))  # fresh per repeat
            env = {"PYTHONPATH": str(REPO), "EDGEPACK_CACHE_DIR": str(cache)}
            for k, cmd in cmds.items():
                walls[k].append(cpu_once(cmd, str(REPO), env)[0])
            print(
                f"run {i + 1}: cold ({FIRST}) {walls['cold'][-1]:.1f} s, warm ({SECOND}) "
                f"{walls['warm'][-1]:.1f} s, no-cache ({SECOND}) {walls['no-cache'][-1]:.1f} s",
                flush=True,
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print()
    print(f"{args.model}, {args.mode}, {args.runs} run(s), wall seconds (min / median):")
    for k, v in walls.items():
        target = FIRST if k == "cold" else SECOND
        print(f"  {k:<9} {target:<5} {min(v):7.1f} / {statistics.median(v):7.1f}")
    ratio = statistics.median(w / c for w, c in zip(walls["warm"], walls["cold"], strict=True))
    ref = statistics.median(w / n for w, n in zip(walls["warm"], walls["no-cache"], strict=True))
    verdict = "meets" if ratio <= GOAL else "MISSES"
    print(f"warm / cold {ratio:.3f}x ({verdict} the {GOAL}x goal); warm / no-cache {ref:.3f}x")


if __name__ == "__main__":
    main()
