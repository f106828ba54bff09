"""Stage `convert`: the exported program to a float32 .tflite with litert-torch.

With ``io_layout = nhwc`` the program is wrapped so 4-D inputs are channels-last at the
graph boundary (litert_torch.to_channel_last_io): no TRANSPOSE lands at the model's edges,
which is what the Edge TPU and most camera pipelines want.
"""

from __future__ import annotations

from edgepack._quiet import quiet_native
from edgepack.errors import ConversionError
from edgepack.pt2 import load_program
from edgepack.stages.base import ExportedModel, InputSpec, StageContext, TFLiteArtifact
from edgepack.targets import IOLayout

NAME = "convert"


def nhwc_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    return (shape[0], *shape[2:], shape[1]) if len(shape) == 4 else shape


def boundary_shapes(inputs: tuple[InputSpec, ...], layout: IOLayout) -> list[tuple[int, ...]]:
    """The shapes the converted model takes at its inputs."""
    return [nhwc_shape(s.shape) if layout == IOLayout.NHWC else s.shape for s in inputs]


def run(exported: ExportedModel, layout: IOLayout, ctx: StageContext) -> TFLiteArtifact:
    ctx.progress("convert: litert-torch to float32 .tflite")
    out = ctx.stage_dir(NAME) / "model_float32.tflite"
    with ctx.timed() as elapsed, quiet_native() as log:
        import litert_torch  # noisy native start-up: imported inside quiet_native
        import torch

        try:
            ep = load_program(exported.path)
            module = ep.module()
            shapes = boundary_shapes(exported.inputs, layout)
            args = tuple(
                torch.zeros(shape, dtype=getattr(torch, spec.dtype))
                for shape, spec in zip(shapes, exported.inputs, strict=True)
            )
            nhwc_args = [i for i, s in enumerate(exported.inputs) if len(s.shape) == 4]
            if layout == IOLayout.NHWC:
                if not nhwc_args:
                    raise ConversionError(
                        "io_layout 'nhwc' needs at least one 4-D (N, C, H, W) input",
                        "use --io-layout nchw for this model",
                    )
                module = litert_torch.to_channel_last_io(module, args=nhwc_args)
            edge = litert_torch.convert(module, args)
            edge.export(str(out))
        except ConversionError:
            raise
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            raise ConversionError(
                f"litert-torch could not convert the model: {type(exc).__name__}: {first}",
                "an op without a TFLite lowering is the usual cause; the converter said: "
                + (log.tail(2) or "nothing more"),
            ) from exc
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
    )
    return art
