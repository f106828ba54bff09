"""Pre-flight predictions on real converted + quantized models (see conftest.py).

The numbers asserted here were measured on these exact fixture models (fixed seeds); MACs are
computed from tensor shapes, so they are exact.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from edgepack.compat import Placement, Reason, check
from edgepack.tflite import read_model

pytestmark = pytest.mark.slow

DIGITS_MACS = 663_872  # 32*32*8*9 + 16*16*16*72 + 8*8*32*144 + 32*10


def cpu_ops(path: Path, rules: str) -> list[tuple[int, str, str]]:
    r = check(path, [rules]).result(rules)
    return [(o.index, o.op, o.reason.value if o.reason else "") for o in r.cpu_ops]


def real_xnnpack_partitions(path: Path) -> int:
    """Delegate partitions the real LiteRT interpreter creates (XNNPACK is applied by default;
    each partition shows up as one DELEGATE node in the execution plan)."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path), num_threads=1)
    it.allocate_tensors()
    return sum(1 for op in it._get_ops_details() if op["op_name"] == "DELEGATE")


def test_digits_nhwc_uint8_maps_fully_on_edgetpu(models):
    r = check(models["digits_nhwc_uint8"], ["edgetpu"]).result("edgetpu")
    assert [o.op for o in r.ops] == [
        "QUANTIZE", "DEPTHWISE_CONV_2D", "MAX_POOL_2D", "CONV_2D", "MAX_POOL_2D",
        "CONV_2D", "MEAN", "FULLY_CONNECTED", "QUANTIZE",
    ]  # fmt: skip
    assert r.fully_delegated and r.ok
    assert r.partitions == 1
    assert r.split_index is None
    assert r.macs_total == DIGITS_MACS
    assert r.mac_share == 1.0
    assert r.ops[0].dtypes == "UINT8->INT8"  # uint8 I/O requantized on the Edge TPU


def test_layout_fix_nhwc_has_no_transpose_and_nchw_digits_reshapes(models):
    """Channels-last I/O removes the layout op at the boundary. With one input channel the
    NCHW->NHWC permutation is a RESHAPE (measured), so even the NCHW digits model has no
    TRANSPOSE; with three channels (MobileNet-style) NCHW I/O adds a TRANSPOSE."""
    nhwc = read_model(models["digits_nhwc_uint8"]).op_counts()
    nchw = read_model(models["digits_nchw_uint8"]).op_counts()
    assert "TRANSPOSE" not in nhwc and "RESHAPE" not in nhwc
    assert "TRANSPOSE" not in nchw and nchw["RESHAPE"] == 1
    nchw_tpu = check(models["digits_nchw_uint8"], ["edgetpu"]).result("edgetpu")
    assert nchw_tpu.fully_delegated and nchw_tpu.ops[1].op == "RESHAPE"
    assert "TRANSPOSE" not in read_model(models["mobilenet_uint8"]).op_counts()
    assert read_model(models["mobilenet_nchw_uint8"]).op_counts()["TRANSPOSE"] == 1
    # NCHW I/O: the layout TRANSPOSE right after the input is left on the CPU by the compiler
    # (google-coral/edgetpu#433), and everything after it follows: 0% of the MACs on the TPU.
    r = check(models["mobilenet_nchw_uint8"], ["edgetpu"]).result("edgetpu")
    assert (r.ops[1].op, r.ops[1].reason) == ("TRANSPOSE", Reason.PARAM)
    assert r.ops[1].detail == "permutation [0, 2, 3, 1] (an NCHW/NHWC layout change) is not mapped"
    assert (r.split_index, r.partitions, r.mac_share) == (1, 1, 0.0)
    assert len(r.cpu_ops) == 27 and not r.ok
    nhwc_tpu = check(models["mobilenet_uint8"], ["edgetpu"]).result("edgetpu")
    assert nhwc_tpu.fully_delegated and nhwc_tpu.warnings == ()


