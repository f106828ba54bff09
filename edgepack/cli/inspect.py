"""`edgepack inspect`: what is inside a .tflite (ops, I/O with quantization, size by tensor)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from edgepack.cli.output import echo_json, echo_table


def register(app: typer.Typer) -> None:
    @app.command("inspect")
    def inspect(
        model: Path = typer.Argument(..., help="A .tflite file or a package folder."),
        top: int = typer.Option(15, "--top", help="How many of the largest tensors to list."),
        json_: bool = typer.Option(False, "--json", help="Print JSON."),
    ) -> None:
        """Print ops, inputs/outputs with dtypes and quantization, size by tensor, and the
        embedded TFLite metadata (normalization, labels, associated files)."""
        from edgepack.tflite import read_model

        path = model
        if model.is_dir():
            from edgepack.manifest import model_path, read_manifest

            path = model_path(model, read_manifest(model))
        info = read_model(path)
        meta = model_metadata(path)
        if json_:
            echo_json(
                {
                    **info.summary(),
                    "tensors_by_size": info.weight_bytes_by_tensor()[:top],
                    "metadata": meta,
                }
            )
            return
        typer.echo(
            f"{path}: {info.size_bytes / 1024:.1f} KB, {len(info.operators)} ops, "
            f"{info.subgraphs} subgraph(s), sha256 {info.sha256[:16]}"
        )
        typer.echo("\ninputs / outputs")
        rows = []
        for kind, ts in (("input", info.input_tensors), ("output", info.output_tensors)):
            for t in ts:
                q = t.quantization.to_dict()
                qs = (
                    f"scale {q['scale']:.6g} zero_point {q['zero_point']}"
                    if "scale" in q
                    else ("per-channel" if q else "-")
                )
                rows.append((kind, t.name, "x".join(map(str, t.shape)), t.dtype.lower(), qs))
        echo_table(["", "name", "shape", "dtype", "quantization"], rows)
        typer.echo("\nops")
        echo_table(["op", "count"], list(info.op_counts().items()))
        floats = info.float_compute_ops()
        if floats:
            typer.echo("float compute ops: " + ", ".join(sorted({o.op for o in floats})))
        typer.echo(
            f"\nlargest tensors (of {sum(t.buffer_bytes for t in info.tensors)} bytes of weights)"
        )
        consumer = {i: f"{op.op} #{op.index}" for op in info.operators for i in op.inputs}
        big = sorted((t for t in info.tensors if t.buffer_bytes > 0), key=lambda t: -t.buffer_bytes)
        echo_table(
            ["tensor", "used by", "shape", "bytes", "dtype"],
            [
                (
                    short_name(t.name),
                    consumer.get(t.index, "-"),
                    "x".join(map(str, t.shape)),
                    t.buffer_bytes,
                    t.dtype.lower(),
                )
                for t in big[:top]
            ],
        )
        echo_metadata(meta)


def model_metadata(path: Path) -> dict[str, Any] | None:
    """The TFLite metadata embedded in a model (edgepack.tflite_metadata), with the labels of
    its packed labels file; None when it has none."""
    import io
    import zipfile

    from edgepack import tflite_metadata as tm
    from edgepack.errors import PackageError

    data = path.read_bytes()
    try:
        meta = tm.read_metadata(data)
    except tm.MetadataError as exc:
        raise PackageError(f"{path}: {exc}", "rebuild the package with `edgepack build`") from exc
    if meta is None:
        return None
    out = meta.to_dict()
    for t in out["outputs"]:
        name = t.get("labels_file")
        if name and name in meta.associated_files:
            with zipfile.ZipFile(io.BytesIO(data)) as z:
                t["labels"] = z.read(name).decode("utf-8", "replace").splitlines()
    return out


def echo_metadata(meta: dict[str, Any] | None) -> None:
    if meta is None:
        typer.echo("\nmetadata: none (no TFLITE_METADATA)")
        return
    typer.echo(
        f"\nmetadata: {meta['name']} (version {meta['version']}, "
        f"min parser {meta['min_parser_version']})"
    )
    if meta["description"]:
        typer.echo(f"  {meta['description']}")
    for kind in ("inputs", "outputs"):
        for t in meta[kind]:
            parts = []
            if "image" in t:
                im = t["image"]
                parts.append(f"image {im['color_space']} {im['width']}x{im['height']}")
            if "normalization" in t:
                n = t["normalization"]
                fmt = "/".join
                parts.append(
                    "normalization mean "
                    + fmt(f"{v:.4g}" for v in n["mean"])
                    + " std "
                    + fmt(f"{v:.4g}" for v in n["std"])
                )
            if "labels" in t:
                first = ", ".join(t["labels"][:5]) + (", ..." if len(t["labels"]) > 5 else "")
                parts.append(f"{len(t['labels'])} labels ({t['labels_file']}: {first})")
            elif t.get("labels_file"):
                parts.append(f"labels {t['labels_file']} (not packed)")
            typer.echo(f"  {kind[:-1]} {t['name']}: " + ("; ".join(parts) or t["description"]))
    files = ", ".join(meta["associated_files"]) or "none"
    typer.echo(f"  associated files: {files}")


def short_name(name: str, width: int = 48) -> str:
    """Converter tensor names repeat the module path; keep the last module of the first."""
    first = next((part for part in name.split(";") if part), name)
    last = first.rsplit("/", 1)[-1]
    last = last.rsplit(".", 1)[-1] if last.startswith("torch.") else last
    return last if len(last) <= width else last[: width - 3] + "..."
