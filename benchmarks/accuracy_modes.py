"""Accuracy, size and host latency of float32 / dynamic-range / full-int8 / full-int8 with
--auto-fallback, on the bundled digits CNN, on a CNN made sensitive to int8 on purpose and on a small
transformer block with a massive activation (both in tests/accuracy/sensitive_models.py).

Latency: every model of a table is timed in the same process, interleaved (5 rounds of
200 invokes, 1 thread, XNNPACK), median; ratios are against float32. Host latency is not
device latency.

    python benchmarks/accuracy_modes.py
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "accuracy"))

MODES = ("float32", "dynamic-range", "full-int8", "full-int8 --auto-fallback")


def build(
    source: str, weights: Path, shape: str, calib: Path, ev: Path, mode: str, out: Path, gate: str
):
    from edgepack.pipeline import BuildPlan
    from edgepack.pipeline import build as run_build
    from edgepack.targets import QuantMode, load_target

    fallback = mode.endswith("--auto-fallback")
    plan = BuildPlan(
        source=source,
        target=load_target("rpi4"),
        weights=weights,
        input_shapes=(shape,),
        quantization=QuantMode(mode.split()[0]),
        calibration=calib,
        eval=ev,
        max_accuracy_drop=0.5 if fallback and gate == "drop" else None,
        min_fidelity=0.99 if fallback and gate == "cosine" else None,
        auto_fallback=fallback,
        accuracy_gate=fallback,  # the plain modes are measured ungated, as they come out
        output=out,
        force=True,
        latency_runs=0,
    )
    return run_build(plan).manifest


def latencies(paths: list[Path], rounds: int = 5, runs: int = 200) -> list[float]:
    from edgepack.runtime import Runner

    runners = [Runner(p) for p in paths]
    samples: list[list[float]] = [[] for _ in paths]
    for _ in range(rounds):
        for k, r in enumerate(runners):
            samples[k].append(r.latency_ms(warmup=10, runs=runs)["median_ms"])
    return [statistics.median(s) for s in samples]


def table(
    title: str, source: str, weights: Path, shape: str, calib: Path, ev: Path, gate: str = "drop"
) -> None:
    from edgepack.errors import QuantizationError

    work = Path(tempfile.mkdtemp(prefix="bench-acc-"))
    rows = []
    refused = {}
    for k, mode in enumerate(MODES):
        try:
            m = build(source, weights, shape, calib, ev, mode, work / f"m{k}", gate)
        except QuantizationError as exc:
            refused[mode] = exc.message
            continue
        rows.append((mode, m, work / f"m{k}" / "model.tflite"))
    lat = latencies([p for _, _, p in rows])
    print(f"\n{title}")
    print(
        f"{'mode':28} {'top-1 %':>8} {'drop':>7} {'cosine':>8} {'KB':>7} "
        f"{'ms':>7} {'vs fp32':>8}  float ops kept"
    )
    for (mode, m, _), ms in zip(rows, lat, strict=True):
        acc = m["metrics"]["accuracy"]
        fb = m["quantization"].get("fallback")
        kept = (
            f"{fb['ops_kept_out_of_int8']} of {fb['ops_total']}"
            if fb
            else ("-" if "auto-fallback" not in mode else "0 (gate met)")
        )
        print(
            f"{mode:28} {acc['quantized']:8.2f} {acc['drop_points']:7.2f} "
            f"{m['metrics']['fidelity']['cosine']:8.4f} {m['metrics']['size_bytes'] / 1024:7.1f} "
            f"{ms:7.4f} {ms / lat[0]:8.2f}  {kept}"
        )
    for mode, why in refused.items():
        print(f"{mode:28} refused: {why}")


def main() -> None:
    import sensitive_models
    import torch

    torch.set_num_threads(1)
    digits = ROOT / "examples" / "digits"
    table(
        "bundled digits CNN (32x32 input, 450 eval images)",
        f"{digits / 'model.py'}:build_model",
        digits / "weights.pt",
        "1x1x32x32",
        digits / "calib.npz",
        digits / "eval.npz",
    )
    files = sensitive_models.write_digits_files(Path(tempfile.mkdtemp(prefix="bench-s-")))
    table(
        "int8-sensitive CNN (8x8 digits, conv1 channel 0 x300; 450 eval images)",
        f"{ROOT / 'tests' / 'accuracy' / 'sensitive_models.py'}:build_digits",
        files["weights"],
        "1x1x8x8",
        files["calib"],
        files["eval"],
    )
    enc = sensitive_models.write_encoder_files(Path(tempfile.mkdtemp(prefix="bench-e-")))
    table(
        "transformer block (int64 ids 1x16, massive activation on token 0; 300 eval sequences; "
        "fallback gate: cosine >= 0.99)",
        f"{ROOT / 'tests' / 'accuracy' / 'sensitive_models.py'}:build_encoder",
        enc["weights"],
        "ids=1x16:int64",
        enc["calib"],
        enc["eval"],
        gate="cosine",
    )


if __name__ == "__main__":
    main()