def test_mobilenet_v2_style_maps_fully(models):
    r = check(models["mobilenet_uint8"], ["edgetpu"]).result("edgetpu")
    counts = read_model(models["mobilenet_uint8"]).op_counts()
    assert counts["ADD"] == 3 and counts["DEPTHWISE_CONV_2D"] == 5
    assert r.fully_delegated and len(r.ops) == 27
    assert (r.partitions, r.split_index, r.mac_share) == (1, None, 1.0)
    assert r.macs_total == 1_419_392


def test_leaky_relu_early_splits_the_graph_early(models):
    r = check(models["leaky_early_uint8"], ["edgetpu"]).result("edgetpu")
    assert r.split_index == 2 and r.ops[2].op == "LEAKY_RELU"
    assert r.ops[2].reason is Reason.OP_NOT_SUPPORTED
    assert cpu_ops(models["leaky_early_uint8"], "edgetpu") == [
        (2, "LEAKY_RELU", "op not supported"),
        *[
            (i, op, "after the split (one accelerator subgraph)")
            for i, op in [
                (3, "MAX_POOL_2D"), (4, "CONV_2D"), (5, "MAX_POOL_2D"), (6, "CONV_2D"),
                (7, "MEAN"), (8, "FULLY_CONNECTED"), (9, "QUANTIZE"),
            ]
        ],
    ]  # fmt: skip
    assert r.partitions == 1
    assert r.macs_on_accelerator == 32 * 32 * 8 * 9  # only the first conv block
    assert r.mac_share == pytest.approx(73_728 / DIGITS_MACS, abs=1e-6)  # 0.111058
    assert not r.ok


def test_leaky_relu_late_keeps_almost_all_macs(models):
    r = check(models["leaky_late_uint8"], ["edgetpu"]).result("edgetpu")
    assert r.split_index == 7 and r.ops[7].op == "LEAKY_RELU"
    assert cpu_ops(models["leaky_late_uint8"], "edgetpu") == [
        (7, "LEAKY_RELU", "op not supported"),
        (8, "FULLY_CONNECTED", "after the split (one accelerator subgraph)"),
        (9, "QUANTIZE", "after the split (one accelerator subgraph)"),
    ]
    assert r.mac_share == pytest.approx((DIGITS_MACS - 320) / DIGITS_MACS, abs=1e-6)  # 0.999518
    assert not r.ok  # the classifier's 320 MACs are on the CPU


def test_float_model_is_not_quantized_for_edgetpu(models):
    r = check(models["digits_nhwc_float"], ["edgetpu"]).result("edgetpu")
    assert r.partitions == 0 and r.mac_share == 0.0
    assert {o.reason for o in r.ops} == {Reason.NOT_QUANTIZED}


def test_float_io_boundary_ops_stay_on_cpu_but_compute_maps(models):
    r = check(models["digits_int8_f32io"], ["edgetpu"]).result("edgetpu")
    assert cpu_ops(models["digits_int8_f32io"], "edgetpu") == [
        (0, "QUANTIZE", "not quantized (float tensors)"),
        (8, "DEQUANTIZE", "op not supported"),
    ]
    assert r.ok and not r.fully_delegated and r.partitions == 1 and r.mac_share == 1.0


def test_gpu_flags_argmax_in_a_float_model(models):
    r = check(models["argmax_float"], ["gpu"]).result("gpu")
    assert cpu_ops(models["argmax_float"], "gpu") == [(7, "ARG_MAX", "op not supported")]
    assert r.ops[7].detail == "ARG_MAX is not in the GPU delegate op table"
    assert (r.partitions, r.split_index, r.mac_share) == (1, 7, 1.0)
    assert not r.fully_delegated
    full = check(models["digits_nhwc_float"], ["gpu"]).result("gpu")
    assert full.fully_delegated and full.partitions == 1


