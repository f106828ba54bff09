"""Load a torch.export ``.pt2`` without letting the file run code.

``torch.export.load`` has three ways to run what a file says: it unpickles entries marked
``use_pickle`` (weights, constants), custom and opaque objects and the example inputs (falling
back to ``torch.load(weights_only=False)`` when the safe loader refuses them), and it evaluates
symbolic shape expressions with ``sympy.sympify`` (Python ``eval``). Before torch sees the
archive, :func:`load_program` reads it once into memory and checks it against what a plain
static-shape ``torch.export.save`` writes:

- only the entries that format has (no AOTInductor libraries, no legacy pickled state);
- every weight and constant is a raw tensor buffer (``use_pickle`` false, no custom objects);
- the example inputs load with ``torch.load(weights_only=True)``, so torch never falls back;
- no symbolic shape expression anywhere in the program.

Then torch loads the same bytes. Anything else is refused with :class:`ModelLoadError`.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path
from typing import Any

from edgepack.errors import ModelLoadError

_SAVE_HINT = (
    "edgepack loads only .pt2 files in the plain format of torch.export.save with static "
    "shapes and tensor weights; re-export the model with "
    "torch.export.save(torch.export.export(model, args), 'model.pt2'), or pass its factory"
)
_CORRUPT_HINT = "the file is damaged or not a .pt2; export it again with torch.export.save"

_MODEL = "model"
# Entries of a torch.export.save archive, relative to its top folder.
_FIXED = {
    "archive_format",
    "archive_version",
    "byteorder",
    ".data/version",
    ".data/serialization_id",
    f"models/{_MODEL}.json",
    f"data/weights/{_MODEL}_weights_config.json",
    f"data/constants/{_MODEL}_constants_config.json",
    f"data/sample_inputs/{_MODEL}.pt",
}
_PAYLOAD = re.compile(r"^data/(?:weights/weight|constants/tensor)_\d+$")
_EXTRA = re.compile(r"^extra/[^/]+$")
_MAX_BYTES = 4 << 30


def _refuse(path: Path, why: str, hint: str = _SAVE_HINT) -> ModelLoadError:
    return ModelLoadError(f"{path}: refused to load this .pt2: {why}", hint)


def _check_payload_config(path: Path, zf: zipfile.ZipFile, name: str) -> set[str]:
    """The entries a weights/constants config points at; pickled payloads are refused."""
    try:
        config = json.loads(zf.read(name))["config"]
        items = list(config.items())
    except Exception as exc:
        raise ModelLoadError(
            f"{path}: {name.rsplit('/', 1)[1]} is not a valid payload table", _CORRUPT_HINT
        ) from exc
    files = set()
    for fqn, meta in items:
        if not isinstance(meta, dict):
            raise ModelLoadError(f"{path}: payload '{fqn}' is malformed", _CORRUPT_HINT)
        if meta.get("use_pickle") is not False:
            raise _refuse(path, f"'{fqn}' is stored as a pickle (unpickling runs arbitrary code)")
        file = str(meta.get("path_name", ""))
        if not re.fullmatch(r"(?:weight|tensor)_\d+", file):
            raise _refuse(path, f"'{fqn}' is not a tensor (a pickled custom object: '{file}')")
        files.add(file)
    return files


def _symbolic(node: Any) -> bool:
    if isinstance(node, dict):
        return "as_expr" in node or "expr_str" in node or any(_symbolic(v) for v in node.values())
    if isinstance(node, list):
        return any(_symbolic(v) for v in node)
    return False


def _check_archive(path: Path, data: bytes) -> None:
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        infos = zf.infolist()
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise ModelLoadError(
            f"{path} is not a .pt2 archive (not a valid zip file)", _CORRUPT_HINT
        ) from exc
    with zf:
        names = [i.filename for i in infos]
        tops = {n.split("/", 1)[0] for n in names}
        if len(tops) != 1 or any("/" not in n for n in names):
            raise ModelLoadError(
                f"{path} is not a torch.export archive (expected one top folder)", _CORRUPT_HINT
            )
        top = tops.pop()
        rel = {n.split("/", 1)[1] for n in names}
        needed = _FIXED - {".data/serialization_id"}
        missing = sorted(needed - rel)
        if missing:
            if "version" in rel or any(n.endswith(".pt") and "sample" not in n for n in rel):
                raise _refuse(path, "it is in the old pickled torch.export format")
            raise ModelLoadError(
                f"{path} is not a complete torch.export archive: missing {', '.join(missing)}",
                _CORRUPT_HINT,
            )
        try:
            if zf.read(f"{top}/archive_format").decode().strip() != "pt2":
                raise ModelLoadError(f"{path} is not a torch.export .pt2 archive", _CORRUPT_HINT)
            files = _check_payload_config(
                path, zf, f"{top}/data/weights/{_MODEL}_weights_config.json"
            )
            files |= _check_payload_config(
                path, zf, f"{top}/data/constants/{_MODEL}_constants_config.json"
            )
            program = json.loads(zf.read(f"{top}/models/{_MODEL}.json"))
        except ModelLoadError:
            raise
        except Exception as exc:
            raise ModelLoadError(
                f"{path} is a damaged .pt2 archive: {type(exc).__name__}", _CORRUPT_HINT
            ) from exc
        unexpected = sorted(
            r
            for r in rel - _FIXED
            if not (_PAYLOAD.match(r) and r.rsplit("/", 1)[1] in files) and not _EXTRA.match(r)
        )
        if unexpected:
            raise _refuse(
                path,
                f"unexpected entries {', '.join(unexpected[:3])} (e.g. compiled libraries or "
                "pickled state, which loading would run)",
            )
        if _symbolic(program):
            raise _refuse(
                path,
                "it has symbolic (dynamic) shapes, whose expressions torch evaluates as Python",
                "export with static shapes (no dynamic_shapes=...); edgepack converts fixed shapes",
            )
        _check_example_inputs(path, zf.read(f"{top}/data/sample_inputs/{_MODEL}.pt"))


def _check_example_inputs(path: Path, data: bytes) -> None:
    """torch falls back to a full unpickle when the safe loader refuses: refuse first."""
    import torch

    if not data:
        return
    try:
        torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError, or anything a damaged file raises
        raise _refuse(
            path, "its example inputs are not plain tensors (a pickle that could run code)"
        ) from exc


def check_program(path: Path) -> bytes:
    """The bytes of the .pt2 archive ``path``, checked so that loading it would run no code
    from the file (the program itself is not loaded: ``build --dry-run`` stops here)."""
    try:
        size = path.stat().st_size
        if size > _MAX_BYTES:
            raise ModelLoadError(f"{path} is larger than 4 GiB", "edgepack targets edge models")
        data = path.read_bytes()
    except OSError as exc:
        raise ModelLoadError(f"cannot read {path}: {exc.strerror}", "pass a readable .pt2") from exc
    _check_archive(path, data)
    return data


def load_program(path: Path) -> Any:
    """The ExportedProgram in ``path``, checked so that loading it runs no code from the file."""
    import torch

    data = check_program(path)
    try:
        return torch.export.load(io.BytesIO(data))
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise ModelLoadError(
            f"{path} is not a loadable torch.export program: {type(exc).__name__}: {first}".rstrip(
                ": "
            ),
            "save one with torch.export.save(torch.export.export(model, args), 'model.pt2')",
        ) from exc
