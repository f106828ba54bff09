"""Compression on the bundled digits example: size, speed and accuracy of the built TFLite models.

Every row goes through the same code a user's build does: the model source is loaded with
``edgepack.source.load_source``, compressed with ``edgepack.compression.run_compression``
(prune -> distill), then exported, converted, quantized and validated by
``edgepack.pipeline.build_from_model``. Latencies of all models are measured side by side in
this process, interleaved over several rounds (1 thread, XNNPACK), and compared as ratios.

    python benchmarks/compression.py [--epochs 5] [--rounds 5] [--runs 300]

Claims checked (issue: compression stages):
  1. channels:0.5 + distillation, float32: latency <= 0.6x and params <= 0.55x of the unpruned
     float model, top-1 within 1 point of it; full-int8 on top (reported, not gated).
  2. magnitude:0.8 + full-int8: gzip-compressed .tflite <= 0.5x of the unpruned full-int8's.
  3. channels:0.5 without distillation loses more accuracy than with it.
"""

from __future__ import annotations

import argparse
import gzip
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DIGITS = ROOT / "examples" / "digits"


@dataclass
class Row:
    label: str
    mode: str
    params: int
    nonzero: int
    macs: int
    top1_torch: float
    top1_tflite: float
    size: int
    gzip_size: int
    package_gz: int  # the whole package folder as .tar.gz (what an OTA update ships)
    path: Path
    latency: list[float]

    @property
    def latency_ms(self) -> float:
        return statistics.median(self.latency)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=5, help="distillation epochs")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved latency rounds")
    ap.add_argument("--runs", type=int, default=300, help="invokes per latency round")
    args = ap.parse_args()

    import torch

    from edgepack.compression import run_compression
    from edgepack.data import load_dataset
    from edgepack.pipeline import BuildPlan, build_from_model
    from edgepack.runtime import Runner
    from edgepack.source import load_source
    from edgepack.stages import modelstats
    from edgepack.stages.base import StageContext
    from edgepack.stages.distill import DistillSpec
    from edgepack.stages.prune import parse_prune_spec
    from edgepack.targets import QuantMode, load_target

    torch.set_num_threads(1)  # deterministic and comparable on a shared machine
    source = f"{DIGITS / 'model.py'}:build_model"
    model = load_source(source, DIGITS / "weights.pt", ["1x1x32x32"])
    calib = load_dataset(DIGITS / "calib.npz", model.inputs, purpose="calibration", samples=200)
    ev = load_dataset(DIGITS / "eval.npz", model.inputs, purpose="evaluation")
    train = DIGITS / "train.npz"
    kd = DistillSpec(train=train, epochs=args.epochs)

    variants: list[tuple[str, Any, Any]] = [
        ("unpruned", None, None),
        ("channels:0.5, no distillation", parse_prune_spec("channels:0.5"), None),
        ("channels:0.5 + distillation", parse_prune_spec("channels:0.5"), kd),
        ("channels:0.5 + label fine-tune", parse_prune_spec("channels:0.5"), "finetune"),
        ("magnitude:0.8, no distillation", parse_prune_spec("magnitude:0.8"), None),
        ("magnitude:0.8 + distillation", parse_prune_spec("magnitude:0.8"), kd),
    ]
    modes = {
        "unpruned": (QuantMode.FLOAT32, QuantMode.FULL_INT8),
        "channels:0.5, no distillation": (QuantMode.FLOAT32,),
        "channels:0.5 + distillation": (QuantMode.FLOAT32, QuantMode.FULL_INT8),
        "channels:0.5 + label fine-tune": (QuantMode.FLOAT32,),
        "magnitude:0.8, no distillation": (QuantMode.FULL_INT8,),
        "magnitude:0.8 + distillation": (QuantMode.FULL_INT8,),
    }
    target = load_target("host")
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="edgepack-bench-compress-") as tmp:
        for label, prune, distill in variants:
            print(f"== {label}", file=sys.stderr, flush=True)
            ctx = StageContext(Path(tmp) / "work" / str(len(rows)), seed=0)
            if distill == "finetune":  # a baseline: plain cross entropy, same schedule
                compressed = run_compression(model, prune, None, ctx, ev)
                compressed.module = finetune(compressed.module, train, args.epochs)
            else:
                compressed = run_compression(model, prune, distill, ctx, ev)
            stats = modelstats.summary(compressed.module, compressed.example_inputs, ev)
            for mode in modes[label]:
                plan = BuildPlan(
                    source=source,
                    target=target,
                    quantization=mode,
                    calibration=DIGITS / "calib.npz",
                    eval=DIGITS / "eval.npz",
                    latency_runs=0,  # measured below, interleaved across all models
                    force=True,
                    accuracy_gate=False,  # measures what each recipe costs, ungated
                )
                dest = Path(tmp) / f"pkg{len(rows)}"
                bctx = StageContext(Path(tmp) / "work" / f"b{len(rows)}", seed=0)
                result = build_from_model(plan, compressed, "digits", dest, calib, ev, bctx)
                tfl = dest / "model.tflite"
                data = tfl.read_bytes()
                rows.append(
                    Row(
                        label=label,
                        mode=mode.value,
                        params=stats["params"],
                        nonzero=stats["nonzero_params"],
                        macs=stats["macs"],
                        top1_torch=stats["top1"],
                        top1_tflite=result.manifest["metrics"]["accuracy"]["quantized"],
                        size=len(data),
                        gzip_size=len(gzip.compress(data, 9, mtime=0)),
                        package_gz=tar_gz_size(dest),
                        path=tfl,
                        latency=[],
                    )
                )
        print("== latency", file=sys.stderr, flush=True)
        runners = [Runner(r.path, threads=1) for r in rows]
        for _ in range(args.rounds):
            for row, runner in zip(rows, runners, strict=True):
                row.latency.append(runner.latency_ms(warmup=20, runs=args.runs)["median_ms"])

    print_table(rows)
    return check_claims(rows)


