"""Models by name: ``torchvision:NAME``, ``timm:NAME``, ``hf:ORG/MODEL`` or ``hf:/local/folder``.

The libraries are optional extras (``pip install 'edgepack[torchvision]'``, ``[timm]``,
``[hf]``), imported only when a source names them. Random init by default (seeded by the
build's seed, so it is reproducible); ``--pretrained`` takes weights from the library's own
cache (torch.hub's folder for torchvision, the Hugging Face hub cache for timm and hf) and
never downloads when offline (``EDGEPACK_OFFLINE``, ``HF_HUB_OFFLINE`` or
``TRANSFORMERS_OFFLINE`` set): a missing file is one error naming the cache path.

What the library knows about feeding the model comes along: the input name and shape
(``image`` 1x3xHxW from the weights' transforms / timm's data config; ``input_ids`` and
``attention_mask`` int64 for HF text models), the preprocessing (:attr:`TorchModel.preprocess`)
and the tokenizer's folder. Hugging Face models are wrapped so forward takes plain tensors and
returns the task's tensor (``logits``, ``last_hidden_state``).
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgepack.errors import ModelLoadError, UsageError, exception_line
from edgepack.stages.base import InputSpec, TorchModel

LIBRARIES = {"torchvision": "torchvision", "timm": "timm", "hf": "transformers"}
DEFAULT_IMAGE_SIZE = 224
DEFAULT_SEQUENCE_LENGTH = 128
DEFAULT_WEIGHTS = "DEFAULT"
_OFFLINE_ENV = ("EDGEPACK_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def _call(builder: str, kwargs: dict[str, Any]) -> str:
    """``builder(k=v, ...)`` as the user's --factory-arg values made it be called."""
    return f"{builder}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())})"


@dataclass(frozen=True)
class Task:
    auto_class: str  # transformers Auto* class
    modality: str  # "text" | "image"
    outputs: tuple[str, ...]  # the model output's fields, in order


TASKS: dict[str, Task] = {
    "sequence-classification": Task("AutoModelForSequenceClassification", "text", ("logits",)),
    "token-classification": Task("AutoModelForTokenClassification", "text", ("logits",)),
    "feature-extraction": Task("AutoModel", "text", ("last_hidden_state",)),
    "masked-lm": Task("AutoModelForMaskedLM", "text", ("logits",)),
    "causal-lm": Task("AutoModelForCausalLM", "text", ("logits",)),
    "question-answering": Task(
        "AutoModelForQuestionAnswering", "text", ("start_logits", "end_logits")
    ),
    "image-classification": Task("AutoModelForImageClassification", "image", ("logits",)),
    "image-feature-extraction": Task("AutoModel", "image", ("last_hidden_state",)),
}
ALIASES = {
    "text-classification": "sequence-classification",
    "embedding": "feature-extraction",
    "fill-mask": "masked-lm",
    "text-generation": "causal-lm",
}
# config.architectures suffix -> task, when --task is not given
_ARCH_TASKS = (
    ("ForSequenceClassification", "sequence-classification"),
    ("ForTokenClassification", "token-classification"),
    ("ForMaskedLM", "masked-lm"),
    ("ForCausalLM", "causal-lm"),
    ("ForQuestionAnswering", "question-answering"),
    ("ForImageClassification", "image-classification"),
)


def split(spec: str) -> tuple[str, str] | None:
    """``torchvision:resnet18`` -> ("torchvision", "resnet18"); None for other sources."""
    lib, sep, rest = spec.partition(":")
    if sep and lib in LIBRARIES:
        return lib, rest
    return None


def prefix_hint(target: str) -> str | None:
    """For a module that failed to import: 'did you mean torchvision:...?' when its name is
    close to a library prefix."""
    close = difflib.get_close_matches(target.lower(), [*LIBRARIES, "transformers"], n=1)
    if not close:
        return None
    prefix = "hf" if close[0] == "transformers" else close[0]
    return f"did you mean the named source '{prefix}:NAME'? named sources: " + ", ".join(
        f"{p}:" for p in LIBRARIES
    )


def offline() -> bool:
    return any(
        os.environ.get(v, "").strip().lower() not in ("", "0", "false", "no", "off")
        for v in _OFFLINE_ENV
    )


