"""Read a .tflite flatbuffer: operators, tensors, dtypes, quantization, sizes.

This reads the file itself (with the schema shipped in ai_edge_litert) instead of asking an
interpreter, so what it reports is what is in the file: integer I/O is read back, not assumed,
and the op list is the real one (no delegate has rewritten it).
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from collections import Counter, OrderedDict
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgepack.errors import EdgepackError

# Ops that only move data between float and integer domains. In a full-int8 graph they may
# appear at the boundary (float I/O) and are not "float compute".
CAST_OPS = frozenset({"QUANTIZE", "DEQUANTIZE", "CAST"})
# Ops that carry no arithmetic: they are fine in float when their neighbours are integer only
# if they touch integer tensors; we still report them if their tensors are float.
SHAPE_OPS = frozenset({"RESHAPE", "SQUEEZE", "EXPAND_DIMS", "SHAPE"})

NUMPY_DTYPE = {
    "FLOAT32": "float32",
    "FLOAT16": "float16",
    "INT32": "int32",
    "UINT8": "uint8",
    "INT64": "int64",
    "STRING": "object",
    "BOOL": "bool",
    "INT16": "int16",
    "INT8": "int8",
    "FLOAT64": "float64",
    "UINT32": "uint32",
    "UINT16": "uint16",
    "INT4": "int4",
}


class TFLiteReadError(EdgepackError):
    """The file is not a readable TFLite flatbuffer."""


class _Corrupt(Exception):
    """Raised inside read_model_bytes; becomes a TFLiteReadError."""


@dataclass(frozen=True)
class Quantization:
    scales: tuple[float, ...] = ()
    zero_points: tuple[int, ...] = ()
    quantized_dimension: int = 0

    @property
    def is_quantized(self) -> bool:
        return bool(self.scales)

    def to_dict(self) -> dict[str, Any]:
        if not self.scales:
            return {}
        if len(self.scales) == 1:
            return {"scale": self.scales[0], "zero_point": self.zero_points[0]}
        return {
            "per_channel": len(self.scales),
            "quantized_dimension": self.quantized_dimension,
            "scale_min": min(self.scales),
            "scale_max": max(self.scales),
        }


@dataclass(frozen=True)
class Tensor:
    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str  # TFLite spelling: FLOAT32, INT8, ...
    quantization: Quantization
    buffer_bytes: int  # bytes of constant data (0 for activations)
    shape_signature: tuple[int, ...] = ()
    # Values of small INT32/INT64 constants (axes, paddings, strides, shapes): rule checks
    # need them. Empty for activations and for large or non-integer constants.
    int_data: tuple[int, ...] = ()

    @property
    def is_constant(self) -> bool:
        return self.buffer_bytes > 0

    @property
    def is_dynamic(self) -> bool:
        return any(d < 0 for d in self.shape_signature)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}
        if self.quantization.is_quantized:
            d["quantization"] = self.quantization.to_dict()
        return d


@dataclass(frozen=True)
class Operator:
    index: int
    op: str  # builtin name, or "CUSTOM:<code>"
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    options: dict[str, Any] = field(default_factory=dict, compare=False)
    version: int = 1  # the operator code's version (delegates support some versions only)


@dataclass(frozen=True)
class ModelInfo:
    path: str
    size_bytes: int
    sha256: str
    tensors: tuple[Tensor, ...]
    operators: tuple[Operator, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    subgraphs: int
    signatures: tuple[str, ...]

    def tensor(self, index: int) -> Tensor:
        return self.tensors[index]

    @property
    def input_tensors(self) -> list[Tensor]:
        return [self.tensors[i] for i in self.inputs]

    @property
    def output_tensors(self) -> list[Tensor]:
        return [self.tensors[i] for i in self.outputs]

    def op_counts(self) -> dict[str, int]:
        return dict(sorted(Counter(o.op for o in self.operators).items()))

    def op_inputs(self, op: Operator) -> list[Tensor]:
        return [self.tensors[i] for i in op.inputs if i >= 0]

    def op_outputs(self, op: Operator) -> list[Tensor]:
        return [self.tensors[i] for i in op.outputs if i >= 0]

    def float_compute_ops(self, kept: Collection[str] = ()) -> list[Operator]:
        """Ops that compute in floating point (the ones a full-int8 model must not have),
        except those writing a tensor named in ``kept`` (the ops a recipe or the fallback
        search keeps in float on purpose).

        QUANTIZE / DEQUANTIZE at the graph boundary are conversions, not compute.
        """
        bad = []
        for op in self.operators:
            if op.op in CAST_OPS:
                continue
            if kept and any(self.tensors[i].name in kept for i in op.outputs if i >= 0):
                continue
            tensors = self.op_inputs(op) + self.op_outputs(op)
            if any(t.dtype in ("FLOAT32", "FLOAT16") for t in tensors):
                bad.append(op)
        return bad

    def weight_bytes_by_tensor(self) -> list[tuple[str, int]]:
        sized = [(t.name, t.buffer_bytes) for t in self.tensors if t.buffer_bytes > 0]
        return sorted(sized, key=lambda x: -x[1])

    def summary(self) -> dict[str, Any]:
        """A JSON-able summary for manifests and `inspect --json`."""
        return {
            "size_bytes": self.size_bytes,
            "sha256": self.sha256,
            "inputs": [t.to_dict() for t in self.input_tensors],
            "outputs": [t.to_dict() for t in self.output_tensors],
            "ops": self.op_counts(),
            "op_count": len(self.operators),
            "float_compute_ops": sorted({o.op for o in self.float_compute_ops()}),
            "weight_bytes": sum(t.buffer_bytes for t in self.tensors),
            "tensor_dtypes": dict(sorted(Counter(t.dtype for t in self.tensors).items())),
        }


def _names(cls: type) -> dict[int, str]:
    return {v: k for k, v in vars(cls).items() if not k.startswith("_") and isinstance(v, int)}


# Small integer constants (axes, paddings, strides, shapes) are decoded for rule checks.
_INT_DATA_MAX_ELEMENTS = 64
_ENUM_OPTIONS = {"FusedActivationFunction": "ActivationFunctionType", "Padding": "Padding"}


def _builtin_options(schema: Any, op: Any) -> dict[str, Any]:
    """The operator's builtin options as a plain dict (e.g. Conv2DOptions -> stride_h, ...).

    Every scalar accessor of the options table is read; enum values (fused activation,
    padding) are given by name. Unknown or absent options give an empty dict.
    """
    kind = op.BuiltinOptionsType()
    if not kind:
        return {}
    type_name = _names(schema.BuiltinOptions).get(kind, "")
    cls = getattr(schema, type_name, None)
    table = op.BuiltinOptions()
    if cls is None or table is None:
        return {}
    obj = cls()
    obj.Init(table.Bytes, table.Pos)
    out: dict[str, Any] = {"type": type_name}
    for name in dir(cls):
        if name.startswith(("_", "Get", "Init")) or name.endswith(
            ("AsNumpy", "IsNone", "Length", "BufferHasIdentifier")
        ):
            continue
        attr = getattr(obj, name)
        try:
            value = attr()
        except TypeError:  # vector accessors take an index
            continue
        if not isinstance(value, (bool, int, float)):
            continue
        key = "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")
        if name in _ENUM_OPTIONS:
            value = _names(getattr(schema, _ENUM_OPTIONS[name])).get(int(value), str(value))
        out[key] = value
    return out


def _int_data(model: Any, buffer_index: int, dtype: str, nbytes: int) -> tuple[int, ...]:
    import numpy as np

    if dtype not in ("INT32", "INT64") or nbytes == 0 or buffer_index <= 0:
        return ()
    item = 4 if dtype == "INT32" else 8
    if nbytes // item > _INT_DATA_MAX_ELEMENTS:
        return ()
    buf = model.Buffers(buffer_index)
    if buf.DataLength() == 0:  # data stored outside the flatbuffer: not decoded
        return ()
    raw = buf.DataAsNumpy()
    arr = np.frombuffer(raw.tobytes(), dtype="<i4" if item == 4 else "<i8")
    return tuple(int(v) for v in arr)


def _vector(arr: Any) -> list[Any]:
    """A flatbuffer vector read as numpy (``...AsNumpy()``) as Python values; the generated
    accessor returns 0 for an absent vector."""
    return [] if isinstance(arr, int) else arr.tolist()


# Parses of the latest models, keyed by content (sha256): every stage of a build reads the
# same built model (quantize check, validate, pre-flight, manifest); it is parsed once. A
# changed file has another hash, so a stale parse is never served.
_MEMO: OrderedDict[str, ModelInfo] = OrderedDict()
_MEMO_SIZE = 8
_MEMO_LOCK = threading.Lock()
_PARSES = [0]


def parse_count() -> int:
    """Full parses done by this process (the memo's hits are not counted)."""
    return _PARSES[0]


def read_model(path: str | Path) -> ModelInfo:
    """Parse a .tflite file. Raises TFLiteReadError with a hint if it is not one."""
    p = Path(path)
    if not p.is_file():
        raise TFLiteReadError(
            f"model file not found: {p}", "pass the path of a .tflite file or a package folder"
        )
    data = p.read_bytes()
    return read_model_bytes(data, str(p))


def read_model_bytes(data: bytes, path: str = "<bytes>") -> ModelInfo:
    """Parse a TFLite flatbuffer; the same bytes parsed before give the memoized parse (with
    ``path`` set to this caller's). Raises TFLiteReadError with a hint if it is not one."""
    digest = hashlib.sha256(data).hexdigest()
    with _MEMO_LOCK:
        info = _MEMO.get(digest)
        if info is not None:
            _MEMO.move_to_end(digest)
    if info is None:
        info = _parse(data, path, digest)
        with _MEMO_LOCK:
            _MEMO[digest] = info
            while len(_MEMO) > _MEMO_SIZE:
                _MEMO.popitem(last=False)
    return info if info.path == path else dataclasses.replace(info, path=path)


def _parse(data: bytes, path: str, digest: str) -> ModelInfo:
    _PARSES[0] += 1
    from ai_edge_litert import schema_py_generated as schema

    if len(data) < 8 or data[4:8] != b"TFL3":
        raise TFLiteReadError(
            f"{path} is not a TFLite flatbuffer (no TFL3 identifier)",
            "edgepack reads .tflite files produced by litert-torch or the TFLite converter",
        )

    # flatbuffers does not bound-check: a corrupt length or index reads past the data or
    # loops for ever. Every vector element takes 4 bytes or more, every index is checked.
    def length(n: int, what: str) -> int:
        if not 0 <= n <= len(data) // 4:
            raise _Corrupt(f"{what} count {n} does not fit in {len(data)} bytes")
        return n

    def index(i: int, n: int, what: str, optional: bool = False) -> int:
        if not (0 <= i < n or (optional and i == -1)):
            raise _Corrupt(f"{what} index {i} is out of range (the model has {n})")
        return i

    try:
        model = schema.Model.GetRootAsModel(data, 0)
        op_names = _names(schema.BuiltinOperator)
        type_names = _names(schema.TensorType)
        if length(model.SubgraphsLength(), "subgraph") == 0:
            raise _Corrupt("it has no subgraph")
        g = model.Subgraphs(0)
        n_tensors = length(g.TensorsLength(), "tensor")
        n_codes = length(model.OperatorCodesLength(), "operator code")
        buffers_size = []
        for b in range(length(model.BuffersLength(), "buffer")):
            buf = model.Buffers(b)
            n = buf.DataLength()
            if n == 0 and buf.Size() > 0:  # large models keep data outside the flatbuffer
                n = int(buf.Size())
            buffers_size.append(n)
        tensors = []
        for i in range(n_tensors):
            t = g.Tensors(i)
            q = t.Quantization()
            quant = Quantization()
            if q is not None and length(q.ScaleLength(), "scale") > 0:
                # One numpy view per vector (tolist gives the same Python floats / ints as
                # the per-element accessors): per-channel int8 models hold thousands each.
                length(q.ZeroPointLength(), "zero point")
                quant = Quantization(
                    scales=tuple(_vector(q.ScaleAsNumpy())),
                    zero_points=tuple(_vector(q.ZeroPointAsNumpy())),
                    quantized_dimension=int(q.QuantizedDimension()),
                )
            length(t.ShapeLength(), "dimension")
            length(t.ShapeSignatureLength(), "dimension")
            shape = tuple(_vector(t.ShapeAsNumpy()))
            sig = tuple(_vector(t.ShapeSignatureAsNumpy()))
            bidx = t.Buffer()
            dtype = type_names.get(t.Type(), str(t.Type()))
            nbytes = buffers_size[bidx] if 0 < bidx < len(buffers_size) else 0
            tensors.append(
                Tensor(
                    index=i,
                    name=(t.Name() or b"").decode("utf-8", "replace"),
                    shape=shape,
                    dtype=dtype,
                    quantization=quant,
                    buffer_bytes=nbytes,
                    shape_signature=sig or shape,
                    int_data=_int_data(model, bidx, dtype, nbytes),
                )
            )
        ops = []
        for i in range(length(g.OperatorsLength(), "operator")):
            o = g.Operators(i)
            oc = model.OperatorCodes(index(o.OpcodeIndex(), n_codes, "operator code"))
            code = max(int(oc.BuiltinCode()), int(oc.DeprecatedBuiltinCode()))
            name = op_names.get(code, str(code))
            if name == "CUSTOM":
                name = "CUSTOM:" + (oc.CustomCode() or b"").decode("utf-8", "replace")
            ops.append(
                Operator(
                    index=i,
                    op=name,
                    inputs=tuple(
                        index(int(o.Inputs(j)), n_tensors, "tensor", optional=True)
                        for j in range(length(o.InputsLength(), "input"))
                    ),
                    outputs=tuple(
                        index(int(o.Outputs(j)), n_tensors, "tensor", optional=True)
                        for j in range(length(o.OutputsLength(), "output"))
                    ),
                    options=_builtin_options(schema, o),
                    version=int(oc.Version()),
                )
            )
        sigs = []
        for s in range(length(model.SignatureDefsLength(), "signature")):
            key = model.SignatureDefs(s).SignatureKey()
            sigs.append(key.decode() if key else "")
        return ModelInfo(
            path=path,
            size_bytes=len(data),
            sha256=digest,
            tensors=tuple(tensors),
            operators=tuple(ops),
            inputs=tuple(
                index(int(g.Inputs(j)), n_tensors, "input tensor")
                for j in range(length(g.InputsLength(), "input"))
            ),
            outputs=tuple(
                index(int(g.Outputs(j)), n_tensors, "output tensor")
                for j in range(length(g.OutputsLength(), "output"))
            ),
            subgraphs=int(model.SubgraphsLength()),
            signatures=tuple(sigs),
        )
    except TFLiteReadError:
        raise
    except _Corrupt as exc:
        raise TFLiteReadError(
            f"{path} is a corrupt TFLite model: {exc}",
            "the file may be truncated or corrupt; rebuild it",
        ) from exc
    except Exception as exc:  # a corrupt flatbuffer raises anything from struct to IndexError
        raise TFLiteReadError(
            f"{path} could not be parsed as a TFLite model (truncated or corrupt: {exc})",
            "the file may be truncated or corrupt; rebuild it",
        ) from exc
