"""Model sources: ``module.path:factory``, ``path/to/file.py:factory``, a ``.pt2`` file, or a
model by name (``torchvision:NAME``, ``timm:NAME``, ``hf:ORG/MODEL``: :mod:`edgepack.named`).

Loading is safe by default: weights go through ``torch.load(weights_only=True)`` and a
pickled whole model is refused (unpickling runs arbitrary code), with the way out.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import json
import math
import re
import sys
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgepack.errors import ModelLoadError, UsageError, exception_line
from edgepack.manifest import sha256_file
from edgepack.pt2 import check_program, load_program
from edgepack.stages.base import InputSpec, TorchModel

_SHAPE_RE = re.compile(
    r"^(?:(?P<name>[A-Za-z_][A-Za-z0-9_]*)=)?(?P<dims>\d+(?:x\d+)*)(?::(?P<dtype>[a-z0-9]+))?$"
)
_MAX_RANK = 8  # TFLite kernels take at most 6 (most 4-5); 8 leaves room, rejects garbage
_MAX_ELEMENTS = 2**31 - 1
_DTYPES = ("float32", "float16", "int32", "int64", "int8", "uint8", "bool")
_PICKLE_HINT = (
    "save the weights with torch.save(model.state_dict(), 'weights.pt') and pass the code "
    "that builds the model: edgepack build model.py:build_model --weights weights.pt"
)


@dataclass(frozen=True)
class SourceOptions:
    """How a source is built beyond its string: factory keyword arguments (``--factory-arg``),
    pretrained weights of a named source (``--pretrained``: "DEFAULT" or a weights name),
    the task head of a Hugging Face source (``--task``) and a text model's sequence length."""

    factory_args: tuple[tuple[str, Any], ...] = ()
    pretrained: str | None = None
    task: str | None = None
    sequence_length: int | None = None

    def record(self) -> dict[str, Any]:
        """What the manifest's source record says about these options (set ones only)."""
        out: dict[str, Any] = {}
        if self.factory_args:
            out["factory_args"] = dict(self.factory_args)
        for key in ("pretrained", "task", "sequence_length"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out


_ARG_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_FACTORY_ARG_HINT = (
    "write --factory-arg key=value (repeatable): ints, floats, true/false, none, JSON lists "
    "or objects, else a string; e.g. --factory-arg num_classes=10 --factory-arg widths=[16,32]"
)


def parse_factory_value(text: str) -> Any:
    """``10`` -> 10, ``0.5`` -> 0.5, ``true``/``false`` -> bool, ``none``/``null`` -> None,
    ``[1, 2]`` / ``{"a": 1}`` -> JSON, anything else the string itself."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            value = cast(text)
        except ValueError:
            continue
        if cast is float and not math.isfinite(value):
            break
        return value
    if text.strip()[:1] in "[{":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageError(
                f"invalid --factory-arg value {text!r}: not valid JSON ({exc.msg})",
                _FACTORY_ARG_HINT,
            ) from exc
    return text


def parse_factory_args(items: Sequence[str] | dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    """``["k=v", ...]`` (typed by :func:`parse_factory_value`) or a dict (values kept) ->
    sorted (key, value) pairs. Malformed items are reported all at once."""
    if isinstance(items, dict):
        bad = [k for k in items if not isinstance(k, str) or not _ARG_KEY.match(k)]
        if bad:
            raise UsageError(
                f"invalid factory_args key(s) {', '.join(map(repr, bad))}",
                "keys are the factory's keyword argument names",
            )
        pairs = dict(items)
    else:
        pairs = {}
        problems = []
        for item in items:
            key, sep, value = item.partition("=")
            key = key.strip()
            if not sep or not _ARG_KEY.match(key):
                problems.append(f"{item!r} is not key=value")
            elif key in pairs:
                problems.append(f"{key!r} given twice")
            else:
                pairs[key] = parse_factory_value(value)
        if problems:
            raise UsageError("invalid --factory-arg: " + "; ".join(problems), _FACTORY_ARG_HINT)
    try:
        json.dumps(pairs, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise UsageError(
            f"factory_args must be JSON-like values (numbers, strings, bools, None, lists, "
            f"dicts): {exc}",
            "they are recorded in the manifest and key the cache",
        ) from exc
    return tuple(sorted(pairs.items()))


def parse_input_shape(text: str) -> tuple[str | None, tuple[int, ...], str]:
    """``1x3x224x224``, ``image=1x3x224x224`` or ``ids=1x128:int64``."""
    m = _SHAPE_RE.match(text.strip())
    if not m:
        raise UsageError(
            f"invalid --input-shape '{text}'",
            "write dimensions separated by 'x', e.g. --input-shape 1x3x224x224 "
            "(optionally name=1x3x224x224 or ids=1x128:int64)",
        )
    dims = tuple(int(d) for d in m.group("dims").split("x"))
    if any(d <= 0 for d in dims):
        raise UsageError(
            f"invalid --input-shape '{text}': dimensions must be >= 1", "e.g. 1x3x224x224"
        )
    if len(dims) > _MAX_RANK:
        raise UsageError(
            f"invalid --input-shape '{text}': {len(dims)} dimensions, at most {_MAX_RANK}",
            "e.g. 1x3x224x224",
        )
    if math.prod(dims) > _MAX_ELEMENTS:
        raise UsageError(
            f"invalid --input-shape '{text}': {math.prod(dims):,} elements per input, "
            f"at most {_MAX_ELEMENTS:,} (a TFLite tensor is indexed by int32)",
            "pass the shape the model takes for one batch, e.g. 1x3x224x224",
        )
    dtype = m.group("dtype") or "float32"
    if dtype not in _DTYPES:
        raise UsageError(
            f"invalid dtype '{dtype}' in --input-shape '{text}'", f"use one of {', '.join(_DTYPES)}"
        )
    return m.group("name"), dims, dtype


def _exit_error(exc: SystemExit | GeneratorExit, what: str, hint: str) -> ModelLoadError:
    """Model code that exits (sys.exit, a raised SystemExit or GeneratorExit) must not end
    edgepack with that status and no package: it is a load error. Ctrl-C stays an interrupt."""
    if isinstance(exc, SystemExit):
        code = "" if exc.code is None else repr(exc.code)
        return ModelLoadError(f"{what} called sys.exit({code})", hint + "; it must not exit")
    return ModelLoadError(f"{what} raised {exception_line(exc)}", hint)


def _user_frame(exc: BaseException, path: str | None) -> str:
    """'file.py:12' of the deepest frame inside the user's file, if any."""
    if path is None:
        return ""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == path]
    if not frames:
        return ""
    f = frames[-1]
    return f" at {Path(f.filename).name}:{f.lineno}"


