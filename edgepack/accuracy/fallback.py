"""Accuracy-aware fallback: when full-int8 misses the gate, keep the most sensitive ops in float
(or raise them to 16-bit activations), one group at a time, until the gate passes or the
budget of float ops is used up.

Route: ai-edge-quantizer static int8 (``static_wi8_ai8``, min/max calibration: its default
moving-average calibration gives 3-8x the error) with per-op recipe entries. An op is matched
by its scope (the names of its output tensors, anchored regex), so the recipe names exactly the
ops it keeps out of int8. Calibration runs once; every candidate recipe reuses its statistics.

Ranking comes from the per-layer analysis (:mod:`edgepack.accuracy.analyze`) of the all-int8
model: tensors sorted by the SNR their producing op loses. A tensor's group is its producer and
every consumer (followed through ops that keep the same quantization range: reshapes, slices,
max-pool...), because a tensor stays int8 as long as any op reading it is int8.

Strategies
- ``sensitivity`` (CPU targets): union of the worst groups.
- ``graph-suffix`` (targets with an accelerator): the Edge TPU compiler runs every op after the
  first unsupported one on the CPU (a GPU delegate splits the graph at each one), so float ops
  are taken as one tail of the graph: everything from the earliest needed op to the end. The
  accelerated part stays in one piece; the cost is reported as ops moved off the accelerator.
"""

from __future__ import annotations

import contextlib
import io
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np

from edgepack._quiet import quiet_native
from edgepack.accuracy.analyze import CONVERSION_OPS, compare
from edgepack.accuracy.io_adapter import adapt_io
from edgepack.accuracy.metrics import output_metrics
from edgepack.accuracy.recipes import (
    EncoderRecipe,
    OpGroup,
    embedding_entries,
    encoder_recipe,
    op_groups,
)
from edgepack.data import Dataset
from edgepack.errors import GateError, QuantizationError
from edgepack.runtime import cast_inputs
from edgepack.stages.base import StageContext, TFLiteArtifact, TorchModel
from edgepack.tflite import ModelInfo, Operator, read_model_bytes

NAME = "fallback"
# Ops whose output reuses their input's quantization range: an outlier flows through them.
SAME_RANGE_OPS = frozenset(
    {
        "RESHAPE",
        "SQUEEZE",
        "EXPAND_DIMS",
        "TRANSPOSE",
        "SLICE",
        "STRIDED_SLICE",
        "SPLIT",
        "SPLIT_V",
        "GATHER",
        "MAX_POOL_2D",
        "PAD",
        "UNPACK",
        "PACK",
        "CONCATENATION",
    }
)
MAX_STEPS = 12
ANALYSIS_SAMPLES = 64
# The group search (transformer encoders): at most this many candidate recipes, and at most
# SEARCH_TIME_FACTOR x the time the build had spent before the search (export, conversion,
# quantization, validation: one plain build), at least MIN_SEARCH_S seconds.
MAX_GROUP_STEPS = 6
SEARCH_TIME_FACTOR = 1.5
MIN_SEARCH_S = 20.0
# Ranking groups needs their order, not every op's exact figure: the per-layer analysis of a
# 6-layer encoder costs ~1 s per sample, so the group search analyses few.
GROUP_ANALYSIS_SAMPLES = 8
_QSV_CACHE: dict[str, Any] = {}


class FallbackPrecision(str, Enum):
    FLOAT = "float"  # keep the op in float32 (weights and compute)
    INT16 = "int16"  # 16-bit activations, 8-bit weights (a16w8)


class Strategy(str, Enum):
    SENSITIVITY = "sensitivity"
    GRAPH_SUFFIX = "graph-suffix"
    GROUPS = "op-groups"


