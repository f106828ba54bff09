"""Inputs that are valid for the model, for checks that run it without the user's data.

Random integers are not valid token ids: an id outside the embedding table makes
EMBEDDING_LOOKUP / GATHER fail. For a model with integer inputs the build records, per integer
input, the range the model accepts (the embedding table found by following the input through
the graph, else the range seen in the build's own data) and stores a few samples of that data
in the package (``sample_inputs.npz``, hashed in the manifest like every file). ``edgepack
verify`` runs the model on those samples, ``edgepack bench`` passes them to the device harness
(``--input_data``); without samples, integers are drawn within the recorded ranges.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

SAMPLES_FILE = "sample_inputs.npz"
MAX_SAMPLES = 4
MAX_BYTES = 1 << 20  # at most 1 MiB of samples (at least one sample)
PASS_THROUGH = ("RESHAPE", "CAST", "SQUEEZE", "EXPAND_DIMS")


def table_rows(info: Any, tensor: int) -> int | None:
    """Rows of the lookup table an integer input indexes, following RESHAPE / CAST ops:
    EMBEDDING_LOOKUP (ids at input 0, table at 1) or GATHER (params at 0, indices at 1,
    ``axis``). None when the input reaches no lookup. ``info``: edgepack.tflite.ModelInfo."""
    todo, seen, rows = [tensor], set(), []
    while todo:
        t = todo.pop()
        if t in seen:
            continue
        seen.add(t)
        for op in info.operators:
            if t not in op.inputs:
                continue
            pos = op.inputs.index(t)
            if op.op in PASS_THROUGH and pos == 0:
                todo.extend(op.outputs)
            elif op.op == "EMBEDDING_LOOKUP" and pos == 0:
                rows.append(info.tensors[op.inputs[1]].shape[0])
            elif op.op == "GATHER" and pos == 1:
                shape = info.tensors[op.inputs[0]].shape
                axis = int(op.options.get("axis", 0)) % max(len(shape), 1)
                rows.append(shape[axis])
    return min(rows) if rows else None


def describe(
    info: Any, specs: Sequence[Any], data: Sequence[np.ndarray] | None, data_kind: str
) -> dict[str, Any] | None:
    """The manifest's ``default_inputs`` for a model with integer inputs (None otherwise).

    ``specs``: the source's InputSpecs (their dtypes say which inputs are integers, whatever
    dtype the converter chose); ``data``: the build's real data, one array per input in the
    model's boundary layout, or None when the build had none."""
    integer = [i for i, s in enumerate(specs) if not str(s.dtype).startswith("float")]
    if not integer:
        return None
    ranges = []
    for i in integer:
        t = info.input_tensors[i]
        rows = table_rows(info, t.index)
        entry: dict[str, Any] = {"input": t.name, "name": specs[i].name}
        if rows is not None:
            entry.update(min=0, max=int(rows) - 1, source="lookup table rows")
        elif data is not None:
            entry.update(min=int(data[i].min()), max=int(data[i].max()), source=data_kind)
        else:
            continue
        ranges.append(entry)
    out: dict[str, Any] = {"ranges": ranges}
    if data is not None:
        per_sample = sum(x[:1].nbytes for x in data)
        n = max(1, min(MAX_SAMPLES, len(data[0]), MAX_BYTES // max(per_sample, 1)))
        out.update(file=SAMPLES_FILE, samples=n, source=data_kind)
    return out


def write_samples(path: Path, info: Any, data: Sequence[np.ndarray], n: int) -> None:
    """The first ``n`` samples, one array per model input keyed by the input tensor's name,
    in the model's input dtypes (the device harness reads them as they are)."""
    from edgepack.tflite import NUMPY_DTYPE

    arrays = {}
    for t, x in zip(info.input_tensors, data, strict=True):
        want = np.dtype(NUMPY_DTYPE.get(t.dtype, "float32"))
        x = x[:n]
        arrays[t.name] = x.astype(want) if x.dtype.kind in "iub" and want.kind in "iub" else x
    savez: Any = np.savez  # numpy's stubs type **kwds as its own keyword options
    with open(path, "wb") as f:
        savez(f, **arrays)


def for_interpreter(
    details: Sequence[dict[str, Any]],
    default: dict[str, Any] | None,
    package: Path,
    seed: int = 0,
) -> tuple[list[np.ndarray], str]:
    """One batch of inputs for an interpreter's ``details``: the package's samples, else
    random data with integers inside the recorded ranges (else the dtype's full range).
    Returns the arrays and a word on where they came from."""
    from edgepack.runtime import quantize_input

    default = default or {}
    file = default.get("file")
    if file:
        with np.load(package / str(file), allow_pickle=False) as z:
            keys = list(z.files)
            xs = []
            for pos, d in enumerate(details):
                x = z[d["name"]] if d["name"] in keys else z[keys[pos]]
                batch = int(d["shape"][0]) or 1
                x = x[:batch]
                # float samples of an integer-I/O model are quantized with the input's scale
                xs.append(quantize_input(x, d) if x.dtype.kind == "f" else x.astype(d["dtype"]))
        return xs, f"{file} ({default.get('source', 'build data')})"
    ranges = {r["input"]: r for r in default.get("ranges", [])}
    rng = np.random.default_rng(seed)
    xs = []
    for d in details:
        dims = tuple(int(s) for s in d["shape"])
        dt = np.dtype(d["dtype"])
        if dt.kind == "f":
            xs.append(rng.standard_normal(dims).astype(dt))
            continue
        r = ranges.get(d["name"])
        info = np.iinfo(dt) if dt.kind in "iu" else None
        lo = int(r["min"]) if r else (int(info.min) if info else 0)
        hi = int(r["max"]) if r else (int(info.max) if info else 1)
        xs.append(rng.integers(lo, hi, size=dims, endpoint=True).astype(dt))
    return xs, "random data" + (" within the recorded input ranges" if ranges else "")