def _import_target(target: str, spec: str) -> tuple[Any, str | None]:
    """Import a module from a dotted name or a .py file. Returns (module, file path)."""
    if target.endswith(".py") or "/" in target or "\\" in target:
        path = Path(target)
        if not path.is_file():
            raise ModelLoadError(
                f"model file not found: {path}",
                "pass path/to/model.py:factory with an existing file",
            )
        resolved = str(path.resolve())
        # The module name ends up in the converted model's tensor names: keep it the file's
        # stem (reproducible, readable) unless another module already holds that name.
        name = path.stem
        held = sys.modules.get(name)
        if held is not None and getattr(held, "__file__", None) != resolved:
            name = f"{path.stem}_{hashlib.sha256(resolved.encode()).hexdigest()[:8]}"
        mod_spec = importlib.util.spec_from_file_location(name, resolved)
        if mod_spec is None or mod_spec.loader is None:
            raise ModelLoadError(f"cannot import {path}", "pass a Python source file")
        module = importlib.util.module_from_spec(mod_spec)
        sys.modules[name] = module
        parent = str(path.resolve().parent)
        sys.path.insert(0, parent)  # the model file may import its neighbours
        try:
            mod_spec.loader.exec_module(module)
        except (SystemExit, GeneratorExit) as exc:
            sys.modules.pop(name, None)
            raise _exit_error(
                exc,
                f"importing {path}{_user_frame(exc, resolved)}",
                "a model file must import without side effects",
            ) from exc
        except Exception as exc:
            sys.modules.pop(name, None)
            raise ModelLoadError(
                f"importing {path} failed{_user_frame(exc, resolved)}: {exception_line(exc)}",
                "fix the error in the model file; it must import without side effects",
            ) from exc
        finally:
            if sys.path and sys.path[0] == parent:
                sys.path.pop(0)
        return module, resolved
    if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$", target):
        raise ModelLoadError(
            f"invalid model source '{spec}'",
            "use module.path:factory, path/to/model.py:factory or a .pt2 file",
        )
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(target)
    except ModuleNotFoundError as exc:
        from edgepack.named import prefix_hint

        close = prefix_hint(target) if "." not in target else None
        raise ModelLoadError(
            f"cannot import module '{target}' ({exception_line(exc)})",
            close or "check the module path and that it is importable from the current directory",
        ) from exc
    except Exception as exc:
        raise ModelLoadError(
            f"importing module '{target}' failed: {exception_line(exc)}",
            "fix the error in the module",
        ) from exc
    return module, getattr(module, "__file__", None)


