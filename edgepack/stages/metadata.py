"""Stage `metadata`: what an app needs to feed the model and read its output, in the package.

From the build's preprocessing (edgepack.images) and class names (--labels, or the class
subfolders of the data), this stage makes:
- ``interface``: the manifest's ``app`` record (preprocessing, input, labels, output meaning);
- a copy of the built model with TFLite metadata embedded (edgepack.tflite_metadata): the
  image normalization on raw pixels, the colour space and size, and labels.txt as the
  output's TENSOR_AXIS_LABELS, packed into the .tflite, as Android ML Model Binding and the
  TFLite Support library read them.

It runs before the manifest is made, so the model's recorded sha256 is the embedded one.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from edgepack.errors import DataError
from edgepack.stages.base import StageContext, TFLiteArtifact

LABELS_FILE = "labels.txt"
NAMES_LISTED = 1000  # class names listed in the manifest (all of them are in labels.txt)


def labels_text(labels: tuple[str, ...]) -> str:
    return "".join(f"{n}\n" for n in labels)


def check_labels(labels: tuple[str, ...], origin: str, model_path: Path) -> None:
    """Raise unless the model's first output has one score per label (its last axis)."""
    from edgepack.tflite import read_model

    out = read_model(model_path).output_tensors[0]
    classes = out.shape[-1] if out.shape else 1
    if len(out.shape) < 1 or classes != len(labels):
        raise DataError(
            f"{origin} gives {len(labels)} class name(s) but the model's output "
            f"'{out.name}' ({'x'.join(map(str, out.shape))}) has {classes} classes",
            "pass --labels FILE with one class name per line, in the order of the model's "
            "outputs (class subfolders are then matched by name)",
        )


def interface(
    spec: dict[str, Any] | None,
    spec_from: list[str],
    labels: tuple[str, ...] | None,
    labels_from: str | None,
    built: TFLiteArtifact,
) -> dict[str, Any]:
    """The manifest's ``app`` record: how to feed the package's model and read its output."""
    from edgepack.tflite import read_model

    info = read_model(built.path)
    inp, out = info.input_tensors[0], info.output_tensors[0]
    record: dict[str, Any] = {
        "input": {
            "name": inp.name,
            "shape": list(inp.shape),
            "dtype": inp.dtype.lower(),
            **({"quantization": inp.quantization.to_dict()} if inp.quantization.scales else {}),
        },
        "preprocess": None if spec is None else {**_package_spec(spec, built), "from": spec_from},
        "output": {
            "name": out.name,
            "shape": list(out.shape),
            "dtype": out.dtype.lower(),
            "meaning": (
                f"one score per class, in the order of {LABELS_FILE} (argmax: the predicted class)"
                if labels
                else "the model's output as PyTorch returns it"
            ),
        },
        "labels": None,
    }
    if labels:
        record["labels"] = {
            "file": LABELS_FILE,
            "count": len(labels),
            "from": labels_from,
            **({"names": list(labels)} if len(labels) <= NAMES_LISTED else {}),
        }
    return record


def _package_spec(spec: dict[str, Any], built: TFLiteArtifact) -> dict[str, Any]:
    """The spec as the package's input takes it (layout of the model at the boundary)."""
    layout = "NHWC" if built.io_layout == "nhwc" else spec["layout"]
    return {**{k: v for k, v in spec.items() if k != "channels"}, "layout": layout}


def run(
    built: TFLiteArtifact,
    app: dict[str, Any],
    spec: dict[str, Any] | None,
    labels: tuple[str, ...] | None,
    name: str,
    description: str,
    version: str,
    ctx: StageContext,
) -> TFLiteArtifact:
    """A copy of ``built`` with TFLite metadata (and labels.txt packed) in this stage's folder."""
    from edgepack import tflite_metadata as tm
    from edgepack.images import pixel_normalization
    from edgepack.manifest import sha256_file

    with ctx.timed() as elapsed:
        ctx.progress("metadata: embedding TFLite metadata")
        inp = app["input"]
        image = None
        mean: tuple[float, ...] = ()
        std: tuple[float, ...] = ()
        stats_min: tuple[float, ...] = ()
        stats_max: tuple[float, ...] = ()
        if spec is not None:
            h, w = spec["crop"]
            rgb = spec["channel_order"] == "RGB"
            image = {
                "color_space": ("RGB" if rgb else "UNKNOWN")
                if spec["channels"] == 3
                else "GRAYSCALE",
                "width": w,
                "height": h,
            }
            m, s = pixel_normalization(spec)
            mean, std = tuple(m), tuple(s)
            stats_min = tuple((0.0 - a) / b for a, b in zip(m, s, strict=True))
            stats_max = tuple((255.0 - a) / b for a, b in zip(m, s, strict=True))
            what = (
                f"{'RGB' if rgb else 'BGR'} image {h}x{w}, layout {app['preprocess']['layout']}: "
                "(pixel - mean) / std on 0-255 pixel values"
            )
        else:
            what = f"{inp['dtype']} {'x'.join(map(str, inp['shape']))}"
        meta = tm.ModelMetadataInfo(
            name=name,
            description=description,
            version=version,
            inputs=(
                tm.TensorInfo(
                    inp["name"], what, image, mean, std, stats_min=stats_min, stats_max=stats_max
                ),
            ),
            outputs=(
                tm.TensorInfo(
                    app["output"]["name"],
                    app["output"]["meaning"],
                    labels_file=LABELS_FILE if labels else None,
                ),
            ),
        )
        files = {LABELS_FILE: labels_text(labels).encode()} if labels else {}
        try:
            data = tm.embed(built.path.read_bytes(), tm.build_metadata(meta), files)
        except tm.MetadataError as exc:
            raise DataError(
                f"TFLite metadata cannot be embedded: {exc}", "build without --labels"
            ) from exc
        out = ctx.stage_dir("metadata") / built.path.name
        out.write_bytes(data)
        seconds = elapsed()
    ctx.record(
        "metadata",
        params={
            "format": f"TFLite metadata {tm.MIN_PARSER_VERSION} ({tm.METADATA_NAME})",
            "associated_files": sorted(files),
            "normalization": None if spec is None else {"mean": list(mean), "std": list(std)},
        },
        outputs=[out],
        seconds=seconds,
    )
    return replace(built, path=out, sha256=sha256_file(out))