def _import(lib: str) -> Any:
    """The library of a named source; missing: one error with the extra to install."""
    from edgepack._torchvision import import_torchvision

    package = LIBRARIES[lib]
    try:
        if lib == "torchvision":
            return import_torchvision()
        # timm and transformers import torchvision themselves when it is installed: import it
        # first the way that also works where its C++ extension cannot load.
        with contextlib.suppress(ImportError):  # not installed: they do without it
            import_torchvision()
        return importlib.import_module(package)
    except ImportError as exc:
        raise ModelLoadError(
            f"{lib}: sources need the {package} package, which cannot be imported "
            f"({exception_line(exc)})",
            f"pip install 'edgepack[{lib}]'",
        ) from exc


def _unknown(lib: str, name: str, known: Sequence[str], what: str = "model") -> ModelLoadError:
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.6)
    listing = {
        "torchvision": "torchvision.models.list_models()",
        "timm": "timm.list_models()",
    }.get(lib, "")
    return ModelLoadError(
        f"unknown {lib} {what} '{name}'",
        (f"did you mean {' or '.join(repr(c) for c in close)}? " if close else "")
        + (f"the names are in {listing}" if listing else ""),
    )


# ------------------------------------------------------------------------------ checks


def check(spec: str, options: Any) -> None:
    """``--dry-run``: the library imports and knows the name (and the weights / task); no
    model is built and nothing is downloaded."""
    lib, name = _parts(spec)
    if lib == "torchvision":
        _tv_resolve(name, options.pretrained)
    elif lib == "timm":
        _timm_resolve(name, options.pretrained)
    else:
        _hf_check(name, options)
    _check_options(lib, options)


def _parts(spec: str) -> tuple[str, str]:
    parts = split(spec)
    assert parts is not None  # callers dispatch on split()
    lib, name = parts
    if not name.strip():
        raise ModelLoadError(
            f"invalid model source '{spec}': no model name after '{lib}:'",
            f"e.g. {lib}:{'mobilenet_v3_small' if lib != 'hf' else 'ORG/MODEL or hf:path/to/folder'}",
        )
    return lib, name


def _check_options(lib: str, options: Any) -> None:
    problems = []
    if lib != "hf" and options.task is not None:
        problems.append(f"--task applies to Hugging Face sources, not {lib}:")
    if lib != "hf" and options.sequence_length is not None:
        problems.append(f"--sequence-length applies to Hugging Face text sources, not {lib}:")
    if lib == "hf" and options.pretrained is not None:
        problems.append("--pretrained does not apply to hf: sources (they load their weights)")
    if options.sequence_length is not None and options.sequence_length < 1:
        problems.append("--sequence-length must be >= 1")
    if problems:
        raise UsageError("; ".join(problems), "drop the option")


# ------------------------------------------------------------------------------ loading


def load(
    spec: str, weights: Path | None, input_shapes: Sequence[str], options: Any, seed: int
) -> TorchModel:
    import torch

    from edgepack.manifest import sha256_file
    from edgepack.source import _check_runs, _load_weights, state_sha256

    lib, name = _parts(spec)
    _check_options(lib, options)
    kwargs = dict(options.factory_args)
    torch.manual_seed(seed)
    loaders = {"torchvision": _torchvision, "timm": _timm, "hf": _hf}
    built = loaders[lib](name, options, kwargs)
    module = built.module
    weights_file = built.weights_file
    if weights is not None:
        if weights_file is not None:
            raise UsageError(
                f"--weights and --pretrained both give {spec} its weights", "pass one of them"
            )
        weights_file = Path(weights)
        _load_weights(module, weights_file)
    module.eval()
    specs = _given_specs(input_shapes, built.specs) if input_shapes else built.specs
    example = _example(specs)
    _check_runs(module, example, specs)
    preprocess = _fit_preprocess(built.preprocess, specs)
    source: dict[str, Any] = {
        "kind": "named",
        "spec": spec,
        "library": lib,
        "library_version": _version(LIBRARIES[lib]),
        "model": name,
        "weights": None if weights_file is None else weights_file.name,
        # the state's sha256 (random init included): it keys the cache like a weights file
        "weights_sha256": state_sha256(module),
        "weights_file_sha256": None if weights_file is None else sha256_file(weights_file),
        "inputs": [s.to_dict() for s in specs],
        "outputs": list(built.outputs),
        **options.record(),
    }
    if built.pretrained_name is not None:
        source["pretrained"] = built.pretrained_name
    if preprocess is not None:
        source["preprocess"] = preprocess
    from edgepack.source import default_name

    return TorchModel(
        module,
        example,
        specs,
        source,
        name=default_name(spec),
        factory=built.factory,
        preprocess=preprocess,
        tokenizer=built.tokenizer,
        output_names=tuple(built.outputs),
        class_names=built.class_names,
    )