def _check_not_pickled_model(path: Path, role: str) -> Any:
    """torch.load(weights_only=True); a pickled nn.Module is refused with the way out."""
    import pickle

    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ModelLoadError(
            f"{path} is a pickled Python object (likely a whole model saved with torch.save(model)); "
            f"edgepack does not unpickle {role} files because unpickling runs arbitrary code",
            _PICKLE_HINT,
        ) from exc
    except Exception as exc:
        raise ModelLoadError(
            f"cannot read {role} file {path}: {exception_line(exc)}",
            "pass a state_dict saved with torch.save(model.state_dict(), path)",
        ) from exc


def _load_weights(module: Any, weights: Path) -> str:
    if not weights.is_file():
        raise ModelLoadError(
            f"weights file not found: {weights}", "pass an existing --weights file"
        )
    if weights.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError as exc:
            raise ModelLoadError(
                f"{weights} is a .safetensors file and the safetensors package is missing",
                "pip install safetensors",
            ) from exc
        try:
            state = load_file(str(weights))
        except Exception as exc:
            raise ModelLoadError(
                f"cannot read weights file {weights}: {exception_line(exc)}",
                "the file is damaged; delete it and fetch it again",
            ) from exc
    else:
        state = _check_not_pickled_model(weights, "weights")
    apply_state(module, state, weights)
    return sha256_file(weights)


def apply_state(module: Any, state: Any, weights: Path) -> None:
    """Load ``state`` (what ``weights`` held) into ``module`` strictly, naming every mismatch."""
    import torch

    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelLoadError(
            f"{weights} does not hold a state_dict (a mapping of names to tensors)",
            "save it with torch.save(model.state_dict(), path)",
        )
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys {_few(missing)}")
        if unexpected:
            parts.append(f"unexpected keys {_few(unexpected)}")
        if shapes:
            parts.append(f"shape mismatch {_few(shapes)}")
        raise ModelLoadError(
            f"weights {weights} do not match the model: " + "; ".join(parts),
            "the factory must build the same architecture the weights were saved from",
        )
    module.load_state_dict(state, strict=True)


def _few(items: Sequence[str], n: int = 3) -> str:
    shown = ", ".join(items[:n])
    return f"[{shown}{', ...' if len(items) > n else ''}] ({len(items)})"


