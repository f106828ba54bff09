"""Run .tflite models on the host with the LiteRT interpreter (ai_edge_litert).

Float inputs are quantized to the model's integer input type with the input tensor's own
scale / zero point, and integer outputs are dequantized, so callers always speak float32.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


def make_interpreter(
    model: str | Path | bytes, threads: int = 1, xnnpack: bool = True, preserve: bool = False
) -> Any:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    kwargs: dict[str, Any] = {"num_threads": threads}
    if isinstance(model, bytes):
        kwargs["model_content"] = model
    else:
        kwargs["model_path"] = str(model)
    if not xnnpack:
        kwargs["experimental_op_resolver_type"] = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    if preserve:
        kwargs["experimental_preserve_all_tensors"] = True
    from edgepack._quiet import quiet_native

    with quiet_native():  # "Created TensorFlow Lite XNNPACK delegate" goes to stderr
        interp = Interpreter(**kwargs)
        interp.allocate_tensors()
    return interp


@dataclass(frozen=True)
class Delegation:
    """What the host interpreter's default XNNPACK delegate really took (subgraph 0)."""

    nodes: int  # operators of the model
    delegated: frozenset[int]  # operator indices replaced by a delegate partition
    partitions: int  # DELEGATE nodes in the execution plan


def xnnpack_delegation(model: str | Path | bytes) -> Delegation:
    """Apply XNNPACK the way the runtime does (default delegate, AllocateTensors) and read
    which nodes it replaced: each partition becomes one DELEGATE node whose inputs and outputs
    are the partition's; walking back from its outputs through the producers, stopping at its
    inputs, yields the replaced nodes (the same walk as devices/edgepack_bench.py)."""
    ops = list(make_interpreter(model)._get_ops_details())
    original = [op for op in ops if op.get("op_name") != "DELEGATE"]
    delegates = [op for op in ops if op.get("op_name") == "DELEGATE"]
    producer = {int(t): op["index"] for op in original for t in op.get("outputs", [])}
    by_index = {op["index"]: op for op in original}
    taken: set[int] = set()
    for d in delegates:
        stop = {int(t) for t in d.get("inputs", [])}
        todo = [int(t) for t in d.get("outputs", [])]
        seen: set[int] = set()
        while todo:
            t = todo.pop()
            if t in seen or t in stop:
                continue
            seen.add(t)
            node = producer.get(t)
            if node is None or node in taken:
                continue
            taken.add(node)
            todo.extend(int(x) for x in by_index[node].get("inputs", []) if int(x) >= 0)
    return Delegation(len(original), frozenset(taken), len(delegates))


def cast_inputs(info: Any, xs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Integer inputs to the integer dtype the model takes (litert-torch turns int64 token ids
    into int32 inputs); float inputs are left alone. ``info``: edgepack.tflite.ModelInfo."""
    from edgepack.tflite import NUMPY_DTYPE

    out = []
    for x, t in zip(xs, info.input_tensors, strict=True):
        want = np.dtype(NUMPY_DTYPE.get(t.dtype, "float32"))
        out.append(x.astype(want) if x.dtype.kind in "iub" and want.kind in "iub" else x)
    return out


def quantize_input(x: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    dtype = np.dtype(detail["dtype"])
    if dtype.kind == "f":
        return x.astype(dtype, copy=False)
    scale, zp = detail["quantization"]
    if not scale:
        return x.astype(dtype)
    info = np.iinfo(dtype)
    q = np.round(x.astype(np.float64) / scale + zp)
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize_output(y: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    if np.dtype(detail["dtype"]).kind == "f":
        return y.astype(np.float32)
    scale, zp = detail["quantization"]
    if not scale:
        return y.astype(np.float32)
    return ((y.astype(np.float32) - zp) * scale).astype(np.float32)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear interpolation between the closest ranks (numpy's default method), ``q`` in
    [0, 100]. The one definition of latency percentiles in edgepack; the device harness
    (devices/edgepack_bench.py, which imports nothing from edgepack) keeps an identical copy."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    k = (len(sorted_values) - 1) * q / 100.0
    lo = int(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


class Runner:
    """Runs one sample at a time (batch dimension of the model) over arrays of samples."""

    def __init__(self, model: str | Path | bytes, threads: int = 1, xnnpack: bool = True):
        self.interp = make_interpreter(model, threads=threads, xnnpack=xnnpack)
        self.inputs = self.interp.get_input_details()
        self.outputs = self.interp.get_output_details()
        self.invoke_ms: list[float] = []  # every invoke of run_one, in order (the first warms up)

    def input_shapes(self) -> list[tuple[int, ...]]:
        return [tuple(int(d) for d in i["shape"]) for i in self.inputs]

    def run_one(self, xs: Sequence[np.ndarray]) -> list[np.ndarray]:
        for detail, x in zip(self.inputs, xs, strict=True):
            self.interp.set_tensor(detail["index"], quantize_input(x, detail))
        t0 = time.perf_counter()
        self.interp.invoke()
        self.invoke_ms.append((time.perf_counter() - t0) * 1e3)
        return [dequantize_output(self.interp.get_tensor(d["index"]), d) for d in self.outputs]

    def run(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """``inputs``: one array per model input, each shaped (N, *input_shape[1:]) and the
        model's batch size 1 (or N divisible by the model batch). Returns stacked outputs."""
        batch = int(self.inputs[0]["shape"][0]) or 1
        n = inputs[0].shape[0]
        results: list[list[np.ndarray]] = [[] for _ in self.outputs]
        for start in range(0, n, batch):
            outs = self.run_one([x[start : start + batch] for x in inputs])
            for k, o in enumerate(outs):
                results[k].append(o)
        return [np.concatenate(r, axis=0) for r in results]

    def latency_ms(
        self,
        warmup: int = 5,
        runs: int = 50,
        budget_s: float | None = None,
        min_runs: int = 3,
        reuse: bool = False,
    ) -> dict[str, float]:
        """Time ``runs`` invokes after ``warmup``. With ``budget_s``, stop once the warmup and
        the timed runs have taken that long and at least ``min_runs`` were timed (one warmup
        at least), so a large model costs about ``budget_s``, not ``runs`` invokes.

        ``reuse``: the invokes :meth:`run` already made count (the first as the warmup, the
        rest as timed runs and against the budget), so only the missing runs are invoked."""
        for detail in self.inputs:
            shape = tuple(int(d) for d in detail["shape"])
            self.interp.set_tensor(detail["index"], np.zeros(shape, dtype=detail["dtype"]))
        done = self.invoke_ms[1 : runs + 1] if reuse and self.invoke_ms else []
        start = time.perf_counter() - sum(done) / 1e3

        def spent(share: float = 1.0) -> bool:
            return budget_s is not None and time.perf_counter() - start >= share * budget_s

        for k in range(0 if reuse and self.invoke_ms else warmup):
            if k > 0 and spent(0.25):  # warmup takes a quarter of the budget at most
                break
            self.interp.invoke()
        times: list[float] = list(done)
        while len(times) < runs and not (len(times) >= min(min_runs, runs) and spent()):
            t0 = time.perf_counter()
            self.interp.invoke()
            times.append((time.perf_counter() - t0) * 1e3)
        runs = len(times)
        times.sort()
        return {
            "median_ms": round(percentile(times, 50), 4),
            "min_ms": round(times[0], 4),
            "p90_ms": round(percentile(times, 90), 4),
            "runs": runs,
        }