@dataclass(frozen=True)
class Gate:
    max_accuracy_drop: float | None = None
    min_fidelity: float | None = None

    def passed(self, m: dict[str, Any]) -> bool:
        ok = True
        if self.max_accuracy_drop is not None:
            ok &= m["accuracy"]["drop_points"] <= self.max_accuracy_drop + 1e-9
        if self.min_fidelity is not None:
            ok &= m["fidelity"]["cosine"] >= self.min_fidelity - 1e-12
        return ok

    def shortfall(self, m: dict[str, Any]) -> float:
        """0 when passed; otherwise how far off (accuracy points first, then cosine)."""
        s = 0.0
        if self.max_accuracy_drop is not None:
            s += max(0.0, m["accuracy"]["drop_points"] - self.max_accuracy_drop)
        if self.min_fidelity is not None:
            s += 100 * max(0.0, self.min_fidelity - m["fidelity"]["cosine"])
        return s

    def describe(self) -> str:
        parts = []
        if self.max_accuracy_drop is not None:
            parts.append(f"top-1 drop <= {self.max_accuracy_drop} points")
        if self.min_fidelity is not None:
            parts.append(f"cosine >= {self.min_fidelity}")
        return " and ".join(parts)


@dataclass
class FallbackResult:
    model: bytes
    route: dict[str, Any]
    record: dict[str, Any]
    metrics: dict[str, Any] = field(default_factory=dict)


def op_scope_regex(info: ModelInfo, op: Operator) -> str:
    """ai-edge-quantizer's scope of an op (its output tensor names joined by ';', plus ';'),
    as an anchored regex that matches this op only."""
    names = [info.tensors[i].name for i in op.outputs if i >= 0 and info.tensors[i].name]
    if not names:
        names = [info.tensors[i].name for i in op.inputs if i >= 0 and info.tensors[i].name]
    return "^" + re.escape(";".join(names) + ";") + "$"


def tensor_groups(info: ModelInfo) -> dict[int, frozenset[int]]:
    """Float tensor index -> the ops that must leave int8 for that tensor to stay float."""
    producer: dict[int, int] = {}
    consumers: dict[int, list[int]] = {}
    for op in info.operators:
        for o in op.outputs:
            producer[o] = op.index
        for i in op.inputs:
            if i >= 0:
                consumers.setdefault(i, []).append(op.index)
    groups: dict[int, frozenset[int]] = {}
    for t in producer:
        ops = {producer[t]}
        frontier = [t]
        seen = {t}
        while frontier:
            cur = frontier.pop()
            for c in consumers.get(cur, []):
                ops.add(c)
                if info.operators[c].op in SAME_RANGE_OPS:
                    for o in info.operators[c].outputs:
                        if o not in seen:
                            seen.add(o)
                            frontier.append(o)
        groups[t] = frozenset(ops)
    return groups


def _signature_inputs(model: bytes) -> list[str]:
    """Signature input keys in the order of the subgraph's inputs."""
    from edgepack.runtime import make_interpreter

    interp = make_interpreter(model, xnnpack=False)
    runner = interp.get_signature_runner()
    by_tensor = {d["name"]: key for key, d in runner.get_input_details().items()}
    return [by_tensor[d["name"]] for d in interp.get_input_details()]