def _given_specs(shapes: Sequence[str], defaults: Sequence[InputSpec]) -> tuple[InputSpec, ...]:
    """--input-shape for a named source: an unnamed shape keeps the source's input name and,
    without a dtype, its dtype (``--input-shape 1x3x96x96`` -> image)."""
    from edgepack.source import parse_input_shape

    out = []
    for i, text in enumerate(shapes):
        name, dims, dtype = parse_input_shape(text)
        default = defaults[i] if i < len(defaults) else None
        if ":" not in text and default is not None:
            dtype = default.dtype
        out.append(InputSpec(name or (default.name if default else f"input_{i}"), dims, dtype))
    return tuple(out)


def _version(package: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "?"


def _example(specs: Sequence[InputSpec]) -> tuple[Any, ...]:
    """Example inputs: zeros, and an all-ones attention mask (a real sentence's)."""
    import torch

    from edgepack.source import _example_tensors

    tensors = list(_example_tensors(specs))
    for i, s in enumerate(specs):
        if s.name == "attention_mask":
            tensors[i] = torch.ones_like(tensors[i])
    return tuple(tensors)


@dataclass
class _Built:
    module: Any
    specs: tuple[InputSpec, ...]
    outputs: tuple[str, ...]
    factory: Any
    preprocess: dict[str, Any] | None = None
    tokenizer: str | None = None
    weights_file: Path | None = None
    pretrained_name: str | None = None
    # The classes of the output, in order, when the source names them (pretrained
    # torchvision weights' categories, a Hugging Face config's id2label): the package's labels.
    class_names: tuple[str, ...] | None = None


def _image_spec(size: tuple[int, int]) -> tuple[InputSpec, ...]:
    return (InputSpec("image", (1, 3, int(size[0]), int(size[1])), "float32"),)


def _preprocess(
    resize: int,
    crop: int | tuple[int, int],
    mean: Sequence[float],
    std: Sequence[float],
    interp: str,
) -> dict[str, Any]:
    return {
        "resize": int(resize),
        "crop": int(crop) if isinstance(crop, int) else [int(crop[0]), int(crop[1])],
        "mean": [float(m) for m in mean],
        "std": [float(s) for s in std],
        "interpolation": interp if interp in ("bilinear", "bicubic", "nearest") else "bilinear",
        "channel_order": "RGB",
        "layout": "NCHW",
        "value_range": [0, 1],
    }


def _fit_preprocess(
    pre: dict[str, Any] | None, specs: Sequence[InputSpec]
) -> dict[str, Any] | None:
    """The crop is the model's input size: with --input-shape, crop and resize scale to it."""
    if pre is None or len(specs) != 1 or len(specs[0].shape) != 4:
        return pre
    h, w = specs[0].shape[2], specs[0].shape[3]
    crop = pre["crop"]
    ch, cw = (crop, crop) if isinstance(crop, int) else (crop[0], crop[1])
    if (ch, cw) == (h, w):
        return pre
    out = dict(pre)
    out["crop"] = h if h == w else [h, w]
    out["resize"] = max(1, round(pre["resize"] * min(h, w) / min(ch, cw)))
    return out


# ------------------------------------------------------------------------------ torchvision


def _tv_resolve(name: str, pretrained: str | None) -> tuple[Any, Any, Any]:
    """(torchvision.models, the weights enum or None, the chosen weights or None)."""
    _import("torchvision")
    from torchvision import models

    known = models.list_models()
    if name not in known:
        raise _unknown("torchvision", name, known)
    try:
        enum = models.get_model_weights(name)
    except (ValueError, KeyError):
        enum = None
    chosen = None
    if pretrained is not None:
        names = [] if enum is None else [w.name for w in enum]
        if enum is None or not names:
            raise ModelLoadError(
                f"torchvision model '{name}' has no pretrained weights", "drop --pretrained"
            )
        if pretrained == DEFAULT_WEIGHTS:
            chosen = enum.DEFAULT
        elif pretrained in names:
            chosen = enum[pretrained]
        else:
            raise ModelLoadError(
                f"unknown weights '{pretrained}' for torchvision:{name}",
                f"use --pretrained (DEFAULT = {enum.DEFAULT.name}) or one of: {', '.join(names)}",
            )
    return models, enum, chosen


def tv_cache_file(weights: Any) -> Path:
    """Where torch.hub keeps ``weights``' file: <torch.hub dir>/checkpoints/<file name>."""
    from urllib.parse import urlparse

    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(weights.url).path).name