def _forward_names(module: Any, count: int) -> list[str]:
    try:
        params = [
            p.name
            for p in inspect.signature(module.forward).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
    except (TypeError, ValueError):
        params = []
    names = params[:count]
    names += [f"input_{i}" for i in range(len(names), count)]
    return names


def _specs_from_shapes(module: Any, input_shapes: Sequence[str]) -> tuple[InputSpec, ...]:
    parsed = [parse_input_shape(s) for s in input_shapes]
    default_names = _forward_names(module, len(parsed))
    return tuple(
        InputSpec(name=name or default_names[i], shape=dims, dtype=dtype)
        for i, (name, dims, dtype) in enumerate(parsed)
    )


def _example_tensors(specs: Sequence[InputSpec]) -> tuple[Any, ...]:
    import torch

    try:
        return tuple(torch.zeros(s.shape, dtype=getattr(torch, s.dtype)) for s in specs)
    except (RuntimeError, MemoryError) as exc:  # torch reports a failed allocation as either
        shapes = ", ".join("x".join(map(str, s.shape)) for s in specs)
        raise UsageError(
            f"cannot allocate example inputs of shape {shapes}: {exception_line(exc)}",
            "check --input-shape (batch first, e.g. 1x3x224x224)",
        ) from exc


def _find_factory(spec: str) -> tuple[Any, Any, str | None, str]:
    """Import the factory's module and find the factory (not called).

    Returns (factory, module, file path, module target). Importing runs the module's
    top-level code: it is the user's model code, as in a build.
    """
    if spec.endswith((".pt", ".pth", ".bin", ".ckpt")) and ":" not in spec:
        path = Path(spec)
        if path.is_file():
            _check_not_pickled_model(path, "model")
        raise ModelLoadError(
            f"{spec} is a weights file, not a model source",
            "pass the code that builds the model and the weights separately: "
            f"edgepack build model.py:build_model --weights {spec}",
        )
    target, sep, factory_name = spec.rpartition(":")
    if not sep or not target or not factory_name:
        raise ModelLoadError(
            f"invalid model source '{spec}'",
            "use module.path:factory, path/to/model.py:factory or a .pt2 file",
        )
    module_obj, file_path = _import_target(target, spec)
    factory = getattr(module_obj, factory_name, None)
    if factory is None or not callable(factory):
        available = sorted(
            n
            for n, v in vars(module_obj).items()
            if callable(v)
            and not n.startswith("_")
            and getattr(v, "__module__", None) == module_obj.__name__
        )
        raise ModelLoadError(
            f"'{factory_name}' is not a callable in {target}",
            f"callables defined there: {', '.join(available) or 'none'}",
        )
    return factory, module_obj, file_path, target


def check_source(spec: str, options: SourceOptions | None = None) -> None:
    """What ``--dry-run`` checks without building the model: a factory's module imports and
    names a callable (the factory is not called); a .pt2 archive passes the safe checker
    (the program is not loaded); a named source's library imports and knows the name.
    Raises the :class:`ModelLoadError` a build would raise."""
    from edgepack import named

    options = options or SourceOptions()
    if named.split(spec) is not None:
        named.check(spec, options)
        return
    _check_options_for(spec, options)
    if spec.endswith(".pt2"):
        path = Path(spec)
        if not path.is_file():
            raise ModelLoadError(
                f"exported program not found: {path}", "pass an existing .pt2 file"
            )
        check_program(path)
        return
    _find_factory(spec)


def _check_options_for(spec: str, options: SourceOptions) -> None:
    """Options a factory or .pt2 source cannot take."""
    problems = []
    if options.pretrained is not None:
        problems.append("--pretrained applies to named sources (torchvision:, timm:)")
    if options.task is not None:
        problems.append("--task applies to Hugging Face sources (hf:ORG/MODEL or hf:folder)")
    if options.sequence_length is not None:
        problems.append("--sequence-length applies to Hugging Face text sources")
    if options.factory_args and spec.endswith(".pt2"):
        problems.append("--factory-arg applies to a factory, not a .pt2 program")
    if problems:
        raise UsageError(
            f"{'; '.join(problems)}; the source is {spec}",
            "drop the option, or name the model (e.g. torchvision:resnet18 --pretrained)",
        )


def load_source(
    spec: str,
    weights: Path | None = None,
    input_shapes: Sequence[str] = (),
    options: SourceOptions | None = None,
    seed: int = 0,
) -> TorchModel:
    """Load a model source into a :class:`TorchModel` (eval mode, checked on its inputs).

    ``seed`` seeds torch before a named source is built (a random init is reproducible)."""
    import torch

    from edgepack import named

    options = options or SourceOptions()
    if named.split(spec) is not None:
        return named.load(spec, weights, input_shapes, options, seed)
    _check_options_for(spec, options)
    if spec.endswith(".pt2"):
        return _load_exported(Path(spec), weights, input_shapes)
    before = set(sys.modules)
    factory, module_obj, file_path, target = _find_factory(spec)
    kwargs = dict(options.factory_args)
    try:
        built = factory(**kwargs)
    except (SystemExit, GeneratorExit) as exc:
        raise _exit_error(
            exc,
            f"factory {spec}{_user_frame(exc, file_path)}",
            "the factory must build and return the model",
        ) from exc
    except Exception as exc:
        given = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
        raise ModelLoadError(
            f"factory {spec}"
            + (f"({given})" if given else "")
            + f" raised{_user_frame(exc, file_path)}: {exception_line(exc)}",
            "the factory must build the model from the --factory-arg values given"
            if kwargs
            else "the factory must build the model without arguments (or pass --factory-arg)",
        ) from exc
    example: tuple[Any, ...] | None = None
    if isinstance(built, tuple) and len(built) == 2 and isinstance(built[0], torch.nn.Module):
        built, ex = built
        example = tuple(ex) if isinstance(ex, (tuple, list)) else (ex,)
        if not all(isinstance(t, torch.Tensor) for t in example):
            raise ModelLoadError(
                f"factory {spec} returned example inputs that are not tensors",
                "return (model, (tensor, ...)) or just the model",
            )
    if not isinstance(built, torch.nn.Module):
        raise ModelLoadError(
            f"factory {spec} returned {type(built).__name__}, not a torch.nn.Module",
            "return the model (optionally with example inputs: (model, (x,)))",
        )
    # What this load imported afresh (the file source is executed again even when held):
    # the cache keys only code it can tell is what the files hold.
    loaded = set(sys.modules) - before
    if file_path is not None and (target.endswith(".py") or "/" in target or "\\" in target):
        loaded.add(module_obj.__name__)
    module = built
    weights_sha = None
    if weights is not None:
        weights_sha = _load_weights(module, Path(weights))
    module.eval()
    specs, example = _inputs(
        module,
        input_shapes,
        example,
        spec,
        "pass --input-shape (e.g. --input-shape 1x3x224x224), or have the factory return "
        "(model, example_inputs)",
    )
    source = {
        "kind": "factory",
        "spec": spec,
        "weights": None if weights is None else Path(weights).name,
        "weights_sha256": weights_sha,
        "inputs": [s.to_dict() for s in specs],
        **options.record(),
    }
    return TorchModel(
        module,
        example,
        specs,
        source,
        name=default_name(spec),
        factory=factory,
        loaded_modules=frozenset(loaded),
    )


def default_name(spec: str) -> str:
    """Package name from the source alone (no import): examples/digits/model.py:f -> digits."""
    if spec.endswith(".pt2"):
        return _slug(Path(spec).stem)
    from edgepack import named

    lib_name = named.split(spec)
    if lib_name is not None:  # torchvision:resnet18 -> resnet18; hf:org/bert-tiny -> bert-tiny
        return _slug(lib_name[1].rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1])
    target = spec.rpartition(":")[0] or spec
    if target.endswith(".py"):
        p = Path(target)
        name = p.stem
        if name in ("model", "models", "net", "__init__"):
            name = p.resolve().parent.name
    else:
        parts = target.split(".")
        name = parts[-1]
        if name in ("model", "models", "net") and len(parts) > 1:
            name = parts[-2]
    return _slug(name)


