"""torchvision architectures through `edgepack build` for the stock targets: a pass/fail table.

Every architecture of benchmarks/zoo_models.py (random init, BatchNorm statistics re-estimated
on random data) is built with the real CLI, one subprocess per build
(`python -m edgepack build benchmarks/zoo_models.py:ARCH --input-shape 1x3xSxS ...`), for:

- ``rpi4`` (the profile's default: its preference list, the first mode that passes),
- ``rpi4:dynamic-range`` and ``rpi4:full-int8`` (an explicit ``--quantization``),
- ``android-gpu`` and ``coral-usb`` (their defaults).

The builds of one architecture share a fresh EDGEPACK_CACHE_DIR, so it is exported once and
converted once per I/O layout. Calibration and evaluation data are generated once: seeded random
images in [0, 1], normalised with ImageNet's mean and std, the evaluation set unlabelled. The
builds run with --no-accuracy-gate unless --gate: a random net's small, structureless outputs
make the profiles' fidelity guard (output cosine vs the float model >= 0.98) a statement about
random weights, not about the architecture; the fidelity column shows the cosine either way.

Columns: pass/fail with the reason (the build's one-line `error:`, or the exit code and the last
line of a traceback / timeout), the quantization mode shipped (with "(aeq)" where full-int8
came from ai-edge-quantizer), the float compute ops left in a full-int8 model, the
size ratio (model.tflite bytes / float32 parameter bytes), the relative float parity (max abs
difference of the float conversion / max abs reference output), the fidelity (output cosine
of the shipped model vs the float model on the eval data), the build's wall seconds (the first
build of an architecture includes its export and conversion).

Run: python benchmarks/zoo.py [--archs resnet18,mobilenet_v2] [--size 224]
     [--targets rpi4,rpi4:dynamic-range,rpi4:full-int8,android-gpu,coral-usb]
     [--out zoo.md] [--timeout 1800] [--calibration-samples 32] [--eval-samples 16]
The table (markdown) is printed and written to --out, rewritten after every build, so a long
run that is stopped still leaves the rows it finished.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MODELS = REPO / "benchmarks" / "zoo_models.py"
sys.path.insert(0, str(Path(__file__).resolve().parent))
from zoo_models import ARCHS, SIZE_ENV  # noqa: E402

# 15, cheapest first within the issue's list; swin_t on request
DEFAULT_ARCHS = [
    "resnet18",
    "mobilenet_v2",
    "mobilenet_v3_large",
    "efficientnet_b0",
    "squeezenet1_1",
    "shufflenet_v2_x1_0",
    "mnasnet1_0",
    "regnet_y_400mf",
    "googlenet",
    "lraspp_mobilenet_v3_large",
    "densenet121",
    "resnet50",
    "mobilenet_v3_small",
    "convnext_tiny",
    "vit_b_16",
]
DEFAULT_TARGETS = "rpi4,rpi4:dynamic-range,rpi4:full-int8,android-gpu,coral-usb"
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


@dataclass
class Row:
    arch: str
    target: str
    ok: bool
    reason: str = ""
    mode: str = ""
    float_ops: str = ""
    size_ratio: float | None = None
    rel_parity: float | None = None
    fidelity: float | None = None
    seconds: float = 0.0
    cache: str = ""


def images(n: int, side: int, seed: int) -> object:
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.random((n, 3, side, side), dtype=np.float32)
    mean = np.array(MEAN, np.float32)[:, None, None]
    std = np.array(STD, np.float32)[:, None, None]
    return ((x - mean) / std).astype(np.float32)


def param_bytes(arch: str, side: int) -> int:
    """float32 bytes of the architecture's parameters (buffers excluded)."""
    os.environ[SIZE_ENV] = str(side)
    import zoo_models

    model = zoo_models.build(arch) if arch.startswith("vit_") else _plain(arch)
    return 4 * sum(p.numel() for p in model.parameters())


def _plain(arch: str) -> object:
    """The architecture without the BatchNorm passes (only its parameter count is needed)."""
    from edgepack._torchvision import import_torchvision

    tv = import_torchvision()
    attr, kwargs = ARCHS[arch]
    fn: object = tv.models
    for part in attr.split("."):
        fn = getattr(fn, part)
    return fn(weights=None, **kwargs)  # type: ignore[operator]