def _tv_fetch(weights: Any, label: str) -> Path:
    path = tv_cache_file(weights)
    if path.is_file():
        return path
    hint = (
        f'fill the cache on a machine with network (python -c "import torchvision; '
        f"torchvision.models.get_model_weights('{label.split(':')[1]}').{weights.name}"
        f'.get_state_dict()") and copy {path.name} there, or download {weights.url} to {path}'
    )
    if offline():
        raise ModelLoadError(
            f"weights {label} {weights.name} are not in torch.hub's cache ({path}) and "
            "edgepack is offline",
            hint,
        )
    import torch

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(weights.url, str(path), progress=False)
    except Exception as exc:
        raise ModelLoadError(
            f"weights {label} {weights.name} are not in torch.hub's cache ({path}) and the "
            f"download failed ({type(exc).__name__})",
            hint,
        ) from exc
    return path


def _tv_preprocess(weights: Any) -> dict[str, Any] | None:
    if weights is None:
        return None
    try:
        t = weights.transforms()
        crop = list(t.crop_size)
        resize = list(t.resize_size)
        return _preprocess(
            resize[0],
            crop[0] if len(crop) == 1 or crop[0] == crop[1] else (crop[0], crop[1]),
            t.mean,
            t.std,
            str(getattr(t.interpolation, "value", t.interpolation)),
        )
    except (AttributeError, TypeError, IndexError):  # not an image classification transform
        return None


def _torchvision(name: str, options: Any, kwargs: dict[str, Any]) -> _Built:
    models, enum, chosen = _tv_resolve(name, options.pretrained)
    meta = chosen if chosen is not None else (enum.DEFAULT if enum is not None else None)
    if chosen is not None and "num_classes" not in kwargs:
        categories = chosen.meta.get("categories")
        if categories:
            kwargs["num_classes"] = len(categories)
    try:
        module = models.get_model(name, weights=None, **kwargs)
    except Exception as exc:
        raise ModelLoadError(
            f"{_call(f'torchvision:{name}', kwargs)} raised {exception_line(exc)}",
            "check the --factory-arg names and values against the torchvision builder",
        ) from exc
    weights_file = None
    if chosen is not None:
        from edgepack.source import _load_weights

        weights_file = _tv_fetch(chosen, f"torchvision:{name}")
        _load_weights(module, weights_file)
    pre = _tv_preprocess(meta)
    crop = DEFAULT_IMAGE_SIZE if pre is None else pre["crop"]
    size = (crop, crop) if isinstance(crop, int) else (crop[0], crop[1])
    return _Built(
        module,
        _image_spec(size),
        ("logits",) if pre is not None else ("output_0",),
        models.get_model_builder(name),
        preprocess=pre,
        weights_file=weights_file,
        pretrained_name=None if chosen is None else chosen.name,
        class_names=_tv_categories(chosen, kwargs),
    )


def _tv_categories(chosen: Any, kwargs: dict[str, Any]) -> tuple[str, ...] | None:
    """The loaded weights' class names; none for a random init (its classes mean nothing)."""
    categories = None if chosen is None else chosen.meta.get("categories")
    if not categories or kwargs.get("num_classes", len(categories)) != len(categories):
        return None
    return tuple(str(c) for c in categories)


# ------------------------------------------------------------------------------ timm


def _timm_resolve(name: str, pretrained: str | None) -> tuple[Any, str]:
    """(timm, the model name to create: 'arch' or 'arch.tag')."""
    timm = _import("timm")
    arch, _, tag = name.partition(".")
    if not timm.is_model(arch):
        raise _unknown("timm", arch, timm.list_models())
    full = name
    if pretrained is not None and pretrained != DEFAULT_WEIGHTS:
        if tag and tag != pretrained:
            raise UsageError(
                f"timm:{name} names the weights '{tag}' and --pretrained names '{pretrained}'",
                "name them once",
            )
        full = f"{arch}.{pretrained}"
    if pretrained is not None or tag:
        tags = timm.list_pretrained(f"{arch}.*")
        if not tags and timm.list_pretrained(arch):
            tags = timm.list_pretrained(arch)
        wanted = full if "." in full else None
        if wanted is not None and wanted not in tags:
            raise ModelLoadError(
                f"unknown timm weights '{full}'",
                f"pretrained weights of {arch}: "
                + (", ".join(t.partition(".")[2] for t in tags) or "none"),
            )
        if pretrained is not None and not tags:
            raise ModelLoadError(
                f"timm model '{arch}' has no pretrained weights", "drop --pretrained"
            )
    return timm, full


