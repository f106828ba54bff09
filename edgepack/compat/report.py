"""The result of a pre-flight: per op, accelerator or CPU and why; partitions; MAC share."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from edgepack.errors import CompatibilityError


class FullDelegationError(CompatibilityError):
    """The target requires every op on its accelerator and the model does not get there.

    Exit code 3, like the other release gates: the input is valid, the model fails a gate.
    """

    exit_code = 3


class Placement(str, Enum):
    ACCELERATOR = "accelerator"
    CPU = "cpu"


class Reason(str, Enum):
    OP_NOT_SUPPORTED = "op not supported"
    NOT_QUANTIZED = "not quantized (float tensors)"
    DTYPE = "unsupported dtype"
    DYNAMIC_SHAPE = "dynamic shape"
    RANK_LIMIT = "rank or size limit"
    PARAM = "unsupported activation or parameter"
    AFTER_SPLIT = "after the split (one accelerator subgraph)"
    PARTITION_LIMIT = "partition not delegated (partition limit)"


@dataclass(frozen=True)
class OpPlacement:
    index: int
    op: str
    dtypes: str  # runtime tensor dtypes, inputs -> outputs ("INT8", "UINT8->INT8")
    placement: Placement
    reason: Reason | None = None
    detail: str = ""
    macs: int = 0
    partition: int | None = None  # delegate partition number (accelerator ops only)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "index": self.index,
            "op": self.op,
            "dtypes": self.dtypes,
            "placement": self.placement.value,
            "macs": self.macs,
        }
        if self.partition is not None:
            d["partition"] = self.partition
        if self.reason is not None:
            d["reason"] = self.reason.value
            d["detail"] = self.detail
        return d


@dataclass(frozen=True)
class TableResult:
    """One rule table applied to one model."""

    rules: str
    accelerator: str
    version: str
    applies_to: str
    source: str
    ops: tuple[OpPlacement, ...]
    partitions: int
    split_index: int | None  # first CPU op that consumes an accelerator output
    warnings: tuple[str, ...] = ()
    # What the real runtime did with the model, when it could be checked on the host
    # (XNNPACK: the host interpreter's delegate); see edgepack.stages.preflight.
    real: dict[str, Any] | None = None

    @property
    def cpu_ops(self) -> list[OpPlacement]:
        return [o for o in self.ops if o.placement is Placement.CPU]

    @property
    def first_cpu_index(self) -> int | None:
        cpu = self.cpu_ops
        return cpu[0].index if cpu else None

    @property
    def macs_total(self) -> int:
        return sum(o.macs for o in self.ops)

    @property
    def macs_on_accelerator(self) -> int:
        return sum(o.macs for o in self.ops if o.placement is Placement.ACCELERATOR)

    @property
    def mac_share(self) -> float | None:
        """Share of the model's MACs that run on the accelerator (None: no MAC-carrying ops)."""
        total = self.macs_total
        return round(self.macs_on_accelerator / total, 6) if total else None

    @property
    def fully_delegated(self) -> bool:
        return bool(self.ops) and not self.cpu_ops

    @property
    def ok(self) -> bool:
        """The compute runs on the accelerator: every MAC-carrying op is delegated.

        Ops without MACs at the graph boundary (a float QUANTIZE, say) may stay on the CPU.
        """
        if self.partitions == 0:
            return False
        share = self.mac_share
        return self.fully_delegated if share is None else share == 1.0

    def to_dict(self) -> dict[str, Any]:
        split = self.ops[self.split_index].op if self.split_index is not None else None
        return {
            "rules": self.rules,
            "accelerator": self.accelerator,
            "version": self.version,
            "applies_to": self.applies_to,
            "source": self.source,
            "ok": self.ok,
            "fully_delegated": self.fully_delegated,
            "partitions": self.partitions,
            "split_index": self.split_index,
            "split_op": split,
            "first_cpu_index": self.first_cpu_index,
            "ops_total": len(self.ops),
            "ops_on_accelerator": len(self.ops) - len(self.cpu_ops),
            "macs_total": self.macs_total,
            "macs_on_accelerator": self.macs_on_accelerator,
            "mac_share": self.mac_share,
            "cpu_ops": [
                {
                    "index": o.index,
                    "op": o.op,
                    "reason": o.reason.value if o.reason else None,
                    "detail": o.detail,
                }
                for o in self.cpu_ops
            ],
            "warnings": list(self.warnings),
            "ops": [o.to_dict() for o in self.ops],
            **({"real": self.real} if self.real is not None else {}),
        }


@dataclass(frozen=True)
class CompatReport:
    """Pre-flight result of one model against one or more rule tables."""

    model: str  # file name
    sha256: str
    results: tuple[TableResult, ...]

    def result(self, rules: str) -> TableResult:
        for r in self.results:
            if r.rules == rules:
                return r
        raise KeyError(rules)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    @property
    def fully_delegated(self) -> bool:
        return all(r.fully_delegated for r in self.results)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "sha256": self.sha256,
            "ok": self.ok,
            "fully_delegated": self.fully_delegated,
            "results": {r.rules: r.to_dict() for r in self.results},
        }


def require_full_delegation(report: CompatReport, target: str) -> None:
    """Raise :class:`FullDelegationError` unless every op runs on the accelerator."""
    for r in report.results:
        if r.fully_delegated:
            continue
        cpu = r.cpu_ops
        first = cpu[0]
        reason = first.reason.value if first.reason else "cpu"
        share = "n/a" if r.mac_share is None else f"{100 * r.mac_share:.1f}%"
        raise FullDelegationError(
            f"target '{target}' requires full delegation to {r.accelerator}, but "
            f"{len(cpu)} of {len(r.ops)} ops fall back to the CPU (first: op {first.index} "
            f"{first.op}: {reason}; MACs on the accelerator: {share})",
            f"run `edgepack check MODEL --target {target}` for the per-op table; replace or move "
            "the unsupported ops, or use a target without compat.require_full_delegation",
        )