def finetune(module: Any, train: Path, epochs: int, lr: float = 1e-3, batch: int = 64) -> Any:
    """Hard-label fine-tuning with the distillation stage's optimizer and schedule, for
    comparison: what distillation adds over plain training on labelled data."""
    import math

    import numpy as np
    import torch
    import torch.nn.functional as F

    with np.load(train) as z:
        x, y = torch.from_numpy(z["x"]), torch.from_numpy(z["y"].astype(np.int64))
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(module.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * math.ceil(len(x) / batch))
    module.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), batch):
            b = perm[i : i + batch]
            loss = F.cross_entropy(module(x[b]), y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return module.eval()


def tar_gz_size(folder: Path) -> int:
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=9) as tar:
        for f in sorted(folder.rglob("*")):
            tar.add(f, arcname=str(f.relative_to(folder)), recursive=False)
    return len(buf.getvalue())


def find(rows: list[Row], label: str, mode: str) -> Row:
    return next(r for r in rows if r.label == label and r.mode == mode)


def print_table(rows: list[Row]) -> None:
    from edgepack.cli.output import table

    base_f = find(rows, "unpruned", "float32")
    base_q = find(rows, "unpruned", "full-int8")
    out = []
    for r in rows:
        base = base_f if r.mode == "float32" else base_q
        out.append(
            [
                r.label,
                r.mode,
                f"{r.params} ({r.params / base.params:.2f}x)",
                f"{r.nonzero} ({r.nonzero / base.nonzero:.2f}x)",
                f"{r.macs / 1e6:.2f}M ({r.macs / base.macs:.2f}x)",
                f"{r.top1_torch:.2f}",
                f"{r.top1_tflite:.2f}",
                f"{r.size / 1024:.1f} ({r.size / base.size:.2f}x)",
                f"{r.gzip_size / 1024:.1f} ({r.gzip_size / base.gzip_size:.2f}x)",
                f"{r.package_gz / 1024:.1f} ({r.package_gz / base.package_gz:.2f}x)",
                f"{r.latency_ms:.4f} ({r.latency_ms / base.latency_ms:.2f}x)",
            ]
        )
    print(
        table(
            [
                "model",
                "tflite",
                "params",
                "nonzero params",
                "MACs",
                "top-1 torch",
                "top-1 tflite",
                "KB",
                "gzip KB",
                "package .tar.gz KB",
                "latency ms",
            ],
            out,
        )
    )
    print("(ratios vs the unpruned model of the same tflite mode; latency: median of rounds)")