def _slug(s: str) -> str:
    slug = re.sub(r"[^a-z0-9._-]+", "-", s.lower())[:MAX_NAME_LENGTH]
    return slug.strip("-.") or "model"


MAX_NAME_LENGTH = 64
NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]*$"  # also the schema of edgepack.toml's model.name


def name_problem(name: str, flag: str = "--name") -> str | None:
    """Why ``name`` cannot name a package folder (<dir>/<name>-<target>), or None."""
    if re.fullmatch(NAME_PATTERN, name) and len(name) <= MAX_NAME_LENGTH:
        return None
    shown = name if len(name) <= 40 else name[:37] + "..."
    return (
        f"{flag} {shown!r} is not a package name: use 1-{MAX_NAME_LENGTH} characters "
        "a-z 0-9 . _ -, starting with a letter or digit (no path separators, no '..')"
    )


def _inputs(
    module: Any,
    input_shapes: Sequence[str] | None,
    example: tuple[Any, ...] | None,
    spec: str,
    hint: str,
) -> tuple[tuple[InputSpec, ...], tuple[Any, ...]]:
    """The input specs and example tensors of ``module``: from the shapes the user gave, else
    from the example inputs (names from forward()'s signature); checked by one forward run."""
    if input_shapes:
        specs = _specs_from_shapes(module, input_shapes)
        example = _example_tensors(specs)
    elif example is not None:
        names = _forward_names(module, len(example))
        specs = tuple(
            InputSpec(n, tuple(int(d) for d in t.shape), str(t.dtype).replace("torch.", ""))
            for n, t in zip(names, example, strict=True)
        )
    else:
        raise UsageError(f"no input shape for {spec}", hint)
    _check_runs(module, example, specs)
    return specs, example


