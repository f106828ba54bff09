"""Stage `export`: torch.export the model once; the .pt2 is shared by every target."""

from __future__ import annotations

import io
import re
import traceback
from pathlib import Path
from typing import Any

from edgepack._quiet import quiet_native
from edgepack.cache import ArtifactCache, cache_status, export_key, key_label
from edgepack.errors import ExportError
from edgepack.stages.base import ExportedModel, StageContext, TorchModel

NAME = "export"


def _explain(exc: BaseException, user_files: set[str]) -> str:
    """The first line of torch.export's message plus the user's source line, when known."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    where = ""
    m = re.search(r'File "([^"]+)", line (\d+), in (\S+)\n\s*(.+)', text)
    if m:
        where = f" (at {m.group(1).rsplit('/', 1)[-1]}:{m.group(2)} in {m.group(3)}: {m.group(4).strip()})"
    else:
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename in user_files]
        if frames:
            f = frames[-1]
            where = f" (at {f.filename.rsplit('/', 1)[-1]}:{f.lineno}: {(f.line or '').strip()})"
    return f"{type(exc).__name__}: {first[:300]}{where}"


def _export(model: TorchModel, out: Path) -> Any:
    """torch.export ``model`` (or take its program) and save it to ``out``; the program."""
    import torch

    if model.exported is not None:
        ep = model.exported
    else:
        user_files = set()
        src = model.source.get("spec", "")
        if ".py:" in src:
            user_files.add(str(Path(src.rsplit(":", 1)[0]).resolve()))
        try:
            ep = torch.export.export(model.module, model.example_inputs, strict=False)
        except Exception as exc:
            raise ExportError(
                "torch.export cannot trace the model: " + _explain(exc, user_files),
                "make forward() traceable: no data-dependent Python control flow or "
                "unsupported ops; see the torch.export docs for the failing construct",
            ) from exc
    # Through memory: torch's zip writer aborts the process (SIGABRT, no exception) when
    # a write fails; Python's write raises OSError, which becomes a clean StorageError.
    buf = io.BytesIO()
    torch.export.save(ep, buf)
    try:
        out.write_bytes(buf.getbuffer())
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(out)) from exc
    del buf
    return ep


def run(
    model: TorchModel,
    ctx: StageContext,
    cache: ArtifactCache | None = None,
    no_cache_reason: str = "--no-cache",
) -> ExportedModel:
    """Export ``model``; with a ``cache``, take the .pt2 from it when its key is there."""
    out = ctx.stage_dir(NAME) / "model.pt2"
    with ctx.timed() as elapsed:
        key = export_key(model) if cache is not None else None
        hit = cache.get(key, out) if cache is not None and key is not None else None
        if hit is not None:
            ctx.progress(f"export: cache hit ({key_label(hit.key)})")
            nodes = hit.meta.get("nodes")
        else:
            ctx.progress("export: torch.export")
            with quiet_native():
                nodes = sum(1 for _ in _export(model, out).graph.nodes)
            if cache is not None and key is not None:
                cache.put(key, out, {"artifact": "export", "nodes": nodes})
    ctx.record(
        NAME,
        params={"strict": False, "torch_export": True},
        metrics={"nodes": nodes},
        seconds=elapsed(),
        cache=cache_status(cache, key, hit is not None, no_cache_reason),
    )
    # The .pt2 zip is not byte-reproducible (archive timestamps), so it is not hashed into
    # the manifest; the converted float model is.
    return ExportedModel(path=out, inputs=model.inputs, sha256="", cache_key=key or "")
