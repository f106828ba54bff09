"""`edgepack compress`: prune (and distill) a PyTorch model, save it as a torch.export .pt2.

The .pt2 is a regular ExportedProgram (``torch.export.load``) that `edgepack build` accepts as
a source. Beside it, ``<name>.json`` records what every stage did (parameters, params, MACs,
sparsity, accuracy). Both files are written to a temporary name and renamed into place, so a
failed run leaves nothing behind, and an existing output is never overwritten without force.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgepack.errors import PackageError, UsageError
from edgepack.manifest import StageRecord, sha256_file, tool_versions
from edgepack.stages import distill as distill_stage
from edgepack.stages import export as export_stage
from edgepack.stages import prune as prune_stage
from edgepack.stages.base import StageContext, TorchModel, noop_progress
from edgepack.stages.distill import DistillSpec
from edgepack.stages.prune import PruneSpec

SIDECAR_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class CompressPlan:
    prune: PruneSpec
    output: Path
    distill: DistillSpec | None = None
    eval: Path | None = None  # labelled data: top-1 before/after each stage
    force: bool = False
    seed: int = 0


@dataclass(frozen=True)
class CompressResult:
    output: Path
    sidecar: Path
    records: list[StageRecord] = field(default_factory=list)


def sidecar_path(output: Path) -> Path:
    return output.with_suffix(".json")


def check_output(output: Path, force: bool) -> None:
    """Fail early on an output we would refuse to write (cheap; before any heavy work)."""
    if output.suffix != ".pt2":
        raise UsageError(
            f"output {output} must end in .pt2 (a torch.export ExportedProgram)",
            "e.g. -o pruned.pt2",
        )
    if output.is_dir():
        raise PackageError(f"output {output} is a directory", "pass a file name, e.g. pruned.pt2")
    if not force:
        for p in (output, sidecar_path(output)):
            if p.exists():
                raise PackageError(
                    f"{p} already exists", "pass --force to overwrite it, or choose another -o"
                )


def run_compression(
    model: TorchModel,
    prune: PruneSpec | None,
    distill: DistillSpec | None,
    ctx: StageContext,
    eval_data: Any = None,
) -> TorchModel:
    """prune -> distill (teacher: the model as loaded). Each stage records into ``ctx``."""
    current = model
    if prune is not None:
        current = prune_stage.run(current, prune, ctx, eval_data=eval_data)
    if distill is not None:
        current = distill_stage.run(current, model, distill, ctx, eval_data=eval_data)
    return current


def compress(
    model: TorchModel, plan: CompressPlan, progress: Callable[[str], None] = noop_progress
) -> CompressResult:
    from edgepack.data import load_dataset

    check_output(plan.output, plan.force)
    if plan.distill is not None:
        distill_stage.validate_distill(plan.distill, model.inputs)
    eval_data = None
    if plan.eval is not None:
        eval_data = load_dataset(plan.eval, model.inputs, purpose="evaluation", require_labels=True)

    with tempfile.TemporaryDirectory(prefix="edgepack-compress-") as work:
        ctx = StageContext(Path(work), progress=progress, seed=plan.seed)
        compressed = run_compression(model, plan.prune, plan.distill, ctx, eval_data)
        exported = export_stage.run(compressed, ctx)
        plan.output.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".edgepack-compress-", dir=plan.output.parent))
        try:
            pt2 = tmp / plan.output.name
            shutil.copyfile(exported.path, pt2)
            sidecar = tmp / sidecar_path(plan.output).name
            doc = {
                "schema_version": SIDECAR_SCHEMA_VERSION,
                "name": model.name,
                "source": model.source,
                "inputs": [i.to_dict() for i in model.inputs],
                "seed": plan.seed,
                "stages": [r.to_dict() for r in ctx.records],
                "output": {"file": plan.output.name, "sha256": sha256_file(pt2)},
                "versions": tool_versions(),
            }
            sidecar.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")
            os.replace(sidecar, sidecar_path(plan.output))
            try:
                os.replace(pt2, plan.output)
            except OSError:
                with contextlib.suppress(OSError):
                    sidecar_path(plan.output).unlink()
                raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return CompressResult(plan.output, sidecar_path(plan.output), list(ctx.records))