def hf_cache_folder(repo_id: str) -> Path:
    """The Hugging Face hub cache folder of a model repository."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}"


def _timm_fetch(timm: Any, full: str) -> tuple[Path, Any]:
    cfg = timm.models.get_pretrained_cfg(full)
    repo = getattr(cfg, "hf_hub_id", None)
    if not repo:
        raise ModelLoadError(
            f"timm weights {full} are not on the Hugging Face hub (only a URL)",
            "save them with torch.save(model.state_dict(), 'weights.pt') and pass --weights",
        )
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    for filename in ("model.safetensors", "pytorch_model.bin"):
        hit = try_to_load_from_cache(repo, filename)
        if isinstance(hit, str):
            return Path(hit), cfg
    folder = hf_cache_folder(repo)
    hint = (
        f"fill the cache on a machine with network (hf download {repo} model.safetensors) "
        f"and copy {folder.name} into {folder.parent}, or set HF_HOME to a cache that has it"
    )
    if offline():
        raise ModelLoadError(
            f"weights timm:{full} are not in the Hugging Face cache ({folder}) and edgepack "
            "is offline",
            hint,
        )
    try:
        return Path(hf_hub_download(repo, "model.safetensors")), cfg
    except Exception as exc:
        raise ModelLoadError(
            f"weights timm:{full} are not in the Hugging Face cache ({folder}) and the "
            f"download failed ({type(exc).__name__})",
            hint,
        ) from exc


def _timm(name: str, options: Any, kwargs: dict[str, Any]) -> _Built:
    timm, full = _timm_resolve(name, options.pretrained)
    weights_file = None
    pretrained_name = None
    if options.pretrained is not None:
        weights_file, cfg = _timm_fetch(timm, full)
        tag = getattr(cfg, "tag", None)
        pretrained_name = f"{full.partition('.')[0]}.{tag}" if tag else full
    try:
        module = timm.create_model(full, pretrained=False, **kwargs)
    except Exception as exc:
        raise ModelLoadError(
            f"{_call(f'timm:{full}', kwargs)} raised {exception_line(exc)}",
            "check the --factory-arg names and values against timm.create_model",
        ) from exc
    if weights_file is not None:
        from edgepack.source import _load_weights

        _load_weights(module, weights_file)
    cfg = timm.data.resolve_data_config({}, model=module)
    _, h, w = cfg.get("input_size", (3, DEFAULT_IMAGE_SIZE, DEFAULT_IMAGE_SIZE))
    crop_pct = float(cfg.get("crop_pct") or 0.875)
    pre = _preprocess(
        int(min(h, w) / crop_pct),
        h if h == w else (h, w),
        cfg.get("mean", (0.485, 0.456, 0.406)),
        cfg.get("std", (0.229, 0.224, 0.225)),
        str(cfg.get("interpolation", "bilinear")),
    )
    return _Built(
        module,
        _image_spec((h, w)),
        ("logits",) if getattr(module, "num_classes", 0) else ("output_0",),
        timm.create_model,
        preprocess=pre,
        weights_file=weights_file,
        pretrained_name=pretrained_name,
    )


# ------------------------------------------------------------------------------ Hugging Face


def _task(name: str | None, arch: Sequence[str] = ()) -> str:
    """The task of --task (aliases accepted), else from config.architectures."""
    listing = ", ".join([*TASKS, *(f"{a} (= {t})" for a, t in ALIASES.items())])
    if name is None:
        for a in arch:
            for suffix, task in _ARCH_TASKS:
                if a.endswith(suffix):
                    return task
        raise UsageError(
            "hf: sources need --task (the model's config names no task head)",
            f"tasks: {listing}",
        )
    key = ALIASES.get(name, name)
    if key not in TASKS:
        close = difflib.get_close_matches(name, [*TASKS, *ALIASES], n=1)
        raise UsageError(
            f"unknown --task '{name}'",
            (f"did you mean '{close[0]}'? " if close else "") + f"tasks: {listing}",
        )
    return key


def _is_folder(ref: str) -> bool:
    return ref.startswith(("/", ".", "~")) or Path(ref).expanduser().is_dir()


def _hf_folder(ref: str) -> tuple[Path, bool]:
    """(the model's local folder, whether it came from the hub cache)."""
    if _is_folder(ref):
        folder = Path(ref).expanduser()
        if not (folder / "config.json").is_file():
            raise ModelLoadError(
                f"hf:{ref}: {'no config.json in ' if folder.is_dir() else 'no folder '}{folder}",
                "pass a folder written by save_pretrained (config.json and the weights)",
            )
        return folder, False
    if (
        ref.count("/") > 1
        or not ref.replace("/", "").replace("-", "").replace("_", "").replace(".", "").isalnum()
    ):
        raise ModelLoadError(
            f"invalid Hugging Face model id '{ref}'",
            "use hf:ORG/MODEL (a hub id) or hf:./folder (a save_pretrained folder)",
        )
    from huggingface_hub import snapshot_download

    folder = hf_cache_folder(ref)
    hint = (
        f"fill the cache on a machine with network (hf download {ref}) and copy "
        f"{folder.name} into {folder.parent}, or pass hf:path/to/folder"
    )
    try:
        return Path(snapshot_download(ref, local_files_only=True)), True
    except Exception as exc:  # LocalEntryNotFoundError and friends
        if offline():
            raise ModelLoadError(
                f"hf:{ref} is not in the Hugging Face cache ({folder}) and edgepack is offline",
                hint,
            ) from exc
    try:  # the model's files, not every format the repository holds
        return Path(snapshot_download(ref, allow_patterns=_HF_FILES)), True
    except Exception as exc:
        raise ModelLoadError(
            f"hf:{ref} is not in the Hugging Face cache ({folder}) and the download failed "
            f"({type(exc).__name__})",
            hint,
        ) from exc


_HF_FILES = ["*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken"]


def _hf_config(folder: Path, ref: str) -> Any:
    transformers = _import("hf")
    try:
        return transformers.AutoConfig.from_pretrained(str(folder), local_files_only=True)
    except Exception as exc:
        raise ModelLoadError(
            f"hf:{ref}: cannot read its config.json: {exception_line(exc)}",
            "pass a folder written by save_pretrained",
        ) from exc


def _hf_check(ref: str, options: Any) -> None:
    _import("hf")
    if not _is_folder(ref):
        # dry run: only what is in the cache (nothing is downloaded)
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(ref, "config.json")
        if not isinstance(hit, str):
            raise ModelLoadError(
                f"hf:{ref} is not in the Hugging Face cache ({hf_cache_folder(ref)})",
                f"fill it (hf download {ref}) or pass hf:path/to/folder",
            )
        folder = Path(hit).parent
    else:
        folder, _ = _hf_folder(ref)
    cfg = _hf_config(folder, ref)
    _task(options.task, getattr(cfg, "architectures", None) or ())


def _hf_wrapper_class() -> Any:
    import torch

    class HFModel(torch.nn.Module):
        """A transformers model taking plain tensors (in ``names`` order) and returning the
        task's output tensor, or a tuple of them."""

        def __init__(self, model: Any, names: tuple[str, ...], outputs: tuple[str, ...]):
            super().__init__()
            self.model = model
            self.names = names
            self.outputs = outputs

        def forward(self, *args: Any) -> Any:
            kwargs = dict(zip(self.names, args, strict=True))
            out = self.model(**kwargs, return_dict=True)
            values = tuple(out[k] for k in self.outputs)
            return values[0] if len(values) == 1 else values

    return HFModel


def _hf_labels(config: Any, outputs: tuple[str, ...]) -> tuple[str, ...] | None:
    """A classifier's id2label, unless it is transformers' placeholder (LABEL_0, ...)."""
    id2label = getattr(config, "id2label", None) or {}
    if outputs != ("logits",) or not id2label:
        return None
    names = tuple(str(id2label[i]) for i in sorted(id2label, key=int))
    if all(n == f"LABEL_{i}" for i, n in enumerate(names)):
        return None
    return names


def _hf(ref: str, options: Any, kwargs: dict[str, Any]) -> _Built:
    transformers = _import("hf")
    folder, _ = _hf_folder(ref)
    cfg = _hf_config(folder, ref)
    task_name = _task(options.task, getattr(cfg, "architectures", None) or ())
    task = TASKS[task_name]
    auto = getattr(transformers, task.auto_class)
    bars = transformers.utils.logging
    shown = bars.is_progress_bar_enabled()
    bars.disable_progress_bar()  # the library never prints (its "Loading weights" bar)
    try:
        model = auto.from_pretrained(
            str(folder), local_files_only=True, attn_implementation="eager", **kwargs
        )
    except Exception as exc:
        raise ModelLoadError(
            f"hf:{ref} cannot be loaded as {task.auto_class} (--task {task_name}): "
            f"{exception_line(exc)}",
            f"check --task (tasks: {', '.join(TASKS)}) and that the folder holds the weights",
        ) from exc
    finally:
        if shown:
            bars.enable_progress_bar()
    if hasattr(model.config, "use_cache"):
        model.config.use_cache = False  # no past key values: one tensor out
    tokenizer_dir = None
    pre = None
    if task.modality == "text":
        specs, tokenizer_dir = _hf_text_inputs(transformers, folder, cfg, options.sequence_length)
    else:
        specs, pre = _hf_image_inputs(transformers, folder, cfg)
    names = tuple("pixel_values" if s.name == "image" else s.name for s in specs)
    module = _hf_wrapper_class()(model, names, task.outputs)
    return _Built(
        module,
        specs,
        task.outputs,
        auto.from_pretrained,
        preprocess=pre,
        tokenizer=tokenizer_dir,
        class_names=_hf_labels(model.config, task.outputs),
        weights_file=None,
    )


def _hf_text_inputs(
    transformers: Any, folder: Path, cfg: Any, length: int | None
) -> tuple[tuple[InputSpec, ...], str | None]:
    tokenizer_dir: str | None = None
    limit = None
    try:
        tok = transformers.AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        tokenizer_dir = str(folder.resolve())
        limit = int(tok.model_max_length) if tok.model_max_length < 1_000_000 else None
    except Exception:  # no tokenizer files: text data cannot be tokenized (said there)
        tok = None
    positions = getattr(cfg, "max_position_embeddings", None)
    if length is None:
        length = min(x for x in (DEFAULT_SEQUENCE_LENGTH, limit, positions) if x)
    elif positions and length > positions:
        raise UsageError(
            f"--sequence-length {length} is longer than the model's {positions} positions",
            f"pass --sequence-length {positions} or less",
        )
    specs = (
        InputSpec("input_ids", (1, length), "int64"),
        InputSpec("attention_mask", (1, length), "int64"),
    )
    return specs, tokenizer_dir


_PIL_RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic"}


def _hf_image_inputs(
    transformers: Any, folder: Path, cfg: Any
) -> tuple[tuple[InputSpec, ...], dict[str, Any] | None]:
    size = getattr(cfg, "image_size", None) or DEFAULT_IMAGE_SIZE
    if isinstance(size, (list, tuple)):
        h, w = int(size[0]), int(size[1])
    else:
        h = w = int(size)
    pre = None
    try:
        proc = transformers.AutoImageProcessor.from_pretrained(str(folder), local_files_only=True)
    except Exception:
        proc = None
    if proc is not None:
        crop = getattr(proc, "crop_size", None) if getattr(proc, "do_center_crop", False) else None
        sz = getattr(proc, "size", None) or {}
        target = crop or sz
        if isinstance(target, dict) and "height" in target:
            h, w = int(target["height"]), int(target["width"])
        elif isinstance(target, dict) and "shortest_edge" in target:
            h = w = int(target["shortest_edge"])
        resize = sz.get("shortest_edge", max(h, w)) if isinstance(sz, dict) else max(h, w)
        resample = getattr(proc, "resample", 2)
        pre = _preprocess(
            int(resize),
            h if h == w else (h, w),
            getattr(proc, "image_mean", None) or (0.5, 0.5, 0.5),
            getattr(proc, "image_std", None) or (0.5, 0.5, 0.5),
            _PIL_RESAMPLE.get(int(getattr(resample, "value", resample) or 2), "bilinear"),
        )
    channels = int(getattr(cfg, "num_channels", 3) or 3)
    return (InputSpec("image", (1, channels, h, w), "float32"),), pre
