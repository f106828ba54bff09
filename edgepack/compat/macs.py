"""Multiply-accumulate counts of the compute-heavy TFLite ops, from tensor shapes.

Only ops whose cost is dominated by MACs are counted (convolutions, fully connected, matrix
products); element-wise ops, pooling and data movement count 0. The share of MACs that stays on
an accelerator is what decides whether a partial delegation is worth anything.
"""

from __future__ import annotations

from math import prod

from edgepack.tflite import ModelInfo, Operator


def _shape(model: ModelInfo, index: int) -> tuple[int, ...]:
    return model.tensors[index].shape if index >= 0 else ()


def op_macs(model: ModelInfo, op: Operator) -> int:
    name = op.op
    ins = [_shape(model, i) for i in op.inputs]
    outs = [_shape(model, i) for i in op.outputs]
    if not outs or not ins:
        return 0
    out = outs[0]
    if name == "CONV_2D" and len(ins) > 1 and len(ins[1]) == 4:
        # filter [Cout, kh, kw, Cin / groups]: every output element reads kh*kw*Cin_g inputs
        _, kh, kw, cin = ins[1]
        return prod(out) * kh * kw * cin
    if name == "DEPTHWISE_CONV_2D" and len(ins) > 1 and len(ins[1]) == 4:
        # filter [1, kh, kw, Cout]
        _, kh, kw, _ = ins[1]
        return prod(out) * kh * kw
    if name == "CONV_3D" and len(ins) > 1 and len(ins[1]) == 5:
        # filter [kd, kh, kw, Cin, Cout]
        kd, kh, kw, cin, _ = ins[1]
        return prod(out) * kd * kh * kw * cin
    if name == "FULLY_CONNECTED" and len(ins) > 1 and len(ins[1]) == 2:
        # weights [units, depth]
        return prod(out) * ins[1][1]
    if name == "BATCH_MATMUL" and len(ins) > 1 and ins[0]:
        adj_x = bool(op.options.get("adj_x", False))
        k = ins[0][-2] if adj_x and len(ins[0]) >= 2 else ins[0][-1]
        return prod(out) * k
    if name == "TRANSPOSE_CONV" and len(ins) > 2 and len(ins[1]) == 4:
        # inputs: output_shape, filter [Cout, kh, kw, Cin], input
        cout, kh, kw, _ = ins[1]
        return prod(ins[2]) * kh * kw * cout
    return 0
