"""CPU time of `edgepack build` vs a plain script calling the same libraries for the same bytes.

The plain script does what a careful user would write by hand: load the model (and weights),
torch.export, litert-torch convert, quantize (full-int8 with the TFLite calibrator, min/max;
or dynamic-range with ai-edge-quantizer), evaluate the float and the quantized model on the
eval set, write the .tflite. edgepack additionally checks float parity, reads the flatbuffer
back, runs the pre-flight, measures host latency and writes the manifest.

Three sizes, defined here with fixed seeds (nothing downloaded): the digits example (93k
params), a MobileNetV2-like net (3.5M) and a ResNet-50-like net (25.6M), both at 224x224
(benchmarks/bench_models.py). Each size in full-int8 and dynamic-range, for rpi4. The measure
is CPU time (user + system of the command and its threads, resource.getrusage of the
children), which a busy machine disturbs less than wall time. Cold cache: every edgepack run
gets an empty EDGEPACK_CACHE_DIR (and --no-cache where the CLI has it). Goal: <= 1.15x at
every size.

Run: python benchmarks/build_vs_script.py [--sizes digits,mobilenet_v2,resnet50]
     [--modes full-int8,dynamic-range] [--runs 1]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import cpu_once, seeded_data

REPO = Path(__file__).resolve().parent.parent
DIGITS = REPO / "examples" / "digits"
MODELS = REPO / "benchmarks" / "bench_models.py"
GOAL = 1.15

# name: (factory spec, weights, input shape, calibration samples, eval samples)
SIZES = {
    "digits": (f"{DIGITS}/model.py:build_model", DIGITS / "weights.pt", (1, 1, 32, 32), 200, 0),
    "mobilenet_v2": (f"{MODELS}:mobilenet_v2_like", None, (1, 3, 224, 224), 16, 16),
    "resnet50": (f"{MODELS}:resnet50_like", None, (1, 3, 224, 224), 16, 16),
}

PLAIN = textwrap.dedent(
    """
    import importlib.util, inspect, os, sys
    os.environ["LITERT_TORCH_SHOW_PROGRESS"] = "n"
    import numpy as np, torch, litert_torch
    from ai_edge_litert.interpreter import Interpreter
    spec, weights, shape, mode, calib, n_calib, ev, out = sys.argv[1:]
    path, factory = spec.rsplit(":", 1)
    # the module's name lands in tensor names: the file's stem, as edgepack names it
    mod_spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
    mod = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(mod)
    m = getattr(mod, factory)()
    if weights:
        m.load_state_dict(torch.load(weights, weights_only=True))
    m.eval()
    x = torch.zeros(*(int(d) for d in shape.split("x")))
    # one export (litert-torch's own); the signature's input named after forward()'s
    # argument, as apps read it (not args_0)
    name = next(iter(inspect.signature(m.forward).parameters))
    fb = litert_torch.convert(m, (), sample_kwargs={name: x}).model_content()
    if mode == "full-int8":
        from ai_edge_litert import _pywrap_tensorflow_lite_calibration_wrapper as cw
        data = np.load(calib)["x"][: int(n_calib)]
        w = cw.CalibrationWrapper(fb, [], [])
        w.Prepare()
        for s in data:
            w.FeedTensor([s[None]])
        q = bytes(w.QuantizeModel(11, 11, False, 1, 5, False, False))
    else:
        from ai_edge_quantizer import quantizer, recipe
        qz = quantizer.Quantizer(bytearray(fb))
        qz.load_quantization_recipe(recipe.dynamic_wi8_afp32())
        q = bytes(qz.quantize(enable_progress_report=False).quantized_model)
    evd = np.load(ev)
    with torch.no_grad():
        ref = m(torch.from_numpy(evd["x"])).numpy()
    it = Interpreter(model_content=q)
    it.allocate_tensors()
    i, o = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]
    got = []
    for s in evd["x"]:
        it.set_tensor(i, s[None])
        it.invoke()
        got.append(it.get_tensor(o)[0])
    got = np.array(got)
    if "y" in evd:
        print((ref.argmax(1) == evd["y"]).mean(), (got.argmax(1) == evd["y"]).mean())
    else:
        a, b = ref.ravel(), got.ravel()
        print(float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b))))
    open(out, "wb").write(q)
    """
)


def _data(size: str, work: Path) -> tuple[Path, Path]:
    """(calibration, eval) files: the example's own for digits, seeded random data else."""
    if size == "digits":
        return DIGITS / "calib.npz", DIGITS / "eval.npz"
    _, _, shape, n_calib, n_eval = SIZES[size]
    return seeded_data(size, shape, n_calib, n_eval, work)


