"""Stage `convert`: the exported program to a float32 .tflite with litert-torch.

The signature's tensors are named: inputs after the model's input specs (``image``,
``input_ids``), outputs after what the source says they are (``logits``), else litert-torch's
``output_0``, ... (a name that is not a unique identifier falls back to ``args_<i>``).

With ``io_layout = nhwc`` the program is wrapped so 4-D inputs are channels-last at the
graph boundary (litert_torch.to_channel_last_io): no TRANSPOSE lands at the model's edges,
which is what the Edge TPU and most camera pipelines want.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgepack._quiet import quiet_native
from edgepack.cache import ArtifactCache, cache_status, convert_key, key_label
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


_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def signature_names(names: Sequence[str]) -> list[str] | None:
    """``names`` when they can name a signature's tensors (unique identifiers), else None
    (litert-torch's defaults, ``args_<i>`` / ``output_<i>``)."""
    names = list(names)
    if not names or len(set(names)) != len(names) or not all(_IDENT.match(n) for n in names):
        return None
    return names


def _named_outputs(ep: Any, output_names: Sequence[str]) -> None:
    """Name the program's outputs: litert-torch takes a signature's output names from the
    keys of a dict output spec, so the flat outputs are declared as a dict of those names."""
    import torch.utils._pytree as pytree

    sig = ep.module_call_graph[0].signature
    n = sig.out_spec.num_leaves
    if len(output_names) != n:
        return
    if hasattr(pytree, "treespec_dict"):
        sig.out_spec = pytree.treespec_dict({k: pytree.treespec_leaf() for k in output_names})
    else:  # older torch
        sig.out_spec = pytree.TreeSpec(dict, list(output_names), [pytree.LeafSpec()] * n)


def convert_program(
    ep: Any,
    args: tuple[Any, ...],
    direct: bool = True,
    input_names: Sequence[str] = (),
    output_names: Sequence[str] = (),
) -> Any:
    """``litert_torch.convert`` of an ExportedProgram, without exporting it a second time.

    ``litert_torch.convert`` takes a module and runs torch.export on it again. This runs the
    rest of its pipeline (litert_torch/_convert/core.py, convert_signatures: decompositions,
    FX passes, flatbuffer) on the program we already have; the bytes are the same (tested).
    Falls back to the public call when those internals are not there (another release) or
    with ``direct=False``.
    """
    try:
        if not direct:
            raise ImportError("public route requested")
        from litert_torch import fx_infra
        from litert_torch import model as lt_model
        from litert_torch._convert import core, litert_converter, signature

        names = signature_names(input_names)
        if names is not None and len(names) == len(args):
            # Keyword samples only name the flat inputs (the program keeps its positions).
            sig = signature.Signature(
                lt_model.DEFAULT_SIGNATURE_NAME,
                ep.module(),
                (),
                dict(zip(names, args, strict=True)),
            )
        else:
            sig = signature.Signature(lt_model.DEFAULT_SIGNATURE_NAME, ep.module(), args, {})
        outs = signature_names(output_names)
        if outs is not None:
            _named_outputs(ep, outs)
        fx_infra.silence_torch_logs()
        ep = fx_infra.graph_utils.reset_from_node_meta(ep)
        ep = fx_infra.safe_run_decompositions(
            ep, fx_infra.decomp.pre_convert_decomp(), can_skip=False
        )
        ep = core._run_convert_passes(ep)
        build = litert_converter.exported_programs_to_flatbuffer
        model_class = lt_model.LiteRTModel
    except (ImportError, AttributeError):
        return _convert_module(ep.module(), args, input_names, output_names)
    exporter = build(
        [ep],
        [sig],
        enable_x64=False,
        quant_config=None,
        lightweight_conversion=False,
        runtime_constant_folding=None,
    )
    return model_class(exporter)


def _convert_module(
    module: Any, args: tuple[Any, ...], input_names: Sequence[str], output_names: Sequence[str]
) -> Any:
    """``litert_torch.convert`` of a module, its signature tensors named (keyword samples in,
    a dict out) when the names are usable."""
    import litert_torch

    ins = signature_names(input_names)
    outs = signature_names(output_names)
    if ins is None or len(ins) != len(args):
        return litert_torch.convert(module, args)
    return litert_torch.convert(
        _named_io(module, tuple(ins), tuple(outs or ())),
        sample_kwargs=dict(zip(ins, args, strict=True)),
    )


def _named_io_class() -> Any:
    import torch

    class NamedIO(torch.nn.Module):
        """Keyword inputs in the given order; a dict of the named outputs out."""

        def __init__(self, inner: Any, ins: tuple[str, ...], outs: tuple[str, ...]) -> None:
            super().__init__()
            self.inner = inner
            self.ins = ins
            self.outs = outs

        def forward(self, **kwargs: Any) -> Any:
            out = self.inner(*[kwargs[n] for n in self.ins])
            flat = tuple(out) if isinstance(out, (tuple, list)) else (out,)
            if len(self.outs) != len(flat):
                return out
            return dict(zip(self.outs, flat, strict=True))

    return NamedIO


def _named_io(inner: Any, ins: tuple[str, ...], outs: tuple[str, ...]) -> Any:
    return _named_io_class()(inner, ins, outs)


def _convert(exported: ExportedModel, layout: IOLayout, nhwc_args: list[int], out: Path) -> None:
    with quiet_native() as log:
        import litert_torch  # noisy native start-up: imported inside quiet_native
        import torch

        try:
            # A fresh program per conversion (litert-torch's passes edit it in place):
            # the one handed over in memory, else the file, loaded through the checked
            # loader (a .pt2 is a pickle carrier).
            ep = exported.program
            if ep is None:
                ep = load_program(exported.path)
            else:  # taken once: a second conversion loads the file
                object.__setattr__(exported, "program", None)
            shapes = boundary_shapes(exported.inputs, layout)
            names = [s.name for s in exported.inputs]
            args = tuple(
                torch.zeros(shape, dtype=getattr(torch, spec.dtype))
                for shape, spec in zip(shapes, exported.inputs, strict=True)
            )
            if layout == IOLayout.NHWC:
                # The channels-last wrapper is a new module: litert-torch exports it.
                module = litert_torch.to_channel_last_io(ep.module(), args=nhwc_args)
                edge = _convert_module(module, args, names, exported.output_names)
            else:
                edge = convert_program(ep, args, True, names, exported.output_names)
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
        key = convert_key(exported.cache_key, layout.value, exported.output_names)
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