class Searcher:
    """Calibrates once, then quantizes and evaluates candidate recipes."""

    def __init__(
        self,
        float_model: bytes,
        calibration: Sequence[np.ndarray],
        io_dtype: str,
        precision: FallbackPrecision = FallbackPrecision.FLOAT,
        base: Sequence[int] = (),
    ) -> None:
        """``base``: ops every recipe keeps in float (an intentional recipe, such as the
        encoder recipe's LayerNorm statistics and softmax), besides the ``keep`` of each call."""
        self.float_model = float_model
        self.info = read_model_bytes(float_model)
        self.io_dtype = io_dtype
        self.precision = precision
        self.base = tuple(sorted(base))
        self.qsvs = self._calibrate_once(cast_inputs(self.info, calibration))

    def _calibrate_once(self, xs: list[np.ndarray]) -> dict[str, Any]:
        """Calibration statistics do not depend on the recipe: one build calibrates a model on
        its data once, whichever route or search step asks (the last one is remembered)."""
        import hashlib

        h = hashlib.sha256(self.float_model)
        for x in xs:
            h.update(str((x.dtype, x.shape)).encode())
            h.update(np.ascontiguousarray(x).tobytes())
        key = h.hexdigest()
        if key not in _QSV_CACHE:
            _QSV_CACHE.clear()
            _QSV_CACHE[key] = self._calibrate(xs)
        return _QSV_CACHE[key]

    def _calibrate(self, xs: list[np.ndarray]) -> dict[str, Any]:
        from ai_edge_quantizer import calibrator, recipe_manager
        from ai_edge_quantizer.utils import qsv_utils

        keys = _signature_inputs(self.float_model)
        batch = max(1, self.info.input_tensors[0].shape[0] if self.info.input_tensors else 1)
        n = (xs[0].shape[0] // batch) * batch
        samples = [
            {k: np.ascontiguousarray(x[s : s + batch]) for k, x in zip(keys, xs, strict=True)}
            for s in range(0, n, batch)
        ]
        rm = recipe_manager.RecipeManager()
        rm.load_quantization_recipe(self.recipe(()))
        # quiet_native silences file descriptors; the progress bar writes to sys.stderr.
        with quiet_native(), contextlib.redirect_stderr(io.StringIO()):
            calib = calibrator.Calibrator(
                bytes(self.float_model), num_threads=1, qsv_update_func=qsv_utils.min_max_update
            )
            calib.calibrate({"serving_default": samples}, rm)
        return calib.get_model_qsvs()

    def recipe(self, keep: Sequence[int]) -> list[dict[str, Any]]:
        from ai_edge_quantizer import recipe

        entries: list[dict[str, Any]] = list(recipe.static_wi8_ai8())
        if self.io_dtype == "float32":
            for io in ("INPUT", "OUTPUT"):
                entries.append({"regex": ".*", "operation": io, "algorithm_key": "no_quantize"})
        if any(o.op == "EMBEDDING_LOOKUP" for o in self.info.operators):
            entries += embedding_entries()  # int8 table, dequantizing lookup
        for idx in self.base:
            regex = op_scope_regex(self.info, self.info.operators[idx])
            entries.append({"regex": regex, "operation": "*", "algorithm_key": "no_quantize"})
        for idx in sorted(set(keep) - set(self.base)):
            regex = op_scope_regex(self.info, self.info.operators[idx])
            if self.precision == FallbackPrecision.FLOAT:
                entries.append({"regex": regex, "operation": "*", "algorithm_key": "no_quantize"})
            else:
                a16 = recipe.static_wi8_ai16()[0]
                entries.append({**a16, "regex": regex})
        return entries

    def quantize(self, keep: Sequence[int]) -> bytes:
        from ai_edge_quantizer import quantizer

        with quiet_native() as log:
            try:
                q = quantizer.Quantizer(bytearray(self.float_model))
                q.load_quantization_recipe(self.recipe(keep))
                out = bytes(q.quantize(self.qsvs, enable_progress_report=False).quantized_model)
                return adapt_io(out, self.io_dtype, self.qsvs)
            except Exception as exc:
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
                raise QuantizationError(
                    f"ai-edge-quantizer failed on the fallback recipe: {first}",
                    "report this model to the edgepack maintainers; the converter said: "
                    + (log.tail(2) or "nothing more"),
                ) from exc


def _evaluate(
    model: bytes, inputs: Sequence[np.ndarray], ref: np.ndarray, labels: np.ndarray | None
) -> dict[str, Any]:
    from edgepack.runtime import Runner

    runner = Runner(model)
    out = runner.run(list(cast_inputs(read_model_bytes(model), inputs)))[0]
    return output_metrics(ref, out, labels)


def _summary(m: dict[str, Any]) -> dict[str, Any]:
    d: dict[str, Any] = {"cosine": m["fidelity"]["cosine"], "snr_db": m["fidelity"]["snr_db"]}
    if "accuracy" in m:
        d["top1"] = m["accuracy"]["quantized"]
        d["drop_points"] = m["accuracy"]["drop_points"]
    return d


def _describe(m: dict[str, Any]) -> str:
    parts = []
    if "drop_points" in m:
        parts.append(f"top-1 drop {m['drop_points']:.2f} points")
    parts.append(f"cosine {m['cosine']:.4f}")
    return ", ".join(parts)


def default_budget(n_ops: int) -> int:
    """At most half the ops in float: the result must stay mostly int8."""
    return max(1, n_ops // 2)


def search(
    float_model: bytes,
    calibration: Sequence[np.ndarray],
    eval_inputs: Sequence[np.ndarray],
    ref: np.ndarray,
    labels: np.ndarray | None,
    gate: Gate,
    *,
    io_dtype: str = "float32",
    budget: int | None = None,
    accelerator: str = "none",
    precision: FallbackPrecision = FallbackPrecision.FLOAT,
    trigger: str = "",
    progress: Any = None,
    max_steps: int = MAX_STEPS,
    max_groups: int = MAX_GROUP_STEPS,
    time_budget_s: float | None = None,
) -> FallbackResult:
    """Find the smallest set of sensitive ops to keep out of int8 so that ``gate`` passes.

    Transformer encoders (the encoder recipe applies and the graph repeats numbered blocks) are
    searched by op groups (:func:`group_search`): at most ``max_groups`` candidate recipes and
    about ``time_budget_s`` seconds; other graphs op by op.

    ``calibration`` and ``eval_inputs`` are in the float model's boundary layout; ``ref`` is
    the float (PyTorch) output on ``eval_inputs``. Raises GateError with the closest recipe
    when nothing within ``budget`` float ops passes; the message names every limit that
    stopped the search (the budget, the ``max_steps`` cap, or no further layer adding error).
    """
    say = progress or (lambda _m: None)
    started = time.perf_counter()
    if accelerator == "none":
        enc = encoder_recipe(read_model_bytes(float_model))
        if enc is not None and any(
            g.kind == "block" for g in op_groups(read_model_bytes(float_model))
        ):
            return group_search(
                float_model, calibration, eval_inputs, ref, labels, gate, enc,
                io_dtype=io_dtype, budget=budget, precision=precision, trigger=trigger,
                say=say, max_groups=max_groups, started=started,
                time_budget_s=MIN_SEARCH_S if time_budget_s is None else time_budget_s,
            )  # fmt: skip
    s = Searcher(float_model, calibration, io_dtype, precision)
    info = s.info
    n_ops = len([o for o in info.operators if o.op not in CONVERSION_OPS])
    budget = default_budget(n_ops) if budget is None else budget
    strategy = Strategy.GRAPH_SUFFIX if accelerator != "none" else Strategy.SENSITIVITY
    unit = "float op(s)" if precision == FallbackPrecision.FLOAT else "int16 op(s)"
    other = "int16" if precision == FallbackPrecision.FLOAT else "float"

    base = s.quantize(())
    base_metrics = _evaluate(base, eval_inputs, ref, labels)
    base_info = read_model_bytes(base)
    unsupported = sorted({o.op for o in base_info.float_compute_ops()})
    steps: list[dict[str, Any]] = [
        {"step": 0, "float_ops": 0, "added": [], **_summary(base_metrics)}
    ]
    say(f"fallback: all-int8 recipe: {_describe(steps[0])}")
    tried: list[tuple[tuple[int, ...], bytes, dict[str, Any]]] = [((), base, base_metrics)]
    ranking: list[dict[str, Any]] = []
    hit_step_cap = False
    if not gate.passed(base_metrics):
        analysis = compare(
            float_model, base, list(cast_inputs(info, eval_inputs)), samples=ANALYSIS_SAMPLES
        )
        by_name = {t.name: t.index for t in info.tensors}
        groups = tensor_groups(info)
        keep: set[int] = set()
        for row in analysis.layers:
            if row.added_db <= 0:
                break
            if len(steps) > max_steps:
                hit_step_cap = True
                break
            t = by_name.get(row.float_tensor)
            if t is None or t not in groups:
                continue
            group = set(groups[t])
            if strategy == Strategy.GRAPH_SUFFIX:
                cut = min(group | keep) if keep else min(group)
                group = {o.index for o in info.operators if o.index >= cut}
            new = group - keep
            if not new:
                continue
            if len(keep | new) > budget:
                ranking.append({"layer": row.layer, "added_db": row.added_db, "skipped": "budget"})
                continue
            keep |= new
            ranking.append({"layer": row.layer, "added_db": row.added_db, "ops": sorted(new)})
            cand = s.quantize(sorted(keep))
            m = _evaluate(cand, eval_inputs, ref, labels)
            step = {
                "step": len(steps),
                "float_ops": len(keep),
                "added": [_op_entry(info, i) for i in sorted(new)],
                "because": {"layer": row.layer, "added_db": row.added_db, "snr_db": row.snr_db},
                **_summary(m),
            }
            steps.append(step)
            tried.append((tuple(sorted(keep)), cand, m))
            say(f"fallback: step {step['step']}: {len(keep)} {unit}: {_describe(step)}")
            if gate.passed(m):
                break
    best_keep, best_model, best_metrics = min(
        tried, key=lambda c: (gate.shortfall(c[2]), len(c[0]))
    )
    record: dict[str, Any] = {
        "gate": gate.describe(),
        "trigger": trigger,
        "strategy": strategy.value,
        "precision": precision.value,
        "budget": budget,
        "max_steps": max_steps,
        "ops_total": n_ops,
        "ops_kept_out_of_int8": len(best_keep),
        "kept": [_op_entry(info, i) for i in best_keep],
        "left_float_by_quantizer": unsupported,
        "steps": steps,
        "recipe": s.recipe(best_keep),
    }
    if strategy == Strategy.GRAPH_SUFFIX:
        record["accelerator"] = {
            "kind": accelerator,
            "ops_moved_off_accelerator": len(best_keep),
            "first_cpu_op": _op_entry(info, min(best_keep)) if best_keep else None,
            "note": "float ops form one tail of the graph: the accelerated part stays in one piece",
        }
    if not gate.passed(best_metrics):
        best = steps[[k for k, _, _ in tried].index(best_keep)]
        kept = ", ".join(f"{e['op']} {e['layer']}" for e in record["kept"][:6]) or "none"
        more = len(record["kept"]) - 6
        skipped = sum(1 for r in ranking if r.get("skipped") == "budget")
        limits = []
        if skipped:
            limits.append(
                f"--fallback-budget {budget} ({skipped} sensitive layer(s) skipped as over it)"
            )
        if hit_step_cap:
            limits.append(f"the search's fixed cap of {max_steps} recipes tried")
        if not limits:
            limits.append("no further layer adds measurable error")
        fixes = ["raise --fallback-budget"] if skipped else []
        raise GateError(
            f"no fallback recipe within {budget} {unit} meets the gate ({gate.describe()}); "
            f"stopped by: {'; '.join(limits)}; "
            f"closest: {_describe(best)} with {len(best_keep)} op(s) kept out of int8 "
            f"({kept}{f', +{more} more' if more > 0 else ''}); all-int8 gave {_describe(steps[0])}",
            ", ".join([*fixes, f"try --fallback-precision {other}"])
            + ", or use --quantization dynamic-range (int8 weights, float activations)",
        )
    route = {
        "engine": "ai-edge-quantizer",
        "recipe": "static_wi8_ai8 with per-op fallback",
        "calibration": "min-max (qsv_utils.min_max_update, one pass)",
        "weights": "int8 per-channel symmetric",
        "activations": "int8 per-tensor asymmetric",
        "fallback": f"{len(best_keep)} op(s) kept {precision.value}",
    }
    return FallbackResult(
        model=best_model, route=route, record=record, metrics=_summary(best_metrics)
    )


def _op_scores(
    float_model: bytes, base: bytes, info: ModelInfo, inputs: list[np.ndarray]
) -> dict[int, float]:
    """Float-model op index -> dB of median SNR its output loses in ``base`` (positive only)."""
    analysis = compare(float_model, base, inputs, samples=GROUP_ANALYSIS_SAMPLES)
    producer = {t: op.index for op in info.operators for t in op.outputs}
    by_name = {t.name: t.index for t in info.tensors}
    score: dict[int, float] = {}
    for row in analysis.layers:
        t = by_name.get(row.float_tensor)
        if t is None or t not in producer or row.added_db <= 0:
            continue
        score[producer[t]] = max(score.get(producer[t], 0.0), row.added_db)
    return score


def group_search(
    float_model: bytes,
    calibration: Sequence[np.ndarray],
    eval_inputs: Sequence[np.ndarray],
    ref: np.ndarray,
    labels: np.ndarray | None,
    gate: Gate,
    enc: EncoderRecipe,
    *,
    io_dtype: str,
    budget: int | None,
    precision: FallbackPrecision,
    trigger: str,
    say: Any,
    max_groups: int,
    time_budget_s: float,
    started: float,
) -> FallbackResult:
    """Greedy over op groups, starting from the encoder recipe.

    Groups (one per transformer block, one per computing op type; :func:`op_groups`) are
    ranked by the error their ops add in the recipe's model (sum of added dB, per-layer
    analysis), then tried best first: a group is kept only when it brings the gate closer.
    The search stops when the gate passes, after ``max_groups`` candidate recipes, when
    ``time_budget_s`` seconds have passed since ``started``, or when no group is left.
    """
    s = Searcher(float_model, calibration, io_dtype, precision, base=sorted(enc.kept))
    info = s.info
    n_ops = len([o for o in info.operators if o.op not in CONVERSION_OPS])
    budget = default_budget(n_ops) if budget is None else budget
    unit = "float op(s)" if precision == FallbackPrecision.FLOAT else "int16 op(s)"
    other = "int16" if precision == FallbackPrecision.FLOAT else "float"
    recipe_ops = enc.float_ops(info)
    recipe_tensors = set(enc.record(info)["tensors"])

    base = s.quantize(())
    base_metrics = _evaluate(base, eval_inputs, ref, labels)
    base_info = read_model_bytes(base)
    leftover = sorted({o.op for o in base_info.float_compute_ops(recipe_tensors)})
    steps: list[dict[str, Any]] = [
        {"step": 0, "float_ops": 0, "group": "encoder recipe", **_summary(base_metrics)}
    ]
    say(
        f"fallback: encoder recipe ({len(recipe_ops)} ops float: {enc.describe()}): "
        f"{_describe(steps[0])}"
    )
    keep: set[int] = set()
    best: tuple[tuple[int, ...], bytes, dict[str, Any]] = ((), base, base_metrics)
    ranked: list[tuple[float, OpGroup]] = []
    stopped: list[str] = []
    over_budget = 0
    if gate.passed(base_metrics):
        stopped.append("the gate passed")
    else:
        score = _op_scores(float_model, base, info, list(cast_inputs(info, eval_inputs)))
        groups = op_groups(info, exclude=frozenset(recipe_ops))
        ranked = sorted(
            ((round(sum(score.get(i, 0.0) for i in g.ops), 2), g) for g in groups),
            key=lambda x: (-x[0], x[1].name),
        )
        ranked = [(sc, g) for sc, g in ranked if sc > 0]
        for sc, g in ranked:
            if len(steps) > max_groups:
                stopped.append(f"the cap of {max_groups} groups tried")
                break
            if time.perf_counter() - started > time_budget_s:
                stopped.append(f"the time bound of {time_budget_s:.0f} s")
                break
            cand_keep = keep | set(g.ops)
            if cand_keep == keep:
                continue
            if len(cand_keep) > budget:
                over_budget += 1
                continue
            cand = s.quantize(sorted(cand_keep))
            m = _evaluate(cand, eval_inputs, ref, labels)
            accepted = gate.shortfall(m) < gate.shortfall(best[2]) - 1e-12 or gate.passed(m)
            if accepted:
                keep = cand_keep
                best = (tuple(sorted(keep)), cand, m)
            step = {
                "step": len(steps),
                "group": g.name,
                "kind": g.kind,
                "group_ops": len(g.ops),
                "score_db": sc,
                "accepted": accepted,
                "float_ops": len(keep),
                **_summary(m),
            }
            steps.append(step)
            say(
                f"fallback: step {step['step']}: {g.name} ({len(g.ops)} ops) "
                f"{'kept' if accepted else 'rejected'}: {_describe(step)}"
            )
            if gate.passed(m):
                stopped.append("the gate passed")
                break
        if not stopped:
            stopped.append("no further group adds measurable error")
    if over_budget:
        stopped.append(f"--fallback-budget {budget} ({over_budget} group(s) skipped as over it)")
    best_keep, best_model, best_metrics = best
    record: dict[str, Any] = {
        "gate": gate.describe(),
        "trigger": trigger,
        "strategy": Strategy.GROUPS.value,
        "precision": precision.value,
        "budget": budget,
        "max_steps": max_groups,
        "ops_total": n_ops,
        "ops_kept_out_of_int8": len(best_keep),
        "kept": [_op_entry(info, i) for i in best_keep],
        "recipe_kept": enc.record(info),
        "left_float_by_quantizer": leftover,
        "groups": [
            {"name": g.name, "kind": g.kind, "ops": len(g.ops), "score_db": sc} for sc, g in ranked
        ],
        "groups_tried": len(steps) - 1,
        "stopped_by": stopped,
        "steps": steps,
        "recipe": s.recipe(best_keep),
    }
    if not gate.passed(best_metrics):
        raise GateError(
            f"no fallback recipe within {budget} {unit} meets the gate ({gate.describe()}); "
            f"stopped by: {'; '.join(stopped)}; closest: {_describe(_summary(best_metrics))} "
            f"with the encoder recipe ({len(recipe_ops)} ops float) and {len(best_keep)} op(s) "
            f"more kept out of int8 after {len(steps) - 1} group(s) tried; the encoder recipe "
            f"alone gave {_describe(steps[0])}",
            ("raise --fallback-budget, " if over_budget else "")
            + f"try --fallback-precision {other}, or use --quantization dynamic-range "
            "(int8 weights, float activations)",
        )
    route = {
        "engine": "ai-edge-quantizer",
        "recipe": "static_wi8_ai8 + encoder recipe, per-group fallback",
        "calibration": "min-max (qsv_utils.min_max_update, one pass)",
        "weights": "int8 per-channel symmetric",
        "activations": "int8 per-tensor asymmetric",
        "kept_float": enc.record(info),
        "fallback": f"{len(best_keep)} op(s) kept {precision.value} in "
        f"{sum(1 for st in steps[1:] if st['accepted'])} group(s)",
    }
    return FallbackResult(
        model=best_model, route=route, record=record, metrics=_summary(best_metrics)
    )


def _op_entry(info: ModelInfo, idx: int) -> dict[str, Any]:
    from edgepack.accuracy.analyze import short_name

    op = info.operators[idx]
    name = info.tensors[op.outputs[0]].name if op.outputs else ""
    return {"index": idx, "op": op.op, "layer": short_name(name), "tensor": name}


@dataclass(frozen=True)
class FallbackStage:
    artifact: TFLiteArtifact
    route: dict[str, Any]
    record: dict[str, Any]


def run(
    float_model: TFLiteArtifact,
    torch_model: TorchModel,
    calibration: Dataset,
    evaluation: Dataset,
    plan: Any,  # pipeline.BuildPlan (not imported: the pipeline imports this module)
    trigger: str,
    ctx: StageContext,
) -> FallbackStage:
    """The pipeline's fallback stage: search, write the model, check it, record what it did."""
    from edgepack.stages.quantize import to_boundary_layout
    from edgepack.stages.validate import torch_outputs

    ctx.progress(f"fallback: full-int8 missed the gate ({trigger}); searching a per-op recipe")
    layout = float_model.io_layout
    # One plain build: what the build spent so far (export, conversion, quantize, validate).
    plain = sum(r.seconds for r in ctx.records)
    time_budget = round(max(MIN_SEARCH_S, SEARCH_TIME_FACTOR * plain), 1)
    with ctx.timed() as elapsed:
        ref = torch_outputs(torch_model, evaluation.inputs)[0]
        result = search(
            float_model.path.read_bytes(),
            [to_boundary_layout(x, layout) for x in calibration.inputs],
            [to_boundary_layout(x, layout) for x in evaluation.inputs],
            ref,
            evaluation.labels,
            Gate(plan.max_accuracy_drop, plan.min_fidelity),
            io_dtype=plan.io.value,
            budget=plan.fallback_budget,
            accelerator=plan.target.device.accelerator,
            precision=plan.fallback_precision,
            trigger=trigger,
            progress=ctx.progress,
            time_budget_s=time_budget,
        )
        out = ctx.stage_dir(NAME) / "model_full-int8_fallback.tflite"
        out.write_bytes(result.model)
        check_result(read_model_bytes(result.model), result.record, plan.io.value)
    ctx.record(
        NAME,
        params={
            "budget": result.record["budget"],
            "strategy": result.record["strategy"],
            "precision": result.record["precision"],
            "gate": result.record["gate"],
            "calibration_samples": len(calibration),
        },
        outputs=[out],
        metrics={
            **result.metrics,
            "ops_kept_out_of_int8": result.record["ops_kept_out_of_int8"],
            # timings: the search's bound, from the plain build's stage seconds
            "time_budget_s": time_budget if result.record["strategy"] == "op-groups" else None,
        },
        seconds=elapsed(),
    )
    return FallbackStage(
        artifact=TFLiteArtifact(path=out, kind="full-int8+fallback", io_layout=layout),
        route=result.route,
        record=result.record,
    )


def check_result(info: ModelInfo, record: dict[str, Any], io_dtype: str) -> None:
    """Read the model back: I/O dtype as asked, float compute only in the ops the recipe kept
    out of int8 (or that the quantizer cannot quantize)."""
    want = {"float32": "FLOAT32", "int8": "INT8", "uint8": "UINT8"}[io_dtype]
    wrong = [
        f"{t.name}: {t.dtype}"
        for t in info.input_tensors + info.output_tensors
        if t.dtype != want and t.dtype.startswith(("FLOAT", "INT8", "UINT8"))
    ]
    kept = {e["tensor"] for e in record["kept"]} | set(
        (record.get("recipe_kept") or {}).get("tensors", [])
    )
    allowed = set(record["left_float_by_quantizer"])
    stray = sorted({o.op for o in info.float_compute_ops(kept)} - allowed)
    if wrong:
        raise QuantizationError(
            f"the fallback recipe keeps ops next to the model's I/O in float, so its I/O is "
            f"not {io_dtype}: {', '.join(wrong)}",
            "pass --io-dtype float32 with --auto-fallback, or lower --fallback-budget",
        )
    if stray:
        raise QuantizationError(
            f"the fallback model computes in float in ops its recipe did not keep: "
            f"{', '.join(stray)}",
            "report this model to the edgepack maintainers",
        )


__all__ = [
    "FallbackPrecision",
    "FallbackResult",
    "FallbackStage",
    "Gate",
    "Strategy",
    "check_result",
    "default_budget",
    "op_scope_regex",
    "run",
    "search",
    "tensor_groups",
]
