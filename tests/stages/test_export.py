"""Stage `export`: a model torch.export cannot trace gets a short error naming where and why."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

DETECTOR = '''
import torch


def batched_nms(boxes, scores, idxs, thr):
    """A torchvision-free stand-in: class offsets, then a greedy loop over the kept boxes."""
    offs = boxes + idxs[:, None].float() * 1000
    order = scores.argsort(descending=True)
    kept = []
    while order.numel() > 0:
        i = order[0]
        kept.append(i)
        iou = (offs[order[1:], 0] - offs[i, 0]).abs()
        order = order[1:][iou > thr]
    return torch.stack(kept)


class Detector(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.head = torch.nn.Linear(8, 6 * 32)

    def forward(self, x):
        out = self.head(x).view(-1, 32, 6)
        boxes, scores, classes = [], [], []
        for c in range(CLASSES):
            s = out[0, :, 4 + c % 2].sigmoid()
            keep = s > 0.5
            boxes.append(out[0, :, :4][keep])
            scores.append(s[keep])
            classes.append(torch.full_like(s[keep], c))
        boxes, scores = torch.cat(boxes), torch.cat(scores)
        keep = batched_nms(boxes, scores, torch.cat(classes).long(), 0.3)
        return boxes[keep]


def build():
    return Detector()
'''


def test_data_dependent_post_processing_gets_a_short_error(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """60 classes: torch's guard is on the sum of 60 unbacked sizes (u0 + u1 + ... + u59)."""
    f = tmp_path / "detector.py"
    f.write_text(DETECTOR.replace("CLASSES", "60"))
    out = tmp_path / "p"
    r = cli("build", f"{f}:build", "--input-shape", "1x8", "--target", "host", "-o", out, "--quiet")
    assert r.code == 2
    err_line, hint_line = r.err.strip().splitlines()
    assert len(err_line) < 400, err_line
    assert err_line.startswith(
        "error: torch.export cannot trace the model: GuardOnDataDependentSymNode: Could not "
        "guard on data-dependent expression u0 + u1 + "
    )
    assert "chars)" in err_line and "u59" not in err_line  # the expression is cut
    assert "(at detector.py:10: while order.numel() > 0:)" in err_line  # torch's frame
    assert hint_line == (
        "hint: the model's control flow or output size depends on the data (post-processing "
        "such as a score threshold or NMS): export the network without post-processing (e.g. "
        "return raw boxes/scores) and run NMS in the app"
    )
    assert not out.exists()


def test_the_function_torch_names_is_kept(tmp_path: Path) -> None:
    """torch's "Caused by" frame (torchvision's batched_nms for a real detector) is kept when
    it is not the user's own line."""
    from edgepack.stages.export import _explain

    class Guard(RuntimeError):
        pass

    text = (
        "Could not guard on data-dependent expression " + " + ".join(f"u{i}" for i in range(300))
        + " > 0 (unhinted: " + " + ".join(f"u{i}" for i in range(300)) + " > 0).  "
        "(Size-like symbols: " + ", ".join(f"u{i}" for i in range(300)) + ")\n\n"
        "Caused by: (sion/ops/boxes.py:75 in batched_nms)\nFor more information, run with ..."
    )  # fmt: skip
    msg = _explain(Guard(text), set())
    expr = len(" + ".join(f"u{i}" for i in range(300)) + " > 0")
    assert msg.startswith("Guard: Could not guard on data-dependent expression u0 + u1 + u2")
    assert msg.endswith(f"... ({expr} chars) (caused by boxes.py:75 in batched_nms)")
    assert len(msg) < 250
