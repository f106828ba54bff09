"""Folders of images as calibration / evaluation data, and how images become model input.

A folder is read as torchvision's ImageFolder (one subfolder per class; classes sorted by
name give the label indices) or, without subfolders, as unlabelled images. PNG, JPEG, BMP and
WebP are decoded with Pillow. The preprocessing is a dict with the keys of :data:`SPEC_KEYS`:

- ``resize``: the shorter side is resized to this many pixels (None: no resize);
- ``crop``: center crop, an int or [height, width] (None: the model's input size);
- ``value_range``: pixels 0..255 are scaled to [lo, hi] (default [0, 1]);
- ``mean`` / ``std``: then ``(x - mean) / std`` per channel, in the scale of value_range;
- ``interpolation``: bilinear | bicubic | nearest (Pillow's resampling filter);
- ``channel_order``: RGB | BGR (mean and std are in this order);
- ``layout``: NCHW | NHWC of the PyTorch model's input (None: read from the input shape).

It comes from ``--preprocess`` (a preset name and/or key=value pairs), edgepack.toml's
``[data] preprocess``, and the model source (TorchModel.preprocess), merged in that order of
precedence, key by key. Decoding and resizing are deterministic (Pillow, no threads).
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgepack.errors import DataError, UsageError
from edgepack.stages.base import InputSpec

SPEC_KEYS = (
    "resize",
    "crop",
    "mean",
    "std",
    "interpolation",
    "channel_order",
    "layout",
    "value_range",
)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
INTERPOLATIONS = ("bilinear", "bicubic", "nearest")
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
PRESETS: dict[str, dict[str, Any]] = {
    # torchvision's ImageNet evaluation transform (ResNet, MobileNet, EfficientNet-B0, ...)
    "imagenet": {
        "resize": 256,
        "crop": 224,
        "mean": IMAGENET_MEAN,
        "std": IMAGENET_STD,
        "interpolation": "bilinear",
        "value_range": [0.0, 1.0],
    },
    # Inception-style models: 299x299, pixels scaled to [-1, 1]
    "inception": {
        "resize": 342,
        "crop": 299,
        "mean": [0.0, 0.0, 0.0],
        "std": [1.0, 1.0, 1.0],
        "interpolation": "bilinear",
        "value_range": [-1.0, 1.0],
    },
    # pixels scaled to [0, 1], no normalization, center crop to the model's input size
    "unit": {"mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0], "value_range": [0.0, 1.0]},
    # raw pixels 0..255 as float, center crop to the model's input size
    "none": {"mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0], "value_range": [0.0, 255.0]},
}
SPEC_HINT = (
    "--preprocess imagenet (presets: " + ", ".join(PRESETS) + "), or key=value pairs, e.g. "
    "resize=256,crop=224,mean=0.485/0.456/0.406,std=0.229/0.224/0.225,range=0-1"
)
_KEY_ALIASES = {"range": "value_range"}


# ------------------------------------------------------------------ the preprocessing spec


def parse_spec(text: str, origin: str = "--preprocess") -> dict[str, Any]:
    """``imagenet``, ``resize=256,crop=224,...`` or ``imagenet,crop=96`` (a preset, then
    keys that replace its values) -> a spec dict (only the keys given)."""
    spec: dict[str, Any] = {}
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise UsageError(f"{origin} is empty", SPEC_HINT)
    for i, part in enumerate(parts):
        if "=" not in part:
            if ":" in part:
                key, _, value = part.partition(":")
                raise UsageError(
                    f"{origin}: '{part}' is not key=value (write {key}={value})", SPEC_HINT
                )
            if i != 0:
                raise UsageError(
                    f"{origin}: '{part}' is not key=value (a preset name comes first)", SPEC_HINT
                )
            spec.update(preset(part, origin))
            continue
        key, _, value = part.partition("=")
        key = _KEY_ALIASES.get(key.strip(), key.strip())
        if key not in SPEC_KEYS:
            raise UsageError(
                f"{origin}: unknown key '{key}' (keys: {', '.join((*SPEC_KEYS, 'range'))})",
                SPEC_HINT,
            )
        spec[key] = _parse_value(key, value.strip(), origin)
    return check_spec(spec, origin)


def preset(name: str, origin: str = "--preprocess") -> dict[str, Any]:
    if name not in PRESETS:
        from difflib import get_close_matches

        close = get_close_matches(name, list(PRESETS), n=1)
        maybe = f" - did you mean '{close[0]}'?" if close else ""
        raise UsageError(
            f"{origin}: unknown preprocessing preset '{name}'{maybe} "
            f"(presets: {', '.join(PRESETS)})",
            SPEC_HINT,
        )
    return {k: list(v) if isinstance(v, list) else v for k, v in PRESETS[name].items()}


def _floats(value: str, key: str, origin: str) -> list[float]:
    try:
        return [float(v) for v in value.split("/")]
    except ValueError:
        raise UsageError(
            f"{origin}: {key}={value} is not numbers separated by / (e.g. 0.485/0.456/0.406)",
            SPEC_HINT,
        ) from None


def _parse_value(key: str, value: str, origin: str) -> Any:
    bad = UsageError(f"{origin}: {key}={value} is not valid", SPEC_HINT)
    if key == "resize":
        if not value.isdigit():
            raise bad
        return int(value)
    if key == "crop":
        m = re.fullmatch(r"(\d+)(?:x(\d+))?", value)
        if m is None:
            raise UsageError(f"{origin}: crop={value} is not N or HxW (e.g. 224)", SPEC_HINT)
        return int(m[1]) if m[2] is None else [int(m[1]), int(m[2])]
    if key in ("mean", "std"):
        return _floats(value, key, origin)
    if key == "value_range":
        m = re.fullmatch(r"(-?[\d.]+)[-/](-?[\d.]+)", value)
        if m is None:
            raise UsageError(
                f"{origin}: range={value} is not lo-hi (e.g. 0-1, -1-1 or 0-255)", SPEC_HINT
            )
        return _floats(f"{m[1]}/{m[2]}", key, origin)
    return value


def check_spec(spec: dict[str, Any], origin: str) -> dict[str, Any]:
    """Validate a (partial) spec from any origin; returns a normalized copy."""
    problems = []
    unknown = sorted(set(spec) - set(SPEC_KEYS))
    if unknown:
        problems.append(f"unknown key(s) {', '.join(unknown)} (keys: {', '.join(SPEC_KEYS)})")
    out: dict[str, Any] = {}
    for key in SPEC_KEYS:
        if key not in spec or spec[key] is None:
            continue
        v = spec[key]
        if key == "resize":
            ok = isinstance(v, int) and not isinstance(v, bool) and v > 0
        elif key == "crop":
            if isinstance(v, int) and not isinstance(v, bool):
                v = [v, v]
            ok = (
                isinstance(v, (list, tuple))
                and len(v) == 2
                and all(isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in v)
            )
            v = list(v) if ok else v
        elif key in ("mean", "std", "value_range"):
            ok = (
                isinstance(v, (list, tuple))
                and len(v) in ((2,) if key == "value_range" else (1, 3))
                and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)
            )
            v = [float(x) for x in v] if ok else v
            if ok and key == "std" and any(x <= 0 for x in v):
                ok = False
            if ok and key == "value_range" and v[0] >= v[1]:
                ok = False
        elif key == "interpolation":
            ok = isinstance(v, str) and v.lower() in INTERPOLATIONS
            v = v.lower() if ok else v
        elif key == "channel_order":
            ok = isinstance(v, str) and v.upper() in ("RGB", "BGR")
            v = v.upper() if ok else v
        else:  # layout
            ok = isinstance(v, str) and v.upper() in ("NCHW", "NHWC")
            v = v.upper() if ok else v
        if not ok:
            problems.append(f"{key} = {spec[key]!r} is not valid")
        out[key] = v
    if problems:
        raise UsageError(f"{origin}: preprocessing " + "; ".join(problems), SPEC_HINT)
    return out


def resolve_spec(
    option: str | dict[str, Any] | None,
    config: str | dict[str, Any] | None,
    source: dict[str, Any] | None,
) -> tuple[dict[str, Any] | None, list[str]]:
    """Merge the preprocessing layers: ``option`` (--preprocess) over ``config``
    (edgepack.toml [data] preprocess) over ``source`` (the model source), key by key.
    Returns the merged spec (None when no layer says anything) and the layers used."""
    merged: dict[str, Any] = {}
    used: list[str] = []
    layers: list[tuple[str, Any]] = [
        ("model source", source),
        ("edgepack.toml", config),
        ("--preprocess", option),
    ]
    for origin, layer in layers:
        if layer is None:
            continue
        if isinstance(layer, str):
            part = parse_spec(layer, origin)
        elif isinstance(layer, dict):
            part = check_spec(layer, origin)
        else:
            raise UsageError(
                f"{origin}: preprocessing must be a preset name, key=value text or a table",
                SPEC_HINT,
            )
        merged.update(part)
        used.append(origin)
    return (merged if used else None), used


def fit_spec(spec: dict[str, Any] | None, input_spec: InputSpec, where: str) -> dict[str, Any]:
    """The complete spec for a model input (every key set), or a DataError saying why the
    images cannot feed it. ``where`` names the data in messages."""
    if spec is None:
        raise DataError(
            f"{where} is a folder of images, but the model source does not say how to "
            "preprocess images",
            "pass --preprocess imagenet or key=value pairs (e.g. "
            "--preprocess resize=256,crop=224,mean=0.485/0.456/0.406,std=0.229/0.224/0.225), "
            "or set [data] preprocess in edgepack.toml; see docs/data.md",
        )
    spec = check_spec(spec, "preprocessing")
    shape = tuple(input_spec.shape)
    full = "x".join(map(str, shape))
    if len(shape) != 4 or not input_spec.dtype.startswith("float"):
        raise DataError(
            f"{where}: images cannot feed the model input '{input_spec.name}' "
            f"({input_spec.dtype} {full}): it is not a float image batch (N,C,H,W or N,H,W,C)",
            "images feed single-input image models; use an .npz for other inputs",
        )
    layout = spec.get("layout")
    if layout is None:
        layout = "NCHW" if shape[1] in (1, 3) else "NHWC" if shape[3] in (1, 3) else None
        if layout is None:
            raise DataError(
                f"the model input '{input_spec.name}' ({full}) has no 1- or 3-channel axis "
                "at position 1 or 3",
                "set layout=NCHW or layout=NHWC in --preprocess",
            )
    channels, h, w = (shape[1], shape[2], shape[3]) if layout == "NCHW" else shape[3:] + shape[1:3]
    problems = []
    if channels not in (1, 3):
        problems.append(f"{channels} channels in layout {layout} (images have 1 or 3)")
    crop = spec.get("crop") or [h, w]
    if list(crop) != [h, w]:
        problems.append(
            f"crop {crop[0]}x{crop[1]} gives {crop[0]}x{crop[1]} images, the model takes {h}x{w}"
        )
    mean = spec.get("mean") or [0.0] * channels
    std = spec.get("std") or [1.0] * channels
    for key, v in (("mean", mean), ("std", std)):
        if len(v) == 1:
            v = v * channels
        if len(v) != channels:
            problems.append(f"{key} has {len(v)} values for {channels} channel(s)")
        if key == "mean":
            mean = v
        else:
            std = v
    if problems:
        raise DataError(
            f"the preprocessing does not fit the model input '{input_spec.name}' ({full}): "
            + "; ".join(problems),
            f"set crop={h}" + ("" if h == w else f"x{w}") + " (and resize) in --preprocess, "
            "or check --input-shape",
        )
    return {
        "resize": spec.get("resize"),
        "crop": [h, w],
        "mean": mean,
        "std": std,
        "interpolation": spec.get("interpolation") or "bilinear",
        "channel_order": spec.get("channel_order") or "RGB",
        "layout": layout,
        "value_range": spec.get("value_range") or [0.0, 1.0],
        "channels": channels,
    }


def pixel_normalization(spec: dict[str, Any]) -> tuple[list[float], list[float]]:
    """The spec as (mean, std) on raw 0..255 pixels: ``(pixel - mean) / std`` gives the same
    input (what TFLite metadata's NormalizationOptions hold)."""
    lo, hi = spec["value_range"]
    k = 255.0 / (hi - lo)
    mean = [k * (m - lo) for m in spec["mean"]]
    std = [k * s for s in spec["std"]]
    return mean, std


# ------------------------------------------------------------------ folders of images


@dataclass(frozen=True)
class ImageFolder:
    root: Path
    files: tuple[Path, ...]  # relative to root, in ImageFolder order (class, then name)
    labels: np.ndarray | None  # class index per file (None: flat, unlabelled)
    classes: tuple[str, ...] | None


def _visible(p: Path) -> bool:
    return not p.name.startswith(".")


def _is_image(p: Path) -> bool:
    return p.suffix.lower() in IMAGE_SUFFIXES


def scan_folder(
    root: Path, purpose: str, class_names: Sequence[str] | None = None
) -> ImageFolder | None:
    """The images of ``root``; None for a folder of .npy files (the array format).

    ``class_names`` (from --labels): a subfolder's label is its position in this list, else
    the subfolders sorted by name give the label indices (torchvision's ImageFolder)."""
    entries = sorted(e for e in root.iterdir() if _visible(e))
    dirs = [e for e in entries if e.is_dir()]
    files = [e for e in entries if e.is_file()]
    npy = [f for f in files if f.suffix == ".npy"]
    images = [f for f in files if _is_image(f)]
    others = [f for f in files if f not in npy and f not in images]
    hint = (
        "a data folder holds images (PNG, JPEG, BMP, WebP) in one subfolder per class, or "
        "images only (unlabelled), or .npy files only (one sample each); see docs/data.md"
    )
    if npy and not images and not dirs and not others:
        return None
    if not entries:
        raise DataError(f"{purpose} data folder {root} is empty", hint)
    if npy or others or (images and dirs):
        kinds = []
        if npy:
            kinds.append(f"{len(npy)} .npy file(s)")
        if images:
            kinds.append(f"{len(images)} image(s)")
        if dirs:
            kinds.append(f"{len(dirs)} subfolder(s)")
        if others:
            kinds.append("other files (" + ", ".join(f.name for f in others[:3]) + ")")
        raise DataError(f"{purpose} data folder {root} mixes " + ", ".join(kinds), hint)
    if not dirs:
        return ImageFolder(root, tuple(f.relative_to(root) for f in images), None, None)
    names = [d.name for d in dirs]
    if class_names is not None:
        unknown = [n for n in names if n not in class_names]
        if unknown:
            raise DataError(
                f"{purpose} data folder {root} has class folder(s) {', '.join(unknown[:5])} "
                "that are not in the labels file",
                "name each subfolder after a line of --labels (the label is the line's index)",
            )
        index = {n: class_names.index(n) for n in names}
        classes = tuple(class_names)
    else:
        index = {n: i for i, n in enumerate(names)}
        classes = tuple(names)
    rel: list[Path] = []
    labels: list[int] = []
    for d in dirs:
        inside = sorted(f for f in d.rglob("*") if f.is_file() and _visible(f))
        bad = [f for f in inside if not _is_image(f)]
        if bad:
            raise DataError(
                f"{purpose} data folder {root}: class folder '{d.name}' holds files that are "
                f"not images: {', '.join(str(f.relative_to(root)) for f in bad[:3])}"
                + (f" (and {len(bad) - 3} more)" if len(bad) > 3 else ""),
                hint,
            )
        if not inside:
            raise DataError(f"{purpose} data folder {root}: class folder '{d.name}' is empty", hint)
        rel += [f.relative_to(root) for f in inside]
        labels += [index[d.name]] * len(inside)
    return ImageFolder(root, tuple(rel), np.asarray(labels, dtype=np.int64), classes)


def decode(data: bytes, path: Path, spec: dict[str, Any], purpose: str) -> np.ndarray:
    """One image file's bytes -> the model's input sample (float32, spec's layout)."""
    from PIL import Image, UnidentifiedImageError

    resample = {
        "bilinear": Image.Resampling.BILINEAR,
        "bicubic": Image.Resampling.BICUBIC,
        "nearest": Image.Resampling.NEAREST,
    }[spec["interpolation"]]
    try:
        with Image.open(io.BytesIO(data)) as opened:
            img = opened.convert("RGB" if spec["channels"] == 3 else "L")
    except (
        UnidentifiedImageError,
        Image.DecompressionBombError,
        OSError,
        SyntaxError,
        ValueError,
    ) as exc:
        raise DataError(
            f"{purpose} image {path} cannot be decoded: {str(exc).splitlines()[0]}",
            "replace or remove the file (PNG, JPEG, BMP and WebP are read with Pillow)",
        ) from None
    if spec["resize"] is not None:
        w, h = img.size
        size = spec["resize"]
        nw, nh = (size, int(size * h / w)) if w <= h else (int(size * w / h), size)
        img = img.resize((nw, nh), resample)
    ch, cw = spec["crop"]
    w, h = img.size
    if h < ch or w < cw:
        raise DataError(
            f"{purpose} image {path} is {w}x{h} after resizing, smaller than the {cw}x{ch} crop",
            f"set resize={max(ch, cw)} in --preprocess (the shorter side is resized first)",
        )
    top, left = round((h - ch) / 2.0), round((w - cw) / 2.0)
    img = img.crop((left, top, left + cw, top + ch))
    x = np.asarray(img, dtype=np.float32)
    if x.ndim == 2:
        x = x[:, :, None]
    if spec["channel_order"] == "BGR":
        x = x[:, :, ::-1]
    lo, hi = spec["value_range"]
    scale = np.float32((hi - lo) / 255.0)
    mean = np.asarray(spec["mean"], np.float32) - np.float32(lo)
    x = np.subtract(x * scale, mean, dtype=np.float32) / np.asarray(spec["std"], np.float32)
    if spec["layout"] == "NCHW":
        x = x.transpose(2, 0, 1)
    return np.ascontiguousarray(x, dtype=np.float32)


def read_files(folder: ImageFolder, idx: np.ndarray) -> Iterator[tuple[str, bytes, str]]:
    """(relative path, bytes, sha256) of the selected files, one at a time."""
    for i in idx:
        rel = folder.files[int(i)]
        try:
            data = (folder.root / rel).read_bytes()
        except OSError as exc:
            raise DataError(
                f"image {folder.root / rel} cannot be read: {exc.strerror}",
                "check the file's permissions",
            ) from None
        yield rel.as_posix(), data, hashlib.sha256(data).hexdigest()


def files_sha256(entries: Sequence[tuple[str, str]]) -> str:
    """sha256 over (relative path, sha256) pairs sorted by path: the identity of the files a
    build used."""
    h = hashlib.sha256()
    for rel, digest in sorted(entries):
        h.update(f"{rel}|{digest}\n".encode())
    return h.hexdigest()


def read_labels(path: Path) -> tuple[str, ...]:
    """A labels file: one class name per line (blank lines at the end ignored)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"--labels file not found: {path}", "one class name per line") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(
            f"--labels file {path} cannot be read: {exc}", "a UTF-8 text file"
        ) from None
    names = text.rstrip("\n").split("\n") if text.strip() else []
    names = [n.rstrip("\r") for n in names]
    problems = []
    if not names:
        problems.append("it is empty")
    blank = [i + 1 for i, n in enumerate(names) if not n.strip()]
    if blank:
        problems.append(f"line(s) {', '.join(map(str, blank[:5]))} are blank")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        problems.append(f"duplicate name(s) {', '.join(dup[:5])}")
    if problems:
        raise UsageError(
            f"--labels file {path}: " + "; ".join(problems),
            "one class name per line, in the order of the model's outputs",
        )
    return tuple(names)
