"""Stage "preflight": check the built model against the target's compatibility rule tables.

Runs after quantization. The report goes into the manifest under ``"compat"`` (the pipeline
stores ``report.to_dict()``) and into ``compat.json`` in the stage folder.

The XNNPACK prediction is checked against the real delegate: the host LiteRT interpreter
applies XNNPACK and reports which nodes it took. The result goes under the table's ``"real"``
key (partitions, CPU ops, ``agrees``, the ops predicted wrongly); :func:`disagreements` turns
it into the warnings the build prints (also for each target of a matrix build).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from edgepack.compat import CompatReport, Placement, TableResult, check, load_table
from edgepack.stages.base import StageContext, TFLiteArtifact
from edgepack.targets import TargetProfile

NAME = "preflight"


def summary(report: CompatReport) -> dict[str, Any]:
    """The per-table numbers worth a glance (the stage's metrics)."""
    out: dict[str, Any] = {"ok": report.ok, "fully_delegated": report.fully_delegated}
    for r in report.results:
        out[r.rules] = {
            "ok": r.ok,
            "fully_delegated": r.fully_delegated,
            "partitions": r.partitions,
            "split_index": r.split_index,
            "ops_on_accelerator": len(r.ops) - len(r.cpu_ops),
            "ops_total": len(r.ops),
            "mac_share": r.mac_share,
            "cpu_ops": sorted({o.op for o in r.cpu_ops}),
        }
        if r.real is not None:
            out[r.rules]["real_partitions"] = r.real["partitions"]
            out[r.rules]["real_agrees"] = r.real["agrees"]
    return out


def real_delegation(result: TableResult, model: Path) -> dict[str, Any]:
    """Predicted vs real placement of every op, from the host interpreter's XNNPACK."""
    from edgepack.manifest import tool_versions
    from edgepack.runtime import xnnpack_delegation

    runtime = f"ai-edge-litert {tool_versions().get('ai-edge-litert', '?')} on the host"
    try:
        real = xnnpack_delegation(model)
    except Exception as exc:  # the host interpreter refuses the model: say so, do not guess
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        return {"runtime": runtime, "agrees": None, "error": first}
    wrong = [
        {
            "index": o.index,
            "op": o.op,
            "predicted": o.placement.value,
            "real": "accelerator" if o.index in real.delegated else "cpu",
            **({"reason": o.reason.value} if o.reason else {}),
        }
        for o in result.ops
        if (o.placement is Placement.ACCELERATOR) != (o.index in real.delegated)
    ]
    return {
        "runtime": runtime,
        "partitions": real.partitions,
        "ops_on_accelerator": len(real.delegated),
        "cpu_ops": sorted(o.index for o in result.ops if o.index not in real.delegated),
        "agrees": not wrong and real.partitions == result.partitions,
        "differences": wrong,
    }


def disagreements(compat: dict[str, Any]) -> list[str]:
    """One line per rule table whose prediction the real runtime contradicted; ``compat`` is
    ``CompatReport.to_dict()`` (a manifest's ``"compat"``)."""
    out = []
    for name, r in (compat.get("results") or {}).items():
        real = r.get("real")
        if not real or real.get("agrees"):
            continue
        if "error" in real:
            out.append(f"pre-flight {name} not checked against the real delegate: {real['error']}")
            continue
        wrong = real["differences"]
        ops = ", ".join(
            f"{d['op']}#{d['index']} ({d['predicted']} -> {d['real']})" for d in wrong[:6]
        )
        more = f", +{len(wrong) - 6} more" if len(wrong) > 6 else ""
        out.append(
            f"pre-flight {name} predicted {r['partitions']} partition(s) with "
            f"{len(r['cpu_ops'])} op(s) on the CPU; the real {r['accelerator']} delegate "
            f"({real['runtime']}) made {real['partitions']} with "
            f"{len(real['cpu_ops'])} on the CPU"
            + (f"; ops the rule table gets wrong: {ops}{more}" if wrong else "")
        )
    return out


def run(model: TFLiteArtifact, profile: TargetProfile, ctx: StageContext) -> CompatReport:
    rules = [str(r) for r in profile.compat.rules]
    with ctx.timed() as elapsed:
        ctx.progress(f"preflight: {model.path.name} against {', '.join(rules) or 'no rules'}")
        report = check(model.path, rules)
        if "xnnpack" in rules:
            results = tuple(
                dataclasses.replace(r, real=real_delegation(r, model.path))
                if r.rules == "xnnpack"
                else r
                for r in report.results
            )
            report = dataclasses.replace(report, results=results)
        out = ctx.stage_dir(NAME) / "compat.json"
        out.write_text(json.dumps(report.to_dict(), indent=2, sort_keys=True) + "\n")
    ctx.record(
        NAME,
        params={
            "rules": {name: load_table(name).describe() for name in rules},
            "require_full_delegation": profile.compat.require_full_delegation,
        },
        outputs=[out],
        metrics=summary(report),
        seconds=elapsed(),
    )
    return report