def _check_runs(module: Any, example: tuple[Any, ...], specs: Sequence[InputSpec]) -> None:
    import torch

    try:
        with torch.no_grad():
            out = module(*example)
    except (SystemExit, GeneratorExit) as exc:
        raise _exit_error(exc, "the model's forward()", "forward() must return outputs") from exc
    except Exception as exc:
        shapes = ", ".join("x".join(str(d) for d in s.shape) for s in specs)
        raise ModelLoadError(
            f"the model fails on inputs of shape {shapes}: {exception_line(exc)}",
            "check --input-shape: it must be the shape the model's forward() takes, batch first",
        ) from exc
    outs = list(out) if isinstance(out, (tuple, list)) else [out]
    odd = [type(o).__name__ for o in outs if not isinstance(o, torch.Tensor)]
    if odd or not outs:
        what = (
            f"a dict (keys {_few([str(k) for k in out])})"
            if isinstance(out, dict)
            else f"{type(out).__name__} holding {odd[0] if odd else 'nothing'}"
        )
        raise ModelLoadError(
            f"the model's forward() returns {what}; edgepack needs a tensor or a tuple of tensors",
            "return the tensors from forward() (e.g. out['logits'], or a tuple of the dict's "
            "values), or wrap the model in a module that does",
        )


def _load_exported(path: Path, weights: Path | None, input_shapes: Sequence[str]) -> TorchModel:
    if not path.is_file():
        raise ModelLoadError(f"exported program not found: {path}", "pass an existing .pt2 file")
    if weights is not None:
        raise UsageError(
            "--weights cannot be used with a .pt2 source (the program carries its weights)",
            "drop --weights",
        )
    ep = load_program(path)
    placeholders = [
        n
        for n in ep.graph.nodes
        if n.op == "placeholder" and n.name in ep.graph_signature.user_inputs
    ]
    specs = tuple(
        InputSpec(
            n.name,
            tuple(int(d) for d in n.meta["val"].shape),
            str(n.meta["val"].dtype).replace("torch.", ""),
        )
        for n in placeholders
    )
    if input_shapes:
        given = _specs_from_shapes(ep.module(), input_shapes)
        if [s.shape for s in given] != [s.shape for s in specs]:
            raise UsageError(
                f"--input-shape {' '.join(input_shapes)} does not match the shapes the program "
                f"was exported with ({', '.join('x'.join(map(str, s.shape)) for s in specs)})",
                "drop --input-shape for .pt2 sources, or re-export with the shapes you want",
            )
    module = ep.module()
    example = _example_tensors(specs)
    source = {
        "kind": "exported",
        "spec": path.name,
        "weights": None,
        "weights_sha256": sha256_file(path),
        "inputs": [s.to_dict() for s in specs],
    }
    return TorchModel(module, example, specs, source, exported=ep, name=default_name(str(path)))


