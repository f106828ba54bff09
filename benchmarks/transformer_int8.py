"""The 6-layer token encoder (tests/token_encoder.py, hidden 64, seq 32): one plain build with
the stock rpi4 profile's default vs the same build with --auto-fallback and a fidelity gate
the encoder recipe alone misses (so the bounded op-group search runs), both with a cold
export/conversion cache (--no-cache). Prints both walls, CPU seconds and their ratio (the
issue's bound: the auto-fallback build within 3x one plain build), and what each build shipped.

    python benchmarks/transformer_int8.py [--runs 1]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import cpu_once  # noqa: E402


def _cmd(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "edgepack", *args]


def main() -> None:
    from tests import token_encoder as te

    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=1)
    runs = ap.parse_args().runs
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        files = te.write_files(work / "data", calib=32, evaluation=64, cfg=te.SIX_LAYERS)
        env = {"PYTHONPATH": str(ROOT), "EDGEPACK_CACHE_DIR": str(work / "cache")}
        plain_args = te.build_args6(files, work / "plain", "--no-cache", "--force")
        wall, cpu, fwall, fcpu = [], [], [], []
        gate = 0.0
        for _ in range(runs):  # interleaved: plain, auto-fallback, plain, ...
            w, c = cpu_once(_cmd(plain_args), cwd=str(ROOT), env=env)
            wall.append(w)
            cpu.append(c)
            plain = json.loads((work / "plain" / "manifest.json").read_text())
            cos = plain["metrics"]["fidelity"]["cosine"]
            gate = gate or round(min(0.99999, cos + (1 - cos) / 2), 6)  # the recipe misses it
            fb_args = te.build_args6(
                files, work / "fb", "--no-cache", "--force", "--auto-fallback",
                "--min-fidelity", str(gate),
            )  # fmt: skip
            try:
                w, c = cpu_once(_cmd(fb_args), cwd=str(ROOT), env=env)
            except Exception as exc:  # exit 3: no recipe within the bounds met the gate
                print(f"auto-fallback build failed: {exc}")
                return
            fwall.append(w)
            fcpu.append(c)
        fb = json.loads((work / "fb" / "manifest.json").read_text())
    pw, fw = statistics.median(wall), statistics.median(fwall)
    pc, fc = statistics.median(cpu), statistics.median(fcpu)
    q = plain["quantization"]
    kept = q["route"].get("kept_float") or {}
    print("6-layer encoder (hidden 64, 4 heads, seq 32), target rpi4, cold cache")
    print("| build | wall s | CPU s | mode | fidelity | float compute ops |")
    print("|---|---|---|---|---|---|")
    print(
        f"| plain (profile default) | {pw:.1f} | {pc:.1f} | {q['mode']} "
        f"({q['route']['recipe']}) | {cos:.4f} | {kept.get('ops', 0)} (recipe) |"
    )
    rec = fb["quantization"]["fallback"]
    print(
        f"| --auto-fallback --min-fidelity {gate} | {fw:.1f} | {fc:.1f} | "
        f"{fb['quantization']['mode']} | {fb['metrics']['fidelity']['cosine']:.4f} | "
        f"{rec['recipe_kept']['ops']} (recipe) + {rec['ops_kept_out_of_int8']} (search) |"
    )
    print(
        f"search: {rec['groups_tried']} of at most {rec['max_steps']} groups tried, "
        f"stopped by {'; '.join(rec['stopped_by'])}; "
        f"steps {[(s['group'], s.get('accepted')) for s in rec['steps'][1:]]}"
    )
    print(f"stage seconds (auto-fallback build): {fb['build']['stage_seconds']}")
    print(f"runs: {runs}; walls plain {[round(x, 1) for x in wall]}, auto-fallback "
          f"{[round(x, 1) for x in fwall]}")  # fmt: skip
    print(
        f"ratio auto-fallback / plain (medians): wall {fw / pw:.2f}x, CPU {fc / pc:.2f}x "
        "(bound 3x; on a shared machine the CPU ratio is the steadier one)"
    )


if __name__ == "__main__":
    main()