def check_claims(rows: list[Row]) -> int:
    base_f = find(rows, "unpruned", "float32")
    base_q = find(rows, "unpruned", "full-int8")
    kd_f = find(rows, "channels:0.5 + distillation", "float32")
    kd_q = find(rows, "channels:0.5 + distillation", "full-int8")
    nokd = find(rows, "channels:0.5, no distillation", "float32")
    ft = find(rows, "channels:0.5 + label fine-tune", "float32")
    mag = find(rows, "magnitude:0.8, no distillation", "full-int8")
    mag_kd = find(rows, "magnitude:0.8 + distillation", "full-int8")
    claims = [
        (
            "channels:0.5+KD float latency <= 0.6x unpruned float",
            kd_f.latency_ms / base_f.latency_ms,
            0.6,
        ),
        ("channels:0.5+KD params <= 0.55x unpruned", kd_f.params / base_f.params, 0.55),
        (
            "channels:0.5+KD top-1 drop (tflite float, points) <= 1",
            base_f.top1_tflite - kd_f.top1_tflite,
            1.0,
        ),
        (
            "magnitude:0.8 full-int8 gzip <= 0.5x unpruned full-int8 gzip",
            mag.gzip_size / base_q.gzip_size,
            0.5,
        ),
        (
            "magnitude:0.8 full-int8 package .tar.gz <= 0.5x unpruned full-int8's",
            mag.package_gz / base_q.package_gz,
            0.5,
        ),
        (
            "magnitude:0.8+KD full-int8 gzip <= 0.5x unpruned full-int8 gzip",
            mag_kd.gzip_size / base_q.gzip_size,
            0.5,
        ),
        (
            "channels:0.5 accuracy lost, KD minus no KD (points) < 0",
            (base_f.top1_tflite - kd_f.top1_tflite) - (base_f.top1_tflite - nokd.top1_tflite),
            0.0,
        ),
    ]
    print()
    failed = 0
    for text, value, limit in claims:
        ok = value < limit if limit == 0.0 else value <= limit
        failed += not ok
        print(f"{'PASS' if ok else 'FAIL'}  {text}: {value:.3f}")
    print(
        f"info  channels:0.5+KD full-int8: top-1 {kd_q.top1_tflite:.2f} (unpruned float "
        f"{base_f.top1_tflite:.2f}, unpruned full-int8 {base_q.top1_tflite:.2f}), "
        f"gzip {kd_q.gzip_size / base_q.gzip_size:.2f}x and latency "
        f"{kd_q.latency_ms / base_q.latency_ms:.2f}x of the unpruned full-int8, "
        f"latency {kd_q.latency_ms / base_f.latency_ms:.2f}x of the unpruned float"
    )
    print(
        f"info  channels:0.5 top-1 (tflite float): {nokd.top1_tflite:.2f} pruned only, "
        f"{ft.top1_tflite:.2f} after label fine-tuning, {kd_f.top1_tflite:.2f} after "
        "distillation (same epochs, optimizer, schedule)"
    )
    print(
        f"info  magnitude:0.8 full-int8 top-1: {mag.top1_tflite:.2f} without distillation, "
        f"{mag_kd.top1_tflite:.2f} with; sparsity kept by distillation: gzip "
        f"{mag_kd.gzip_size / base_q.gzip_size:.2f}x vs {mag.gzip_size / base_q.gzip_size:.2f}x"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