MEMORY_PREFIX = "memory:"


def memory_spec(module: Any) -> str:
    """The source string of an in-memory module: ``memory:<module>.<Class>`` (a label for the
    plan and the manifest; it is never imported)."""
    cls = type(module)
    return f"{MEMORY_PREFIX}{cls.__module__}.{cls.__qualname__}"


def _as_tensors(example: Any) -> tuple[Any, ...]:
    """Example inputs given in memory (a tensor, an array, or a tuple/list of them)."""
    import numpy as np
    import torch

    items = tuple(example) if isinstance(example, (tuple, list)) else (example,)
    out = []
    for i, t in enumerate(items):
        if isinstance(t, np.ndarray):
            t = torch.from_numpy(np.ascontiguousarray(t))
        if not isinstance(t, torch.Tensor):
            raise UsageError(
                f"example_inputs[{i}] is a {type(t).__name__}, not a tensor or numpy array",
                "pass example_inputs=torch.zeros(1, 3, 224, 224) or a tuple of tensors/arrays",
            )
        out.append(t)
    if not out:
        raise UsageError("example_inputs is empty", "pass at least one example input")
    return tuple(out)


def state_sha256(module: Any) -> str:
    """sha256 over a module's state_dict (names, dtypes, shapes, bytes): what the weights of an
    in-memory model were, so a build from memory is recorded as reproducibly as a file."""
    import torch

    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        a = t.detach().cpu().contiguous()
        h.update(f"{name}|{a.dtype}|{tuple(a.shape)}|".encode())
        h.update(a.view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def load_module(
    module: Any, example_inputs: Any = None, input_shapes: Sequence[str] = ()
) -> TorchModel:
    """An in-memory ``torch.nn.Module`` as a :class:`TorchModel`.

    The module is deep-copied (the build puts it in eval mode and may prune it; the caller's
    object is never mutated). Inputs come from ``example_inputs`` or ``input_shapes``.
    """
    import copy

    import torch

    if not isinstance(module, torch.nn.Module):
        raise UsageError(
            f"model is a {type(module).__name__}, not a torch.nn.Module or a source string",
            "pass an nn.Module, 'module.path:factory', 'path/to/model.py:factory' or a .pt2 path",
        )
    spec = memory_spec(module)
    try:
        module = copy.deepcopy(module)
    except Exception as exc:
        raise ModelLoadError(
            f"cannot copy the in-memory model {spec}: {exception_line(exc)}",
            "edgepack builds from a copy so your model is never changed; make it deep-copyable",
        ) from exc
    module.eval()
    specs, example = _inputs(
        module,
        input_shapes,
        None if example_inputs is None else _as_tensors(example_inputs),
        spec,
        "pass example_inputs=(torch.zeros(1, 3, 224, 224),) or input_shapes=['1x3x224x224']",
    )
    source = {
        "kind": "memory",
        "spec": spec,
        "weights": None,
        "weights_sha256": state_sha256(module),
        "inputs": [s.to_dict() for s in specs],
    }
    return TorchModel(module, example, specs, source, name=_slug(type(module).__name__))
