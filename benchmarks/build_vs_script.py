"""`edgepack build` wall time vs a plain script calling the same libraries for the same result.

The plain script does what a careful user would write by hand for the digits example on rpi4:
load the model and weights, torch.export, litert-torch convert, full-int8 with the TFLite
calibrator (min/max, 200 samples), evaluate float and int8 top-1 on the eval set, write the
.tflite. edgepack additionally checks parity, reads the flatbuffer back, measures host latency
and writes the manifest. Goal: <= 1.15x. Run: python benchmarks/build_vs_script.py [--runs 5]
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
from _timing import interleaved, paired_ratio

REPO = Path(__file__).resolve().parent.parent
DIGITS = REPO / "examples" / "digits"

PLAIN = textwrap.dedent(
    f"""
    import sys, os
    os.environ["LITERT_TORCH_SHOW_PROGRESS"] = "n"
    import numpy as np, torch, litert_torch
    from ai_edge_litert import _pywrap_tensorflow_lite_calibration_wrapper as cw
    from ai_edge_litert.interpreter import Interpreter
    sys.path.insert(0, {str(DIGITS)!r})
    from model import build_model
    m = build_model()
    m.load_state_dict(torch.load({str(DIGITS / "weights.pt")!r}, weights_only=True))
    m.eval()
    x = torch.zeros(1, 1, 32, 32)
    ep = torch.export.export(m, (x,))
    fb = litert_torch.convert(ep.module(), (x,)).model_content()
    calib = np.load({str(DIGITS / "calib.npz")!r})["x"][:200]
    w = cw.CalibrationWrapper(fb, [], [])
    w.Prepare()
    for s in calib:
        w.FeedTensor([s[None]])
    q = bytes(w.QuantizeModel(11, 11, False, 1, 5, False, False))
    ev = np.load({str(DIGITS / "eval.npz")!r})
    with torch.no_grad():
        f_acc = (m(torch.from_numpy(ev["x"])).argmax(1).numpy() == ev["y"]).mean()
    it = Interpreter(model_content=q)
    it.allocate_tensors()
    i, o = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]
    pred = []
    for s in ev["x"]:
        it.set_tensor(i, s[None])
        it.invoke()
        pred.append(it.get_tensor(o).argmax())
    q_acc = (np.array(pred) == ev["y"]).mean()
    open(sys.argv[1], "wb").write(q)
    print(f_acc, q_acc)
    """
)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="edgepack-bench-"))
    script = work / "plain.py"
    script.write_text(PLAIN)
    exe = shutil.which("edgepack", path=str(Path(sys.executable).parent)) or "edgepack"
    cmds = {
        "plain script": [sys.executable, str(script), str(work / "plain.tflite")],
        "edgepack build": [
            exe,
            "build",
            f"{DIGITS}/model.py:build_model",
            "--weights",
            str(DIGITS / "weights.pt"),
            "--input-shape",
            "1x1x32x32",
            "--target",
            "rpi4",
            "--calibration",
            str(DIGITS / "calib.npz"),
            "--eval",
            str(DIGITS / "eval.npz"),
            "--max-accuracy-drop",
            "1.0",
            "-o",
            str(work / "pkg"),
            "--force",
            "--quiet",
        ],
    }
    try:
        t = interleaved(cmds, args.runs, cwd=str(REPO))
    finally:
        same = (work / "pkg" / "model.tflite").read_bytes() == (work / "plain.tflite").read_bytes()
        shutil.rmtree(work, ignore_errors=True)
    r = paired_ratio(t["edgepack build"], t["plain script"])
    for k, v in t.items():
        print(f"{k:<16} median {statistics.median(v):.2f} s  (min {min(v):.2f}, max {max(v):.2f})")
    print(f"same model.tflite bytes as the plain script: {same}")
    print(f"ratio edgepack/plain {r:.3f} ({'meets' if r <= 1.15 else 'MISSES'} the 1.15x goal)")


if __name__ == "__main__":
    main()
