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


MAX_EXPR = 80  # characters of a symbolic expression kept in the message
DATA_DEPENDENT_HINT = (
    "the model's control flow or output size depends on the data (post-processing such as a "
    "score threshold or NMS): export the network without post-processing (e.g. return raw "
    "boxes/scores) and run NMS in the app"
)


def _short(expr: str) -> str:
    expr = expr.strip()
    return expr if len(expr) <= MAX_EXPR else f"{expr[:MAX_EXPR]}... ({len(expr)} chars)"


def _first_line(text: str) -> str:
    """torch's first line with its symbolic expressions cut: a detector's NMS gives a guard on
    a sum of hundreds of unbacked sizes, kilobytes long, repeated as "unhinted"."""
    m = re.match(r"(.*?data-dependent expression )(.*?)(?: \(unhinted: .*?\))?\.(.*)$", text)
    if not m:
        return _short(text) if len(text) > 300 else text
    rest = re.sub(r"\(Size-like symbols: [^)]*\)", "", m.group(3)).strip()
    return f"{m.group(1)}{_short(m.group(2))}" + (f". {rest}" if rest else "")


def is_data_dependent(exc: BaseException) -> bool:
    text = str(exc)
    return "DataDependent" in type(exc).__name__ or "data-dependent" in text


def _explain(exc: BaseException, user_files: set[str]) -> str:
    """The first line of torch.export's message (expressions cut), torch's "Caused by" line
    naming the function that raised (e.g. batched_nms), and the user's source line."""
    text = str(exc).strip()
    first = _first_line(text.splitlines()[0])[:300] if text else type(exc).__name__
    cause = re.search(r"Caused by: \((?:[^)]*/)?([^/)]+:\d+) in ([^)]+)\)", text)
    where = ""
    m = re.search(r'File "([^"]+)", line (\d+), in (\S+)\n\s*(.+)', text)
    if m:
        where = f" (at {m.group(1).rsplit('/', 1)[-1]}:{m.group(2)} in {m.group(3)}: {m.group(4).strip()})"
    else:
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename in user_files]
        if frames:
            f = frames[-1]
            where = f" (at {f.filename.rsplit('/', 1)[-1]}:{f.lineno}: {(f.line or '').strip()})"
    if cause and f"at {cause.group(1)}:" not in where:  # torch names a frame the user's is not
        first += f" (caused by {cause.group(1)} in {cause.group(2)})"
    return f"{type(exc).__name__}: {first}{where}"


def _program(model: TorchModel) -> Any:
    """torch.export ``model`` (or take its program)."""
    import torch

    if model.exported is not None:
        return model.exported
    user_files = set()
    src = model.source.get("spec", "")
    if ".py:" in src:
        user_files.add(str(Path(src.rsplit(":", 1)[0]).resolve()))
    try:
        return torch.export.export(model.module, model.example_inputs, strict=False)
    except Exception as exc:
        raise ExportError(
            "torch.export cannot trace the model: " + _explain(exc, user_files),
            DATA_DEPENDENT_HINT
            if is_data_dependent(exc)
            else "make forward() traceable: no data-dependent Python control flow or "
            "unsupported ops; see the torch.export docs for the failing construct",
        ) from exc


def _save(ep: Any, out: Path) -> None:
    import torch

    # Through memory: torch's zip writer aborts the process (SIGABRT, no exception) when
    # a write fails; Python's write raises OSError, which becomes a clean StorageError.
    buf = io.BytesIO()
    torch.export.save(ep, buf)
    try:
        out.write_bytes(buf.getbuffer())
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(out)) from exc
    del buf


def run(
    model: TorchModel,
    ctx: StageContext,
    cache: ArtifactCache | None = None,
    no_cache_reason: str = "--no-cache",
    keep_program: bool = False,
) -> ExportedModel:
    """Export ``model``; with a ``cache``, take the .pt2 from it when its key is there.

    ``keep_program``: hand the program to the one conversion that follows in this process
    (``ExportedModel.program``); the .pt2 is then written only when the cache stores it.
    """
    out = ctx.stage_dir(NAME) / "model.pt2"
    program = None
    with ctx.timed() as elapsed:
        key = export_key(model) if cache is not None else None
        hit = cache.get(key, out) if cache is not None and key is not None else None
        if hit is not None:
            ctx.progress(f"export: cache hit ({key_label(hit.key)})")
            nodes = hit.meta.get("nodes")
        else:
            ctx.progress("export: torch.export")
            with quiet_native():
                ep = _program(model)
                nodes = sum(1 for _ in ep.graph.nodes)
                stored = cache is not None and key is not None
                if stored or not keep_program:
                    _save(ep, out)
            if cache is not None and key is not None:
                cache.put(key, out, {"artifact": "export", "nodes": nodes})
            program = ep if keep_program else None
    ctx.record(
        NAME,
        params={"strict": False, "torch_export": True},
        metrics={"nodes": nodes},
        seconds=elapsed(),
        cache=cache_status(cache, key, hit is not None, no_cache_reason),
    )
    # The .pt2 zip is not byte-reproducible (archive timestamps), so it is not hashed into
    # the manifest; the converted float model is.
    return ExportedModel(
        path=out,
        inputs=model.inputs,
        sha256="",
        cache_key=key or "",
        output_names=tuple(model.output_names),
        program=program,
    )