def one_line_reason(rc: int, stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    err = next((ln for ln in lines if ln.startswith("error:")), None)
    if err is not None:
        return err.removeprefix("error:").strip()
    tail = lines[-1] if lines else "(no output)"
    return f"exit {rc}, no error line (a bug): {tail}"[:300]


def run_build(
    arch: str, target: str, side: int, work: Path, cache: Path, args: argparse.Namespace
) -> Row:
    profile, _, mode = target.partition(":")
    out = work / f"pkg-{arch}-{target.replace(':', '-')}"
    cmd = [sys.executable, "-m", "edgepack", "build", f"{MODELS}:{arch}"]
    cmd += ["--input-shape", f"1x3x{side}x{side}", "--target", profile]
    cmd += ["--quantization", mode] if mode else []
    cmd += ["--calibration", str(work / "calib.npz")]
    cmd += ["--calibration-samples", str(args.calibration_samples)]
    cmd += ["--eval", str(work / "eval.npz"), "--eval-samples", str(args.eval_samples)]
    cmd += [] if args.gate else ["--no-accuracy-gate"]
    cmd += ["--no-host-latency", "-o", str(out), "--force", "--json"]
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "EDGEPACK_CACHE_DIR": str(cache),
        SIZE_ENV: str(side),
    }
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd, env=env, cwd=str(work), capture_output=True, text=True, timeout=args.timeout
        )
    except subprocess.TimeoutExpired:
        return Row(
            arch, target, False, f"timed out after {args.timeout:.0f} s", seconds=args.timeout
        )
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        return Row(
            arch, target, False, one_line_reason(proc.returncode, proc.stderr), seconds=seconds
        )
    m = json.loads(proc.stdout)
    metrics = m.get("metrics", {})
    parity = metrics.get("float_parity") or {}
    fid = metrics.get("fidelity") or {}
    cache_st = m.get("build", {}).get("cache", {})
    return Row(
        arch,
        target,
        True,
        mode=m["quantization"]["mode"] + _engine(m),
        float_ops=_float_ops(m),
        size_ratio=m["files"]["model.tflite"]["bytes"] / PARAMS[arch],
        rel_parity=parity.get("max_rel_diff"),
        fidelity=fid.get("cosine"),
        seconds=seconds,
        cache="/".join(cache_st.get(k, {}).get("status", "-")[0] for k in ("export", "convert")),
    )


def _float_ops(m: dict) -> str:  # type: ignore[type-arg]
    """Float compute ops left in an int8 model (none is the goal); n/a for the float modes."""
    if m["quantization"]["mode"] != "full-int8":
        return "n/a"
    return ", ".join(m["model"].get("float_compute_ops", [])) or "0"


def _engine(m: dict) -> str:  # type: ignore[type-arg]
    route = m["quantization"].get("route") or {}
    engine = route.get("engine", "")
    return " (aeq)" if "quantizer" in engine and m["quantization"]["mode"] == "full-int8" else ""


PARAMS: dict[str, int] = {}
GATE = False


def table(rows: list[Row], side: int) -> str:
    head = (
        f"torchvision zoo at {side}x{side}, random init (BatchNorm re-estimated), "
        f"accuracy gate {'on' if GATE else 'off'}; "
        "cache e/c: export/convert hit (h) or miss (m)\n\n"
        "| arch | target | result | mode | float ops left | size ratio | rel parity "
        "| fidelity | build s | cache e/c |\n|---|---|---|---|---|---|---|---|---|---|"
    )
    out = [head]
    for r in rows:
        res = "pass" if r.ok else f"FAIL: {r.reason}".replace("|", "\\|")
        out.append(
            f"| {r.arch} | {r.target} | {res} | {r.mode} | {r.float_ops} | "
            f"{_f(r.size_ratio, '.3f')} | {_f(r.rel_parity, '.1e')} | {_f(r.fidelity, '.4f')} | "
            f"{r.seconds:.0f} | {r.cache} |"
        )
    passed = sum(r.ok for r in rows)
    out.append(f"\n{passed}/{len(rows)} builds passed")
    return "\n".join(out) + "\n"


def _f(v: float | None, spec: str) -> str:
    return "" if v is None else format(v, spec)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archs", default=",".join(DEFAULT_ARCHS), help="comma-separated")
    ap.add_argument("--size", type=int, default=224, help="input resolution")
    ap.add_argument("--targets", default=DEFAULT_TARGETS, help="profile or profile:mode")
    ap.add_argument("--out", type=Path, default=Path("zoo.md"))
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds per build")
    ap.add_argument("--calibration-samples", type=int, default=32)
    ap.add_argument("--eval-samples", type=int, default=16)
    ap.add_argument(
        "--gate",
        action="store_true",
        help="keep the profiles' fidelity guard (off by default: random weights' fidelity "
        "says little about trained ones; the column shows it)",
    )
    args = ap.parse_args()
    global GATE
    GATE = args.gate
    archs = [a for a in args.archs.split(",") if a]
    unknown = [a for a in archs if a not in ARCHS]
    if unknown:
        ap.error(f"unknown arch(s) {', '.join(unknown)}; known: {', '.join(ARCHS)}")
    targets = [t for t in args.targets.split(",") if t]
    work = Path(tempfile.mkdtemp(prefix="edgepack-zoo-"))
    rows: list[Row] = []
    try:
        import numpy as np

        np.savez(work / "calib.npz", x=images(args.calibration_samples, args.size, 0))
        np.savez(work / "eval.npz", x=images(args.eval_samples, args.size, 1))
        for arch in archs:
            PARAMS[arch] = param_bytes(arch, args.size)
            cache = work / f"cache-{arch}"
            for target in targets:
                rows.append(run_build(arch, target, args.size, work, cache, args))
                r = rows[-1]
                status = "pass" if r.ok else f"FAIL {r.reason}"
                print(f"{arch} {target}: {status} ({r.seconds:.0f} s)", flush=True)
                args.out.write_text(table(rows, args.size))
                shutil.rmtree(work / f"pkg-{arch}-{target.replace(':', '-')}", ignore_errors=True)
            shutil.rmtree(cache, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print()
    print(table(rows, args.size), end="")
    print(f"(written to {args.out})")


if __name__ == "__main__":
    main()
