"""Rule checks and partitioning on small hand-built graphs (ModelInfo values, no conversion).

Real converted models are in test_preflight_models.py; these cover the cases a small PyTorch
model does not produce naturally (dynamic shapes, 5-D tensors, dilations, masks, partitions).
"""

from __future__ import annotations

from typing import Any

import pytest

from edgepack.compat import Placement, Reason, check_model, load_table
from edgepack.tflite import ModelInfo, Operator, Quantization, Tensor

Q = Quantization(scales=(0.1,), zero_points=(0,))


class Graph:
    def __init__(self) -> None:
        self.tensors: list[Tensor] = []
        self.ops: list[Operator] = []

    def t(self, shape: tuple[int, ...], dtype: str = "INT8", const: bool = False,
          data: tuple[int, ...] = (), sig: tuple[int, ...] = ()) -> int:  # fmt: skip
        i = len(self.tensors)
        self.tensors.append(
            Tensor(
                index=i, name=f"t{i}", shape=shape, dtype=dtype,
                quantization=Q if dtype in ("INT8", "UINT8") else Quantization(),
                buffer_bytes=16 if const else 0, shape_signature=sig or shape, int_data=data,
            )
        )  # fmt: skip
        return i

    def op(self, name: str, ins: list[int], outs: list[int], **options: Any) -> None:
        self.ops.append(
            Operator(index=len(self.ops), op=name, inputs=tuple(ins), outputs=tuple(outs),
                     options=options)
        )  # fmt: skip

    def model(self, inputs: list[int], outputs: list[int]) -> ModelInfo:
        return ModelInfo(
            path="<test>", size_bytes=0, sha256="", tensors=tuple(self.tensors),
            operators=tuple(self.ops), inputs=tuple(inputs), outputs=tuple(outputs),
            subgraphs=1, signatures=(),
        )  # fmt: skip


def conv(g: Graph, x: int, cin: int, cout: int, hw: int, dtype: str = "INT8", **opts: Any) -> int:
    w = g.t((cout, 3, 3, cin), dtype, const=True)
    b = g.t((cout,), "INT32" if dtype == "INT8" else dtype, const=True)
    y = g.t((1, hw, hw, cout), dtype)
    base = {"dilation_h_factor": 1, "dilation_w_factor": 1, "fused_activation_function": "RELU"}
    g.op("CONV_2D", [x, w, b], [y], **{**base, **opts})
    return y


def one(g: Graph, inputs: list[int], outputs: list[int], rules: str, i: int) -> tuple:
    r = check_model(g.model(inputs, outputs), load_table(rules))
    o = r.ops[i]
    return o.placement, o.reason, o.detail


def test_dynamic_shape():
    g = Graph()
    x = g.t((1, 8, 8, 3), sig=(-1, 8, 8, 3))
    y = conv(g, x, 3, 4, 8)
    assert one(g, [x], [y], "edgetpu", 0) == (
        Placement.CPU, Reason.DYNAMIC_SHAPE, "#0 't0' has shape [-1, 8, 8, 3]",
    )  # fmt: skip


def test_edgetpu_innermost_three_dims_and_unequal_dilation():
    g = Graph()
    x = g.t((2, 8, 8, 3))
    y = conv(g, x, 3, 4, 8)
    assert one(g, [x], [y], "edgetpu", 0)[1:] == (
        Reason.RANK_LIMIT, "#0 't0' shape [2, 8, 8, 3]: only the 3 innermost dims may be > 1",
    )  # fmt: skip
    g = Graph()
    x = g.t((1, 8, 8, 3))
    y = conv(g, x, 3, 4, 8, dilation_h_factor=2)
    assert one(g, [x], [y], "edgetpu", 0)[1:] == (
        Reason.PARAM, "dilation 2x1 differs in x and y",
    )  # fmt: skip


def test_pool_with_fused_activation_and_mean_over_batch():
    g = Graph()
    x = g.t((1, 8, 8, 4))
    p = g.t((1, 4, 4, 4))
    g.op("AVERAGE_POOL_2D", [x], [p], fused_activation_function="RELU6")
    axes = g.t((1,), "INT32", const=True, data=(0,))
    m = g.t((8, 4, 4))
    g.op("MEAN", [p, axes], [m], keep_dims=False)
    r = check_model(g.model([x], [m]), load_table("edgetpu"))
    assert (r.ops[0].reason, r.ops[0].detail) == (
        Reason.PARAM, "fused activation RELU6 (takes NONE)",
    )  # fmt: skip
    assert r.ops[1].reason is Reason.PARAM  # after the split it would not matter; it is first
    assert r.ops[1].detail == "operates on the batch dimension (axes [0])"
    assert r.partitions == 0


