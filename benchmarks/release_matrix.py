"""Matrix build vs one build per target, measured side by side in one run.

Builds the bundled digits model for N targets three ways, each from a clean output folder:
  A. N separate `edgepack build SOURCE --target T` processes, one after the other
     (what a CI script looping over targets does: N loads, N exports);
  B. `edgepack build` from an edgepack.toml, --jobs 1 (one export, targets in sequence);
  C. `edgepack build` from the same edgepack.toml, --jobs 2 (one export, 2 processes).
Prints wall times and the ratios B/A and C/A. On a busy machine the absolute times move;
the ratios are what to read. Run: python benchmarks/release_matrix.py [--targets rpi4,host]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DIGITS = REPO / "examples" / "digits"


def run(argv: list[str], cwd: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "edgepack", *argv],
        cwd=cwd,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--targets", default="rpi4,host,android-arm64")
    args = ap.parse_args()
    targets = args.targets.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        proj = Path(tmp)
        for f in ("model.py", "weights.pt", "calib.npz", "eval.npz"):
            shutil.copyfile(DIGITS / f, proj / f)
        entries = "".join(f'\n[[targets]]\ntarget = "{t}"\n' for t in targets)
        (proj / "edgepack.toml").write_text(
            '[model]\nsource = "model.py:build_model"\nweights = "weights.pt"\n'
            'input_shapes = ["1x1x32x32"]\nname = "digits"\n'
            '[data]\ncalibration = "calib.npz"\neval = "eval.npz"\n' + entries
        )
        common = ["--calibration", "calib.npz", "--eval", "eval.npz", "--name", "digits"]
        a = 0.0
        for t in targets:
            a += run(
                [
                    "build",
                    "model.py:build_model",
                    "--weights",
                    "weights.pt",
                    "--input-shape",
                    "1x1x32x32",
                    "--target",
                    t,
                    *common,
                    "-o",
                    f"a/{t}",
                ],
                proj,
            )
        b = run(["build", "--jobs", "1", "--output-dir", "b"], proj)
        c = run(["build", "--jobs", "2", "--output-dir", "c"], proj)
        same = all(
            (proj / "a" / t / "model.tflite").read_bytes()
            == (proj / "c" / f"digits-{t}" / "model.tflite").read_bytes()
            for t in targets
        )
    print(f"targets: {', '.join(targets)} (cores: {os.cpu_count()})")
    print(f"A  {len(targets)} single-target builds, sequential: {a:6.1f} s")
    print(f"B  matrix, --jobs 1 (one export):        {b:6.1f} s   B/A = {b / a:.2f}")
    print(f"C  matrix, --jobs 2 (one export):        {c:6.1f} s   C/A = {c / a:.2f}")
    print(f"same model.tflite bytes in A and C: {same}")


if __name__ == "__main__":
    main()
