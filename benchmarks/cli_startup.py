"""CLI start-up: `edgepack --help` and `edgepack targets list` vs a bare `import typer`.

Goal (issue: core build): <= 1.5x. Heavy imports (torch, litert_torch, ai_edge_*) must be
lazy. Run: python benchmarks/cli_startup.py [--runs 15]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import interleaved, paired_ratio


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args()
    exe = shutil.which("edgepack", path=str(Path(sys.executable).parent)) or "edgepack"
    cmds = {
        "import typer": [sys.executable, "-c", "import typer"],
        "edgepack --help": [exe, "--help"],
        "edgepack targets list": [exe, "targets", "list"],
    }
    t = interleaved(cmds, args.runs)
    base = t["import typer"]
    print(f"{'command':<24}{'median s':>10}{'ratio':>8}  goal <= 1.5x")
    worst = 0.0
    for k, v in t.items():
        r = paired_ratio(v, base)
        if k != "import typer":
            worst = max(worst, r)
        print(f"{k:<24}{statistics.median(v):>10.3f}{r:>8.2f}")
    print(f"worst ratio {worst:.2f} ({'meets' if worst <= 1.5 else 'MISSES'} the 1.5x goal)")


if __name__ == "__main__":
    main()
