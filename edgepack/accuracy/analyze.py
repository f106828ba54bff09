"""Per-layer quantization error: run the float and the quantized .tflite side by side on the
same samples, match their intermediate tensors, and rank layers by the error they add.

Matching: the quantized model is derived from the float one, so most tensors keep their
names; where they do not, ops are aligned by position (the sequence of op types, ignoring the
QUANTIZE / DEQUANTIZE ops quantization inserts) and output shape. Integer tensors are
dequantized with their own scale / zero point before comparing.

For every op of the quantized model the table gives the SNR and cosine of its output against
the float model (cumulative error: everything upstream included), the median per-position
SNR (not fooled by outlier channels that carry most of the energy) and ``added_db``: how
many dB of median SNR the op loses relative to its worst input (the error this op adds). Layers are
ranked by ``added_db``: that is where quantization hurts, not just where it shows.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgepack.accuracy.metrics import SNR_CAP_DB, Accumulator
from edgepack.tflite import ModelInfo, Tensor, read_model_bytes

CONVERSION_OPS = frozenset({"QUANTIZE", "DEQUANTIZE"})
FLOAT_TYPES = frozenset({"FLOAT32", "FLOAT16"})


@dataclass(frozen=True)
class LayerError:
    rank: int
    op_index: int  # in the quantized model
    op: str
    layer: str  # short name
    tensor: str  # full output tensor name in the quantized model
    float_tensor: str  # the float model's tensor it was compared with
    matched_by: str  # "name" or "position"
    shape: tuple[int, ...]
    dtype: str  # of the quantized model's tensor
    scale: float | None
    snr_db: float  # whole tensor, energy-weighted
    median_snr_db: float  # median over positions: what int8 did to the typical value
    cosine: float
    max_abs_error: float
    added_db: float  # median SNR lost by this op relative to its worst input

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["shape"] = list(self.shape)
        return d


@dataclass(frozen=True)
class Analysis:
    layers: tuple[LayerError, ...]  # ranked, worst first
    samples: int
    matched: int  # op outputs compared
    unmatched: tuple[str, ...]  # quantized op outputs with no float counterpart

    def worst(self, n: int) -> list[LayerError]:
        return list(self.layers[: max(0, n)])

    def to_dict(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "matched": self.matched,
            "unmatched": list(self.unmatched),
            "layers": [r.to_dict() for r in self.layers],
        }

    def to_csv(self) -> str:
        buf = io.StringIO()
        fields = list(LayerError.__dataclass_fields__)
        w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
        w.writeheader()
        for r in self.layers:
            row = r.to_dict()
            row["shape"] = "x".join(str(d) for d in r.shape)
            w.writerow(row)
        return buf.getvalue()

    def save(self, path: Path) -> Path:
        if path.suffix == ".csv":
            path.write_text(self.to_csv(), encoding="utf-8")
        else:
            path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return path


_MODULE_PREFIX = re.compile(r"^(?:[A-Za-z_][\w]*\.)+(?=[A-Za-z_]\w*$)")


def short_name(tensor_name: str) -> str:
    """'pkg.Net/torch.nn.modules.container.Sequential_features/torch.nn.modules.conv.Conv2d_8;1'
    -> 'Sequential_features/Conv2d_8'. Fused names ('a;;b;;c') use their most specific part."""
    segments = [seg for seg in tensor_name.split(";") if seg and not seg.isdigit()]
    if not segments:
        return tensor_name
    first = max(segments, key=lambda seg: seg.count("/"))
    parts = [_MODULE_PREFIX.sub("", p) for p in first.split("/") if p]
    return "/".join(parts[-2:]) if parts else tensor_name


def _dequantize(value: np.ndarray, t: Tensor) -> np.ndarray:
    if t.dtype in FLOAT_TYPES or not t.quantization.is_quantized:
        return value.astype(np.float64)
    scales = np.asarray(t.quantization.scales, dtype=np.float64)
    zps = np.asarray(t.quantization.zero_points or (0,) * len(scales), dtype=np.float64)
    if len(scales) > 1 and value.ndim > 0:
        shape = [1] * value.ndim
        shape[t.quantization.quantized_dimension] = -1
        scales, zps = scales.reshape(shape), zps.reshape(shape)
    return (value.astype(np.float64) - zps) * scales


def match_tensors(fi: ModelInfo, qi: ModelInfo) -> dict[int, tuple[int, str]]:
    """Quantized tensor index -> (float tensor index, how it was matched)."""
    mapping: dict[int, tuple[int, str]] = {}
    for qt, ft in zip(qi.inputs, fi.inputs, strict=False):
        mapping[qt] = (ft, "input")
    by_name = {t.name: t.index for t in fi.tensors if not t.is_constant and t.name}
    q_ops = [o for o in qi.operators if o.op not in CONVERSION_OPS]
    f_ops = [o for o in fi.operators if o.op not in CONVERSION_OPS]
    for op in q_ops:
        for o in op.outputs:
            found = by_name.get(qi.tensors[o].name)
            if found is not None and fi.tensors[found].shape == qi.tensors[o].shape:
                mapping.setdefault(o, (found, "name"))
    sm = difflib.SequenceMatcher(a=[o.op for o in f_ops], b=[o.op for o in q_ops], autojunk=False)
    for block in sm.get_matching_blocks():
        for k in range(block.size):
            fop, qop = f_ops[block.a + k], q_ops[block.b + k]
            for fo, qo in zip(fop.outputs, qop.outputs, strict=False):
                if qo not in mapping and fi.tensors[fo].shape == qi.tensors[qo].shape:
                    mapping[qo] = (fo, "position")
    for op in qi.operators:  # QUANTIZE / DEQUANTIZE carry their input's float counterpart
        if op.op in CONVERSION_OPS and op.inputs and op.inputs[0] in mapping:
            for o in op.outputs:
                mapping.setdefault(o, (mapping[op.inputs[0]][0], "requantize"))
    return mapping


def _feed(interp: Any, details: list[dict[str, Any]], xs: Sequence[np.ndarray]) -> None:
    from edgepack.runtime import quantize_input

    for d, x in zip(details, xs, strict=True):
        want = np.dtype(d["dtype"])
        if want.kind in "iub" and x.dtype.kind in "iub" and not d["quantization"][0]:
            interp.set_tensor(d["index"], x.astype(want))
        else:
            interp.set_tensor(d["index"], quantize_input(x, d))


def compare(
    float_model: bytes,
    quant_model: bytes,
    inputs: Sequence[np.ndarray],
    samples: int | None = None,
) -> Analysis:
    """Compare every matched intermediate tensor of the two models on ``inputs`` (arrays in
    the models' boundary layout, samples on axis 0)."""
    from edgepack.runtime import make_interpreter

    fi, qi = read_model_bytes(float_model), read_model_bytes(quant_model)
    mapping = {
        q: (f, how)
        for q, (f, how) in match_tensors(fi, qi).items()
        if fi.tensors[f].dtype in FLOAT_TYPES
    }
    f_int = make_interpreter(float_model, xnnpack=False, preserve=True)
    q_int = make_interpreter(quant_model, xnnpack=False, preserve=True)
    f_in, q_in = f_int.get_input_details(), q_int.get_input_details()
    batch = int(f_in[0]["shape"][0]) or 1
    n = inputs[0].shape[0] if samples is None else min(samples, inputs[0].shape[0])
    n = (n // batch) * batch
    acc = {q: Accumulator() for q in mapping}
    for s in range(0, n, batch):
        xs = [x[s : s + batch] for x in inputs]
        _feed(f_int, f_in, xs)
        _feed(q_int, q_in, xs)
        f_int.invoke()
        q_int.invoke()
        for q, (f, _) in mapping.items():
            ref = f_int.get_tensor(f)
            got = _dequantize(q_int.get_tensor(q), qi.tensors[q])
            if ref.shape == got.shape:
                acc[q].add(ref, got)
    rows: list[LayerError] = []
    unmatched: list[str] = []
    for op in qi.operators:
        if op.op in CONVERSION_OPS:
            continue
        for o in op.outputs:
            t = qi.tensors[o]
            if o not in mapping or acc[o].count == 0:
                if o not in mapping and t.dtype not in ("INT32", "INT64", "BOOL"):
                    unmatched.append(t.name)
                continue
            in_snr = [
                acc[i].median_snr_db
                for i in op.inputs
                if i >= 0 and i in acc and acc[i].count and not qi.tensors[i].is_constant
            ]
            base = min(in_snr) if in_snr else SNR_CAP_DB
            a = acc[o]
            rows.append(
                LayerError(
                    rank=0,
                    op_index=op.index,
                    op=op.op,
                    layer=short_name(t.name),
                    tensor=t.name,
                    float_tensor=fi.tensors[mapping[o][0]].name,
                    matched_by=mapping[o][1],
                    shape=t.shape,
                    dtype=t.dtype,
                    scale=t.quantization.scales[0] if t.quantization.is_quantized else None,
                    snr_db=round(a.snr_db, 3),
                    median_snr_db=round(a.median_snr_db, 3),
                    cosine=round(a.cosine, 6),
                    max_abs_error=round(a.max_abs, 6),
                    added_db=round(base - a.median_snr_db, 3),
                )
            )
    rows.sort(key=lambda r: (-r.added_db, r.median_snr_db, r.op_index))
    ranked = tuple(
        LayerError(**{**asdict(r), "rank": k + 1, "shape": r.shape}) for k, r in enumerate(rows)
    )
    return Analysis(layers=ranked, samples=n, matched=len(rows), unmatched=tuple(unmatched))


def analyze_package(
    package: Path,
    eval_path: Path,
    samples: int | None = None,
    reference: Path | None = None,
) -> Analysis:
    """Per-layer error of a package's model against its float reference on ``eval_path``."""
    from edgepack.data import load_dataset
    from edgepack.errors import PackageError
    from edgepack.manifest import model_path, package_member, read_manifest
    from edgepack.stages.base import InputSpec
    from edgepack.stages.quantize import to_boundary_layout

    manifest = read_manifest(package)
    model = model_path(package, manifest)
    if reference is None:
        ref_name = manifest.get("reference_model")
        if not ref_name:
            q = manifest.get("quantization")
            mode = q.get("mode") if isinstance(q, dict) else None
            raise PackageError(
                f"package {package} holds no float reference model (quantization {mode})",
                "pass --reference path/to/model_float32.tflite, or rebuild with this edgepack",
            )
        ref = package_member(package, ref_name)
        if ref is None:
            raise PackageError(
                f"package {package}: reference_model {ref_name!r} is not a path inside the package",
                "pass --reference path/to/model_float32.tflite, or rebuild with `edgepack build`",
            )
        reference = ref
    if not reference.is_file():
        raise PackageError(f"reference model not found: {reference}", "rebuild the package")
    try:  # the manifest is data: any field may hold any JSON value
        specs = [
            InputSpec(
                str(i["name"]), tuple(int(d) for d in i["shape"]), str(i.get("dtype", "float32"))
            )
            for i in manifest["source"]["inputs"]
        ]
        layout = manifest["quantization"].get("io_layout", "nchw")
        if layout not in ("nchw", "nhwc"):
            raise ValueError(layout)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise PackageError(
            f"package {package}: its manifest's source.inputs or quantization.io_layout is "
            "not what `edgepack build` writes",
            "rebuild the package with `edgepack build`",
        ) from exc
    data = load_dataset(eval_path, specs, purpose="evaluation", samples=samples)
    inputs = [to_boundary_layout(x, layout) for x in data.inputs]
    return compare(reference.read_bytes(), model.read_bytes(), inputs)
