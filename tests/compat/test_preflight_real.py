"""The XNNPACK pre-flight checked against the real delegate (stage "preflight").

For every model, the stage applies the host interpreter's XNNPACK delegate and records what it
took next to the prediction. On the token encoder and the two CNNs (the digits CNN and a
MobileNetV2-style net with residual ADDs), in the modes a build writes, prediction and reality
must agree op by op; when they do not, the stage says which ops the rule table gets wrong.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from edgepack.compat import Placement, check
from edgepack.data import Dataset
from edgepack.runtime import xnnpack_delegation
from edgepack.stages import preflight, quantize
from edgepack.stages.base import StageContext, TFLiteArtifact
from edgepack.targets import IODtype, QuantMode, load_target

pytestmark = pytest.mark.slow

MODES = [
    (QuantMode.FLOAT32, IODtype.FLOAT32),
    (QuantMode.FLOAT16, IODtype.FLOAT32),  # FP16 weights behind DEQUANTIZE (was: 4-7 parts)
    (QuantMode.DYNAMIC_RANGE, IODtype.FLOAT32),  # dynamic-range depthwise splits mbv2
    (QuantMode.FULL_INT8, IODtype.INT8),
]


def delegate_nodes(path: Path) -> int:
    """DELEGATE nodes in the interpreter's execution plan, counted independently."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path), num_threads=1)
    it.allocate_tensors()
    return sum(1 for op in it._get_ops_details() if op["op_name"] == "DELEGATE")


@pytest.mark.parametrize("net", ["digits_nhwc", "mobilenet"])
@pytest.mark.parametrize(("mode", "io"), MODES, ids=lambda v: getattr(v, "value", v))
def test_cnn_prediction_equals_the_real_delegate(models, tmp_path, net, mode, io) -> None:  # type: ignore[no-untyped-def]
    f = TFLiteArtifact(path=models[f"{net}_float"], kind="float32", io_layout="nhwc")
    shape = (16, 1, 32, 32) if net.startswith("digits") else (16, 3, 32, 32)  # NCHW data
    calib = Dataset((np.random.default_rng(0).standard_normal(shape, np.float32),), None, "r")
    ctx = StageContext(workdir=tmp_path)
    built = quantize.run(f, mode, io, calib, ctx)
    report = preflight.run(built, load_target("rpi4"), ctx)
    r = report.result("xnnpack")
    assert r.real is not None
    assert r.real["differences"] == []
    assert r.real["partitions"] == r.partitions == delegate_nodes(built.path)
    assert r.real["agrees"] is True
    assert preflight.disagreements(report.to_dict()) == []
    assert ctx.records[-1].metrics["xnnpack"]["real_agrees"] is True


def test_encoder_prediction_equals_the_real_delegate(encoder_package) -> None:  # type: ignore[no-untyped-def]
    """Before the table knew BATCH_MATMUL, GELU, RSQRT and 3-D MEAN it predicted 22
    partitions for this encoder; the delegate makes one (only the int32 id/mask handling,
    CAST and EMBEDDING_LOOKUP stay on the CPU)."""
    m = json.loads((encoder_package.path / "manifest.json").read_text())
    x = m["compat"]["results"]["xnnpack"]
    assert x["real"]["agrees"] is True and x["real"]["differences"] == []
    assert x["partitions"] == x["real"]["partitions"] == 1
    assert x["partitions"] == delegate_nodes(encoder_package.path / "model.tflite")
    cpu = {o["op"] for o in x["cpu_ops"]}
    assert {"EMBEDDING_LOOKUP", "CAST"} <= cpu and "BATCH_MATMUL" not in cpu
    assert "warning: pre-flight" not in encoder_package.err
    summary = (encoder_package.path / "summary.md").read_text()
    assert "real delegate: 1 partition(s)" in summary


def test_a_wrong_prediction_is_reported_op_by_op(models) -> None:  # type: ignore[no-untyped-def]
    """A prediction that puts one delegated op on the CPU: the comparison with the real
    delegate names that op and the partition counts."""
    path = models["mobilenet_float"]
    r = check(path, ["xnnpack"]).result("xnnpack")
    wrong = r.ops[3]
    ops = list(r.ops)
    ops[3] = dataclasses.replace(wrong, placement=Placement.CPU)
    predicted = dataclasses.replace(r, ops=tuple(ops), partitions=2)
    real = preflight.real_delegation(predicted, path)
    assert real["agrees"] is False
    assert real["differences"] == [
        {"index": 3, "op": wrong.op, "predicted": "cpu", "real": "accelerator"}
    ]
    assert real["partitions"] == 1 and len(xnnpack_delegation(path).delegated) == len(r.ops)
    report = dataclasses.replace(check(path, ["xnnpack"]), results=(
        dataclasses.replace(predicted, real=real),))  # fmt: skip
    (line,) = preflight.disagreements(report.to_dict())
    assert line.startswith("pre-flight xnnpack predicted 2 partition(s) with 1 op(s) on the CPU;")
    assert f"made 1 with 0 on the CPU; ops the rule table gets wrong: {wrong.op}#3 (cpu -> " in line
