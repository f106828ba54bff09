"""Stage "preflight": check the built model against the target's compatibility rule tables.

Runs after quantization. The report goes into the manifest under ``"compat"`` (the pipeline
stores ``report.to_dict()``) and into ``compat.json`` in the stage folder.
"""

from __future__ import annotations

import json
from typing import Any

from edgepack.compat import CompatReport, check, load_table
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
    return out


def run(model: TFLiteArtifact, profile: TargetProfile, ctx: StageContext) -> CompatReport:
    rules = [str(r) for r in profile.compat.rules]
    with ctx.timed() as elapsed:
        ctx.progress(f"preflight: {model.path.name} against {', '.join(rules) or 'no rules'}")
        report = check(model.path, rules)
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