def test_strided_slice_strides_and_softmax_size():
    g = Graph()
    x = g.t((1, 16, 16, 4))
    b, e = g.t((4,), "INT32", True, (0, 0, 0, 0)), g.t((4,), "INT32", True, (1, 16, 16, 4))
    s = g.t((4,), "INT32", True, (1, 2, 2, 1))
    y = g.t((1, 8, 8, 4))
    g.op("STRIDED_SLICE", [x, b, e, s], [y], ellipsis_mask=0, new_axis_mask=0)
    z = g.t((1, 20000))
    sm = g.t((1, 20000))
    g.op("SOFTMAX", [z], [sm], beta=1.0)
    r = check_model(g.model([x, z], [y, sm]), load_table("edgetpu"))
    assert r.ops[0].detail == "strides [1, 2, 2, 1] (must be all 1)"
    assert (r.ops[1].reason, r.ops[1].detail) == (
        Reason.RANK_LIMIT, "20000 input elements (max 16000)",
    )  # fmt: skip


def test_edgetpu_ops_after_the_split_but_independent_stay_mapped():
    """Dependency, not position, decides: a branch that does not read the unsupported op's
    output keeps running on the Edge TPU (tiny-YOLO log: 11 CONV_2D mapped, 2 after the
    unsupported op not)."""
    g = Graph()
    x = g.t((1, 8, 8, 4))
    a = conv(g, x, 4, 4, 8)  # op 0
    lr = g.t((1, 8, 8, 4))
    g.op("LEAKY_RELU", [a], [lr], alpha=0.1)  # op 1: not in the Edge TPU table
    branch = conv(g, a, 4, 4, 8)  # op 2: reads op 0 only
    after = conv(g, lr, 4, 4, 8)  # op 3: reads the CPU op
    r = check_model(g.model([x], [branch, after]), load_table("edgetpu"))
    assert [(o.placement.value, o.reason and o.reason.value) for o in r.ops] == [
        ("accelerator", None),
        ("cpu", "op not supported"),
        ("accelerator", None),
        ("cpu", "after the split (one accelerator subgraph)"),
    ]
    assert (r.split_index, r.partitions) == (1, 1)


def test_gpu_delegates_only_the_largest_partition():
    g = Graph()
    x = g.t((1, 8, 8, 4), "FLOAT32")
    a = conv(g, x, 4, 4, 8, "FLOAT32")  # partition A: 1 op
    am = g.t((1, 8, 8), "INT32")
    g.op("ARG_MAX", [a, g.t((1,), "INT32", True, (3,))], [am])  # not in the GPU table
    c = g.t((1, 8, 8, 4), "FLOAT32")
    g.op("CAST", [am], [c])  # int32 -> float32: supported by gpu_compatibility.cc
    d = conv(g, c, 4, 4, 8, "FLOAT32")
    e = conv(g, d, 4, 4, 8, "FLOAT32")  # partition B: 3 ops
    r = check_model(g.model([x], [e]), load_table("gpu"))
    assert [o.placement for o in r.ops] == [Placement.CPU, Placement.CPU] + [
        Placement.ACCELERATOR
    ] * 3
    assert r.ops[0].reason is Reason.PARTITION_LIMIT
    assert r.partitions == 1 and r.split_index is None and r.first_cpu_index == 0
    assert r.mac_share == pytest.approx(2 / 3)


def test_xnnpack_counts_every_run_as_a_partition():
    g = Graph()
    x = g.t((1, 8, 8, 4), "FLOAT32")
    a = conv(g, x, 4, 4, 8, "FLOAT32")
    am = g.t((1, 8, 8), "INT32")
    g.op("ARG_MAX", [a, g.t((1,), "INT32", True, (3,))], [am])
    c = g.t((1, 8, 8, 4), "FLOAT32")
    g.op("CAST", [am], [c])  # not in the XNNPACK README
    d = conv(g, c, 4, 4, 8, "FLOAT32")
    r = check_model(g.model([x], [d]), load_table("xnnpack"))
    assert r.partitions == 2 and [o.partition for o in r.ops] == [0, None, None, 1]
    assert r.split_index == 1


@pytest.mark.parametrize(
    ("perm", "placement"),
    [
        ((0, 2, 3, 1), Placement.CPU),
        ((0, 3, 1, 2), Placement.CPU),
        ((0, 2, 1, 3), Placement.ACCELERATOR),
    ],
)
def test_edgetpu_layout_transposes_stay_on_cpu(perm, placement):
    g = Graph()
    x = g.t((1, 4, 8, 8))
    y = g.t(tuple((1, 4, 8, 8)[p] for p in perm))
    g.op("TRANSPOSE", [x, g.t((4,), "INT32", True, perm)], [y])
    r = check_model(g.model([x], [y]), load_table("edgetpu"))
    assert r.ops[0].placement is placement
    assert len(r.warnings) == (placement is Placement.ACCELERATOR)


def test_a_compiled_edgetpu_model_reports_the_custom_op_on_the_tpu():
    g = Graph()
    x = g.t((1, 8, 8, 4), "UINT8")
    y = g.t((1, 10), "UINT8")
    g.op("CUSTOM:edgetpu-custom-op", [x], [y])
    z = g.t((1, 10), "FLOAT32")
    g.op("DEQUANTIZE", [y], [z])
    r = check_model(g.model([x], [z]), load_table("edgetpu"))
    assert [o.placement for o in r.ops] == [Placement.ACCELERATOR, Placement.CPU]
    assert r.partitions == 1 and r.split_index == 1
    other = check_model(g.model([x], [z]), load_table("xnnpack"))
    assert other.ops[0].reason is Reason.OP_NOT_SUPPORTED
