"""Give a quantized model the integer I/O a target asks for, by adding boundary ops.

ai-edge-quantizer writes int8 I/O when the first / last op is int8 and float I/O when the
fallback keeps it in float; it never writes uint8. This rewrites the flatbuffer so every graph
input / output has the requested dtype:

- int8 tensor, uint8 wanted: a QUANTIZE op requantizes (same scale, zero point + 128);
- float tensor, int8 / uint8 wanted: a DEQUANTIZE (input) or QUANTIZE (output) op, with the
  scale / zero point from the calibration min / max of that tensor.

Signature tensor indices are updated; nothing else in the model changes. The result is read
back by the caller, never assumed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

INT_TYPES = ("int8", "uint8")


def _params(qsv: dict[str, Any] | None, dtype: str) -> tuple[float, int]:
    """Asymmetric scale / zero point covering [min, max] (and 0) for an 8-bit type."""
    if not qsv:
        raise ValueError("no calibration range for a float boundary tensor")
    lo = min(0.0, float(np.min(qsv["min"])))
    hi = max(0.0, float(np.max(qsv["max"])))
    scale = (hi - lo) / 255.0 or 1.0
    qmin = -128 if dtype == "int8" else 0
    zp = round(qmin - lo / scale)
    return scale, int(np.clip(zp, qmin, qmin + 255))


def adapt_io(model: bytes, io_dtype: str, qsvs: dict[str, Any]) -> bytes:
    """Rewrite ``model`` (ai-edge-quantizer output) so its I/O is ``io_dtype`` (int8 / uint8)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    if io_dtype not in INT_TYPES:
        return model
    m = schema.ModelT.InitFromPackedBuf(bytearray(model), 0)
    sg = m.subgraphs[0]
    want_type = schema.TensorType.INT8 if io_dtype == "int8" else schema.TensorType.UINT8

    def opcode(builtin: int) -> int:
        for i, oc in enumerate(m.operatorCodes):
            if max(oc.builtinCode, oc.deprecatedBuiltinCode) == builtin:
                return i
        oc = schema.OperatorCodeT()
        oc.builtinCode = builtin
        oc.deprecatedBuiltinCode = min(builtin, 127)
        oc.version = 1
        m.operatorCodes.append(oc)
        return len(m.operatorCodes) - 1

    def new_tensor(src: Any, scale: float, zp: int) -> int:
        t = schema.TensorT()
        t.shape = list(src.shape) if src.shape is not None else []
        t.shapeSignature = list(src.shapeSignature) if src.shapeSignature is not None else None
        t.type = want_type
        t.name = (src.name or b"") + f"_{io_dtype}".encode()
        t.buffer = 0  # TFLite's empty sentinel buffer
        q = schema.QuantizationParametersT()
        q.scale = [float(scale)]
        q.zeroPoint = [int(zp)]
        q.quantizedDimension = 0
        t.quantization = q
        sg.tensors.append(t)
        return len(sg.tensors) - 1

    def op(code: int, inputs: list[int], outputs: list[int]) -> Any:
        o = schema.OperatorT()
        o.opcodeIndex = code
        o.inputs = inputs
        o.outputs = outputs
        return o

    def boundary(idx: int) -> tuple[float, int, str]:
        t = sg.tensors[idx]
        if t.type == schema.TensorType.INT8:
            q = t.quantization
            return float(q.scale[0]), int(q.zeroPoint[0]), "int8"
        if t.type == schema.TensorType.FLOAT32:
            scale, zp = _params(qsvs.get((t.name or b"").decode()), io_dtype)
            return scale, zp, "float32"
        return 0.0, 0, "other"

    front: list[Any] = []
    back: list[Any] = []
    remap: dict[int, int] = {}
    for pos, ti in enumerate(list(sg.inputs)):
        scale, zp, kind = boundary(ti)
        if kind == "other" or (kind == "int8" and io_dtype == "int8"):
            continue
        if kind == "int8":  # uint8 wanted: requantize into the int8 graph
            nt = new_tensor(sg.tensors[ti], scale, zp + 128)
            front.append(op(opcode(schema.BuiltinOperator.QUANTIZE), [nt], [ti]))
        else:  # float graph input: integer boundary, dequantized into the graph
            nt = new_tensor(sg.tensors[ti], scale, zp)
            front.append(op(opcode(schema.BuiltinOperator.DEQUANTIZE), [nt], [ti]))
        sg.inputs[pos] = nt
        remap[ti] = nt
    for pos, ti in enumerate(list(sg.outputs)):
        scale, zp, kind = boundary(ti)
        if kind == "other" or (kind == "int8" and io_dtype == "int8"):
            continue
        nt = new_tensor(sg.tensors[ti], scale, zp + 128 if kind == "int8" else zp)
        back.append(op(opcode(schema.BuiltinOperator.QUANTIZE), [ti], [nt]))
        sg.outputs[pos] = nt
        remap[ti] = nt
    if not remap:
        return model
    sg.operators = front + list(sg.operators or []) + back
    for sd in m.signatureDefs or []:
        for tm in list(sd.inputs or []) + list(sd.outputs or []):
            if tm.tensorIndex in remap:
                tm.tensorIndex = remap[tm.tensorIndex]
    _inline_buffers(m, model)
    b = flatbuffers.Builder(max(1024, len(model) + 4096))
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def _inline_buffers(m: Any, model: bytes) -> None:
    """Move constant data stored after the flatbuffer (``offset``/``size``, as
    ai-edge-quantizer writes a model with 256 KiB of weights or more) into the buffers:
    re-packing drops what follows the flatbuffer, and those offsets would point past the end."""
    for buf in m.buffers or []:
        if buf.offset > 1 and buf.size > 0:
            buf.data = np.frombuffer(model, np.uint8, count=buf.size, offset=buf.offset)
            buf.offset = buf.size = 0
