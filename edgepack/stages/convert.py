"""Stage `convert`: the exported program to a float32 .tflite with litert-torch.

With ``io_layout = nhwc`` the program is wrapped so 4-D inputs are channels-last at the
graph boundary (litert_torch.to_channel_last_io): no TRANSPOSE lands at the model's edges,
which is what the Edge TPU and most camera pipelines want.
"""

from __future__ import annotations

from pathlib import Path

from edgepack._quiet import quiet_native
from edgepack.cache import ArtifactCache, cache_status, convert_key, key_label
from edgepack.errors import ConversionError
from edgepack.stages.base import ExportedModel, InputSpec, StageContext, TFLiteArtifact
from edgepack.targets import IOLayout

NAME = "convert"


def nhwc_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    return (shape[0], *shape[2:], shape[1]) if len(shape) == 4 else shape


def boundary_shapes(inputs: tuple[InputSpec, ...], layout: IOLayout) -> list[tuple[int, ...]]:
    """The shapes the converted model takes at its inputs."""
    return [nhwc_shape(s.shape) if layout == IOLayout.NHWC else s.shape for s in inputs]


def _convert(exported: ExportedModel, layout: IOLayout, nhwc_args: list[int], out: Path) -> None:
    with quiet_native() as log:
        import litert_torch  # noisy native start-up: imported inside quiet_native
        import torch

        try:
            ep = torch.export.load(exported.path)
            module = ep.module()
            shapes = boundary_shapes(exported.inputs, layout)
            args = tuple(
                torch.zeros(shape, dtype=getattr(torch, spec.dtype))
                for shape, spec in zip(shapes, exported.inputs, strict=True)
            )
            if layout == IOLayout.NHWC:
                module = litert_torch.to_channel_last_io(module, args=nhwc_args)
            edge = litert_torch.convert(module, args)
            edge.export(str(out))
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            raise ConversionError(
                f"litert-torch could not convert the model: {type(exc).__name__}: {first}",
                "an op without a TFLite lowering is the usual cause; the converter said: "
                + (log.tail(2) or "nothing more"),
            ) from exc


def run(
    exported: ExportedModel,
    layout: IOLayout,
    ctx: StageContext,
    cache: ArtifactCache | None = None,
    no_cache_reason: str = "--no-cache",
) -> TFLiteArtifact:
    """Convert; with a ``cache`` and an export key, take the .tflite from it when there."""
    out = ctx.stage_dir(NAME) / "model_float32.tflite"
    nhwc_args = [i for i, s in enumerate(exported.inputs) if len(s.shape) == 4]
    if layout == IOLayout.NHWC and not nhwc_args:
        raise ConversionError(
            "io_layout 'nhwc' needs at least one 4-D (N, C, H, W) input",
            "use --io-layout nchw for this model",
        )
    key = None
    if cache is not None and exported.cache_key:
        key = convert_key(exported.cache_key, layout.value)
    elif cache is not None:
        no_cache_reason = "the export is not cached"
        cache = None
    with ctx.timed() as elapsed:
        hit = cache.get(key, out) if cache is not None and key is not None else None
        if hit is not None:
            ctx.progress(f"convert: cache hit ({key_label(hit.key)})")
        else:
            ctx.progress("convert: litert-torch to float32 .tflite")
            _convert(exported, layout, nhwc_args, out)
            if cache is not None and key is not None:
                cache.put(key, out, {"artifact": "convert", "io_layout": layout.value})
    art = TFLiteArtifact(path=out, kind="float32", io_layout=layout.value)
    ctx.record(
        NAME,
        params={
            "converter": "litert-torch",
            "io_layout": layout.value,
            "channels_last_inputs": nhwc_args if layout == IOLayout.NHWC else [],
        },
        outputs=[out],
        metrics={"bytes": out.stat().st_size},
        seconds=elapsed(),
        cache=cache_status(cache, key, hit is not None, no_cache_reason),
    )
    return art