def _commands(size: str, mode: str, work: Path) -> dict[str, list[str]]:
    spec, weights, shape, n_calib, _ = SIZES[size]
    calib, ev = _data(size, work)
    shape_s = "x".join(str(d) for d in shape)
    plain_out = work / f"{size}-{mode}.tflite"
    build = [sys.executable, "-m", "edgepack", "build", spec, "--input-shape", shape_s]
    build += ["--weights", str(weights)] if weights else []
    target = "rpi4"
    profile = (REPO / "targets" / "rpi4.toml").read_text()
    if "max_model_kb = 16384" in profile:  # a release cap older profiles had: not a device fact
        target = str(work / "rpi4.toml")
        Path(target).write_text(profile.replace("max_model_kb = 16384", "max_model_kb = 65536"))
    build += ["--target", target, "--quantization", mode, "--eval", str(ev)]
    if mode == "full-int8":
        build += ["--calibration", str(calib), "--calibration-samples", str(n_calib)]
    # digits has labels (the profile's accuracy guard); random nets get no gate to pass
    build += ["--max-accuracy-drop", "1.0"] if size == "digits" else ["--no-accuracy-gate"]
    if "--no-cache" in (REPO / "edgepack" / "cli" / "build.py").read_text():
        build.append("--no-cache")
    build += ["-o", str(work / f"pkg-{size}-{mode}"), "--force", "--quiet"]
    plain = [sys.executable, str(work / "plain.py"), spec, str(weights or ""), shape_s, mode]
    plain += [str(calib), str(n_calib), str(ev), str(plain_out)]
    return {"plain script": plain, "edgepack build": build}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="digits,mobilenet_v2,resnet50")
    ap.add_argument("--modes", default="full-int8,dynamic-range")
    ap.add_argument("--runs", type=int, default=1, help="pairs per size and mode")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="edgepack-bench-"))
    (work / "plain.py").write_text(PLAIN)
    env = {"PYTHONPATH": str(REPO)}
    rows = []
    try:
        for size in args.sizes.split(","):
            for mode in args.modes.split(","):
                cmds = _commands(size, mode, work)
                cpu: dict[str, list[float]] = {k: [] for k in cmds}
                wall: dict[str, list[float]] = {k: [] for k in cmds}
                for _ in range(args.runs):  # interleaved: drift hits both alike
                    for k, cmd in cmds.items():
                        cache = Path(tempfile.mkdtemp(prefix="cache-", dir=work))
                        w, c = cpu_once(cmd, str(REPO), {**env, "EDGEPACK_CACHE_DIR": str(cache)})
                        wall[k].append(w)
                        cpu[k].append(c)
                pkg = work / f"pkg-{size}-{mode}" / "model.tflite"
                same = pkg.read_bytes() == (work / f"{size}-{mode}.tflite").read_bytes()
                ratio = statistics.median(
                    e / p for e, p in zip(cpu["edgepack build"], cpu["plain script"], strict=True)
                )
                rows.append((size, mode, cpu, wall, ratio, same))
                print(_row(*rows[-1]), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print()
    print("| size | mode | plain CPU s | edgepack CPU s | ratio | same bytes |")
    print("|---|---|---|---|---|---|")
    for size, mode, cpu, _, ratio, same in rows:
        print(
            f"| {size} | {mode} | {statistics.median(cpu['plain script']):.1f} | "
            f"{statistics.median(cpu['edgepack build']):.1f} | {ratio:.3f} | {same} |"
        )
    worst = max(r[4] for r in rows)
    print(f"worst ratio {worst:.3f} ({'meets' if worst <= GOAL else 'MISSES'} the {GOAL}x goal)")


def _row(size: str, mode: str, cpu: dict, wall: dict, ratio: float, same: bool) -> str:  # type: ignore[type-arg]
    med = {k: statistics.median(v) for k, v in cpu.items()}
    wmed = {k: statistics.median(v) for k, v in wall.items()}
    return (
        f"{size:<13} {mode:<14} CPU plain {med['plain script']:.1f} s, edgepack "
        f"{med['edgepack build']:.1f} s, ratio {ratio:.3f} (wall {wmed['plain script']:.1f} / "
        f"{wmed['edgepack build']:.1f} s), same bytes: {same}"
    )


if __name__ == "__main__":
    main()
