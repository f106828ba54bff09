"""Stage `validate`: parity, accuracy and budgets of the built model; the build's gates.

- float parity: the float .tflite against PyTorch on the same inputs: max / mean abs diff and
  the max abs diff relative to the reference's magnitude (meaningful at any output scale);
- accuracy with labelled eval data: top-1 of PyTorch float vs the quantized model, and the
  drop in points, gated by ``max_accuracy_drop``;
- fidelity of the quantized outputs against PyTorch (cosine, SNR, max abs error);
- size against the profile's budget; host latency of the float and the built model (at
  most ``latency_runs`` invokes each, stopped after ``latency_budget_s`` seconds).
Everything deterministic goes into ``metrics``; latency goes into ``timing`` (build field).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgepack.accuracy.metrics import accuracy, fidelity, masked, nn_agreement, top1
from edgepack.data import Dataset
from edgepack.errors import GateError
from edgepack.runtime import Runner
from edgepack.stages.base import StageContext, TFLiteArtifact, TorchModel
from edgepack.stages.quantize import to_boundary_layout
from edgepack.targets import Budgets
from edgepack.tflite import read_model

NAME = "validate"
NOT_MEASURED = "no --eval data (calibration data is not held out: no accuracy is claimed on it)"
PARITY_SAMPLES = 64  # float parity: at most this many samples ...
PARITY_MIN_SAMPLES = 4  # ... at least this many (or every sample there is) ...
PARITY_MACS = 20e9  # ... and about this many multiply-accumulates in all


def parity_samples(float_path: Path, n: int) -> int:
    """How many samples the float parity check runs: a conversion error is systematic, so a
    few samples show it; a large model gets fewer (its float model's MACs against
    PARITY_MACS), between PARITY_MIN_SAMPLES and PARITY_SAMPLES. Deterministic: the number
    depends on the model and the data, never on the machine's speed."""
    from edgepack.compat.macs import op_macs

    info = read_model(float_path)
    macs = max(1, sum(op_macs(info, op) for op in info.operators))
    return min(n, PARITY_SAMPLES, max(PARITY_MIN_SAMPLES, int(PARITY_MACS // macs)))


@dataclass
class ValidationReport:
    metrics: dict[str, Any] = field(default_factory=dict)
    timing: dict[str, Any] = field(default_factory=dict)
    gates: list[dict[str, Any]] = field(default_factory=list)

    def gate(self, name: str, limit: float, value: Any, passed: bool, op: str = "") -> None:
        g: dict[str, Any] = {"gate": name, "limit": limit, "value": value}
        if op:
            g["op"] = op
        g["passed"] = bool(passed)
        self.gates.append(g)

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [g for g in self.gates if not g["passed"]]


def torch_outputs(model: TorchModel, inputs: tuple[np.ndarray, ...]) -> list[np.ndarray]:
    """Run the PyTorch model on stacked samples; batched when the model allows it."""
    import torch

    batch = model.inputs[0].shape[0] if model.inputs[0].shape else 1
    n = inputs[0].shape[0]

    def run(chunk: int) -> list[np.ndarray]:
        outs: list[list[np.ndarray]] = []
        with torch.no_grad():
            for s in range(0, n, chunk):
                args = [torch.from_numpy(np.ascontiguousarray(x[s : s + chunk])) for x in inputs]
                y = model.module(*args)
                ys = list(y) if isinstance(y, (tuple, list)) else [y]
                if not outs:
                    outs = [[] for _ in ys]
                for k, t in enumerate(ys):
                    outs[k].append(t.detach().float().numpy())
        return [np.concatenate(o, axis=0) for o in outs]

    if n % batch == 0 and batch == 1:
        try:
            return run(64)
        except Exception:
            pass  # the model may hard-code its batch size
    return run(batch)


def _sig(x: float, digits: int = 4) -> float:
    """Round to significant digits: a figure of 1e-12 stays 1e-12, not 0."""
    return float(f"{x:.{digits}g}")


def float_parity(ref: list[np.ndarray], out: list[np.ndarray]) -> dict[str, Any]:
    """Converted outputs ``out`` against the reference ``ref`` (one array per output).

    ``max_rel_diff`` is max|out - ref| / max|ref| over every output: 1e-9-sized outputs that
    agree give ~1e-7 (float32 rounding), a wrong model gives ~1 whatever the scale.
    """
    diffs = [np.abs(r.astype(np.float64) - o) for r, o in zip(ref, out, strict=True)]
    max_abs = max(float(np.max(d)) for d in diffs)
    magnitude = max(float(np.max(np.abs(r))) for r in ref)
    return {
        "samples": int(ref[0].shape[0]),
        "max_abs_diff": _sig(max_abs),
        "mean_abs_diff": _sig(float(np.mean([np.mean(d) for d in diffs]))),
        "max_rel_diff": _sig(max_abs / max(magnitude, float(np.finfo(np.float32).tiny))),
        "ref_max_abs": _sig(magnitude),
    }


DATA_SOURCES = {
    "eval": "eval",
    "calibration": "calibration (optimistic: the quantizer was calibrated on these samples)",
    "random": "random (parity only)",
}


def attention_mask(
    specs: Any, inputs: tuple[np.ndarray, ...], output: np.ndarray
) -> tuple[np.ndarray | None, str | None]:
    """The attention mask input of a token model with per-token outputs [N, T, D]: a 2-D
    integer input [N, T] of 0/1 values (named like "mask" when several qualify). Its padding
    positions are what the consumer drops, so fidelity leaves them out."""
    if output.ndim < 3:
        return None, None
    found = [
        (x, s.name)
        for s, x in zip(specs, inputs, strict=True)
        if x.ndim == 2
        and x.dtype.kind in "iub"
        and x.shape == output.shape[:2]
        and np.isin(x, (0, 1)).all()
    ]
    named = [f for f in found if "mask" in f[1].lower()]
    pick = named if len(named) == 1 else found
    return pick[0] if len(pick) == 1 else (None, None)


def run(
    torch_model: TorchModel,
    float_model: TFLiteArtifact,
    built: TFLiteArtifact,
    data: Dataset,
    ctx: StageContext,
    *,
    max_accuracy_drop: float | None = None,
    budgets: Budgets | None = None,
    latency_runs: int = 50,
    latency_budget_s: float | None = None,
    min_fidelity: float | None = None,
    raise_on_fail: bool = True,
    data_kind: str = "eval",
    profile_limits: tuple[str, ...] = (),
) -> ValidationReport:
    """``data_kind``: "eval" (held-out data), "calibration" or "random". Accuracy is measured
    on eval data only; on anything else it is recorded as not measured. ``profile_limits``:
    the gates whose limit is the target profile's default (named so in a failure)."""
    ctx.progress("validate: parity, accuracy, size, host latency")
    rep = ValidationReport()
    with ctx.timed() as elapsed:
        boundary = tuple(to_boundary_layout(x, built.io_layout) for x in data.inputs)
        ref = torch_outputs(torch_model, data.inputs)
        float_runner = Runner(float_model.path)
        built_runner = Runner(built.path)
        k = parity_samples(float_model.path, len(data))
        float_out = float_runner.run([x[:k] for x in boundary])
        rep.metrics["float_parity"] = float_parity([r[:k] for r in ref], float_out)
        out = built_runner.run(list(boundary))
        mask, mask_name = attention_mask(torch_model.inputs, data.inputs, ref[0])
        rep.metrics["fidelity"] = fidelity(ref[0], out[0], mask)
        where = DATA_SOURCES[data_kind]
        rep.metrics["fidelity"]["data"] = where
        if mask is not None:
            rep.metrics["fidelity"]["positions"] = (
                f"{int(np.count_nonzero(mask))} of {mask.size} token positions "
                f"({mask_name} == 1; padding excluded)"
            )
        rep.metrics["samples"] = len(data)
        labels = data.labels if data_kind == "eval" else None
        rep.metrics["data"] = (
            data_kind if data_kind != "eval" else ("eval" if labels is not None else "unlabelled")
        )
        if data_kind != "eval":
            rep.metrics["accuracy"] = {"measured": False, "reason": NOT_MEASURED}
        if labels is not None:
            if torch_model.reference is not None:
                # Compressed: the drop is measured against the model as the user gave it.
                original = torch_outputs(torch_model.reference, data.inputs)
                acc = accuracy(original[0], out[0], labels)
                acc["compressed_float"] = top1(ref[0], labels)
            else:
                acc = accuracy(ref[0], out[0], labels)
            rep.metrics["accuracy"] = acc
            if max_accuracy_drop is not None:
                drop = acc["drop_points"]
                rep.gate(
                    "max_accuracy_drop",
                    max_accuracy_drop,
                    round(drop, 4),
                    drop <= max_accuracy_drop + 1e-9,
                )
        elif len(data) >= 3 and out[0].reshape(len(data), -1).shape[1] > 1:
            rep.metrics["fidelity"]["nn_agreement"] = nn_agreement(
                masked(ref[0], mask), masked(out[0], mask)
            )
        if min_fidelity is not None:
            cos = rep.metrics["fidelity"]["cosine"]
            rep.gate("min_fidelity", min_fidelity, cos, cos >= min_fidelity - 1e-12, op=">=")
        foot = model_footprint(built.path)
        rep.metrics["size_bytes"] = foot["size_bytes"]
        rep.metrics["est_ram_mb_upper"] = foot["est_ram_mb_upper"]
        if budgets is not None and budgets.max_model_kb is not None:
            kb = foot["size_bytes"] / 1024
            rep.gate("max_model_kb", budgets.max_model_kb, round(kb, 2), kb <= budgets.max_model_kb)
        if budgets is not None and budgets.max_ram_mb is not None:
            est = rep.metrics["est_ram_mb_upper"]
            rep.gate("max_ram_mb", budgets.max_ram_mb, est, est <= budgets.max_ram_mb)
        if latency_runs > 0:
            # The parity and fidelity invokes above are timed runs already (no second warmup).
            # The float model is the reference figure: a quarter of the budget.
            runs, budget = latency_runs, latency_budget_s
            float_budget = None if budget is None else budget / 4
            rep.timing["host_latency"] = {
                "float32": float_runner.latency_ms(runs=runs, budget_s=float_budget, reuse=True),
                built.kind: built_runner.latency_ms(runs=runs, budget_s=budget, reuse=True),
                "threads": 1,
                "max_runs": latency_runs,
                "budget_s": latency_budget_s,
            }
        else:
            rep.timing["host_latency"] = {"measured": False, "reason": "turned off"}
    rep.metrics["gates"] = rep.gates
    ctx.record(
        NAME,
        params={
            "max_accuracy_drop": max_accuracy_drop,
            "min_fidelity": min_fidelity,
            "samples": len(data),
            "data": rep.metrics["data"],
            "parity_samples": rep.metrics["float_parity"]["samples"],
        },
        metrics={k: v for k, v in rep.metrics.items() if k != "gates"},
        seconds=elapsed(),
    )
    if raise_on_fail:
        raise_for_gates(rep, built.kind, profile_limits)
    return rep


def model_footprint(path: Path) -> dict[str, Any]:
    """Size and an upper estimate of RAM (the file + every non-constant tensor at once)."""
    info = read_model(path)
    act = sum(
        int(np.prod(t.shape or (1,))) * _itemsize(t.dtype)
        for t in info.tensors
        if not t.is_constant
    )
    return {
        "size_bytes": info.size_bytes,
        "size_kb": round(info.size_bytes / 1024, 2),
        "est_ram_mb_upper": round((info.size_bytes + act) / 2**20, 3),
    }


ACCURACY_GATES = ("max_accuracy_drop", "min_fidelity")


def raise_for_gates(rep: ValidationReport, kind: str, profile_limits: tuple[str, ...] = ()) -> None:
    """Raise GateError for the first failed gate (accuracy and fidelity gates first)."""
    failed = sorted(rep.failed, key=lambda g: g["gate"] not in ACCURACY_GATES)
    if not failed:
        return
    g = failed[0]
    default = " (the target profile's default)" if g["gate"] in profile_limits else ""
    hint = (
        "try another --quantization (dynamic-range keeps activations float), more "
        "representative --calibration data, or --auto-fallback; --max-accuracy-drop / "
        "--min-fidelity set your own limit, --no-accuracy-gate turns the gate off (recorded)"
    )
    if g["gate"] == "max_accuracy_drop":
        acc = rep.metrics["accuracy"]
        raise GateError(
            f"accuracy gate failed: top-1 dropped {acc['drop_points']:.2f} points "
            f"(float {acc['float']:.2f}% -> {kind} {acc['quantized']:.2f}%), "
            f"the limit is {g['limit']} points{default}; no package was written",
            hint,
        )
    if g["gate"] == "min_fidelity":
        fid = rep.metrics["fidelity"]
        raise GateError(
            f"fidelity gate failed: output cosine vs the float model {fid['cosine']:.4f} < "
            f"{g['limit']}{default} (SNR {fid['snr_db']:.1f} dB, max abs error {fid['max_abs_diff']:.4g}) "
            f"for {kind}; no package was written",
            hint,
        )
    raise GateError(
        f"budget gate failed: {g['gate']} {g['value']} > {g['limit']} "
        f"(target budget); no package was written",
        "compress the model (--prune), pick a smaller quantization, or raise the budget "
        "in a custom target profile",
    )


def _itemsize(dtype: str) -> int:
    return {
        "FLOAT32": 4,
        "FLOAT16": 2,
        "INT32": 4,
        "INT64": 8,
        "INT8": 1,
        "UINT8": 1,
        "INT16": 2,
        "BOOL": 1,
        "FLOAT64": 8,
    }.get(dtype, 4)


__all__ = [
    "ValidationReport",
    "fidelity",
    "float_parity",
    "model_footprint",
    "raise_for_gates",
    "run",
    "top1",
    "torch_outputs",
]