def test_gpu_rejects_integer_models(models):
    r = check(models["digits_nhwc_uint8"], ["gpu"]).result("gpu")
    assert r.ops[1].reason is Reason.DTYPE and "INT8" in r.ops[1].detail
    assert r.mac_share == 0.0 and r.partitions == 0


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("digits_nhwc_float", 1),
        ("digits_nhwc_uint8", 1),  # uint8<->int8 QUANTIZE at both ends stay on the CPU
        ("digits_int8_f32io", 1),
        ("mobilenet_float", 1),
        ("mobilenet_uint8", 1),
        ("mnist_f32io", 2),  # int8 SOFTMAX has no XNNPACK kernel: it cuts the graph
        ("argmax_float", 1),
        ("digits_int16x8", 0),  # int16 activations: no XNNPACK kernels at all
    ],
)
def test_xnnpack_partitions_match_the_real_interpreter(models, name, expected):
    r = check(models[name], ["xnnpack"]).result("xnnpack")
    assert r.partitions == expected
    assert real_xnnpack_partitions(models[name]) == expected


def test_int16x8_gets_no_xnnpack(models):
    r = check(models["digits_int16x8"], ["xnnpack"]).result("xnnpack")
    assert r.mac_share == 0.0
    assert r.ops[1].reason is Reason.DTYPE and r.ops[1].detail.startswith("INT16 tensor")


def _log_placement(name: str) -> dict[str, bool]:
    """op type -> mapped? from a real compiler log (an op type with mixed rows is excluded)."""
    from edgepack.compat.edgetpu_log import parse_compiler_log

    text = (Path(__file__).parent / "fixtures" / "edgetpu_compiler" / name).read_text()
    log = parse_compiler_log(text)
    mapped, not_mapped = set(log["mapped"]), set(log["not_mapped"])
    return {op: op in mapped for op in (mapped ^ not_mapped)}


@pytest.mark.parametrize(
    ("model", "log", "shared"),
    [
        # float I/O: QUANTIZE in front and DEQUANTIZE behind stay on the CPU in both
        (
            "mnist_f32io",
            "nrf20_mnist4.log",
            {"QUANTIZE", "CONV_2D", "MAX_POOL_2D", "FULLY_CONNECTED", "SOFTMAX", "DEQUANTIZE"},
        ),
        # integer I/O: everything maps in both
        (
            "mnist_int8io",
            "nrf20_mnist7.log",
            {"CONV_2D", "MAX_POOL_2D", "FULLY_CONNECTED", "SOFTMAX"},
        ),
    ],
)
def test_preflight_agrees_with_real_compiler_logs(models, model, log, shared):
    """The fixture model rebuilds the op sequence of the logged MNIST net (its first conv has
    one input channel, which the converter emits as DEPTHWISE_CONV_2D, and its 1x1 flatten
    needs no RESHAPE: those two types are not shared). Every shared op type must be placed as
    the compiler placed it."""
    r = check(models[model], ["edgetpu"]).result("edgetpu")
    predicted: dict[str, set[bool]] = {}
    for o in r.ops:
        predicted.setdefault(o.op, set()).add(o.placement is Placement.ACCELERATOR)
    real = _log_placement(log)
    assert set(predicted) & set(real) == shared
    for op in shared:
        assert predicted[op] == {real[op]}, op


def test_xnnpack_dynamic_range_splits_into_many_partitions(dynamic_range_mobilenet):
    """Dynamic-range DEPTHWISE_CONV_2D has no XNNPACK kernel (dynamic-range CONV_2D and
    FULLY_CONNECTED do, measured): each depthwise conv cuts the graph."""
    r = check(dynamic_range_mobilenet, ["xnnpack"]).result("xnnpack")
    assert [(o.index, o.op) for o in r.cpu_ops] == [
        (3, "DEPTHWISE_CONV_2D"), (8, "DEPTHWISE_CONV_2D"), (11, "DEPTHWISE_CONV_2D"),
        (16, "DEPTHWISE_CONV_2D"), (19, "DEPTHWISE_CONV_2D"),
    ]  # fmt: skip
    assert all(o.detail.startswith("dynamic-range op: INT8 weights") for o in r.cpu_ops)
    assert r.partitions == 6 == real_xnnpack_partitions(dynamic_range_mobilenet)
    assert r.split_index == 3
    assert r.mac_share == 0.886374
