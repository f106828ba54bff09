"""A content-addressed cache of the export (.pt2) and the float conversion (.tflite).

Export and litert-torch conversion are most of a build; a second build of the same model for
another target or quantization mode takes both from here. An entry's key is the sha256 of
everything its bytes depend on:

- export: the model source's code (every Python file in the model's folder or package that
  the factory's module and the model's classes reach through imports, by module name and
  sha256; for a .pt2 source the file's sha256), how it was called (factory arguments; a named
  source's library, model, weights name and task), the weights' sha256 (a named source: its
  state's, random init included), the input specs (names,
  shapes, dtypes), the versions of the tool packages and of the third-party packages the
  model's code imports, and edgepack's own export/convert code;
- convert: the export key, the I/O layout and the signature's output names.

Compressed models (--prune, --distill) bypass the cache. Entries live under
``$EDGEPACK_CACHE_DIR``, else ``$XDG_CACHE_HOME/edgepack``, else ``~/.cache/edgepack``; each is a
folder written under a temporary name and renamed into place, holding the artifact and a
``meta.json`` with its sha256. A read copies the artifact while hashing it: an entry whose
bytes do not match (truncated, edited) is deleted and rebuilt, never used. The total size is
capped (``$EDGEPACK_CACHE_MAX_MB``, default 2048): the least recently used entries go first.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from edgepack.errors import UsageError
from edgepack.manifest import sha256_file, tool_versions
from edgepack.stages.base import TorchModel

CACHE_FORMAT = 1
DEFAULT_MAX_MB = 2048
ENV_DIR = "EDGEPACK_CACHE_DIR"
ENV_MAX_MB = "EDGEPACK_CACHE_MAX_MB"
_ENTRIES = f"v{CACHE_FORMAT}"
_ARTIFACT = "artifact"
_META = "meta.json"
_STALE_TMP_SECONDS = 3600  # an entry being written takes seconds; older temps are debris
# edgepack's own code that shapes the cached bytes (a development checkout changes it
# without a version bump).
_OWN_CODE = ("stages/export.py", "stages/convert.py", "cache.py", "named.py")
# What a source record says about how the model was built beyond its code and weights:
# factory arguments, a named source's library/model/weights name/task (all key the export).
_SOURCE_OPTIONS = ("library", "model", "factory_args", "pretrained", "task", "sequence_length")


def default_dir() -> Path:
    env = os.environ.get(ENV_DIR)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "edgepack"


def default_max_bytes() -> int:
    text = os.environ.get(ENV_MAX_MB)
    if text is None or text.strip() == "":
        return DEFAULT_MAX_MB * 1024 * 1024
    try:
        mb = float(text)
    except ValueError:
        mb = -1.0
    if mb < 0:
        raise UsageError(
            f"{ENV_MAX_MB}={text!r} is not a size in MB",
            f"set it to a number >= 0 (e.g. {ENV_MAX_MB}=4096), or unset it for the "
            f"default {DEFAULT_MAX_MB}",
        )
    return int(mb * 1024 * 1024)


@dataclass(frozen=True)
class Hit:
    key: str
    meta: dict[str, Any]


class ArtifactCache:
    """One file per entry, addressed by key; see the module docstring."""

    def __init__(self, root: Path | None = None, max_bytes: int | None = None) -> None:
        self.root = root if root is not None else default_dir()
        self.max_bytes = max_bytes if max_bytes is not None else default_max_bytes()

    def _entry(self, key: str) -> Path:
        return self.root / _ENTRIES / key

    def get(self, key: str, dest: Path) -> Hit | None:
        """Copy the entry's artifact to ``dest`` and return its metadata, or None on a miss.

        The copy is hashed as it is written; a mismatch deletes the entry and ``dest``.
        """
        entry = self._entry(key)
        try:
            meta = json.loads((entry / _META).read_text(encoding="utf-8"))
            h = hashlib.sha256()
            with open(entry / _ARTIFACT, "rb") as src, open(dest, "wb") as out:
                for chunk in iter(lambda: src.read(1 << 20), b""):
                    h.update(chunk)
                    out.write(chunk)
            ok = h.hexdigest() == meta["sha256"] and meta.get("key") == key
        except (OSError, ValueError, KeyError, TypeError):
            ok = False
            meta = {}
        if not ok:
            dest.unlink(missing_ok=True)
            if entry.exists():
                shutil.rmtree(entry, ignore_errors=True)  # damaged: rebuilt by this build
            return None
        with contextlib.suppress(OSError):
            os.utime(entry / _META)  # last use, for the LRU eviction
        return Hit(key, meta)

    def put(self, key: str, src: Path, meta: dict[str, Any] | None = None) -> bool:
        """Store a copy of ``src`` under ``key`` (atomically); False when it was not stored."""
        size = src.stat().st_size
        if size > self.max_bytes:
            return False
        entries = self.root / _ENTRIES
        try:
            entries.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=entries))
        except OSError:
            return False  # an unwritable cache folder slows builds down, nothing more
        try:
            shutil.copyfile(src, tmp / _ARTIFACT)
            record = {
                **(meta or {}),
                "key": key,
                "sha256": sha256_file(tmp / _ARTIFACT),
                "bytes": size,
                "created": time.time(),
            }
            (tmp / _META).write_text(json.dumps(record, sort_keys=True), encoding="utf-8")
            # Fails when the entry exists (another build stored it first): keep that one.
            # A damaged entry never stays: get() deletes it before the build stores anew.
            os.rename(tmp, self._entry(key))
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            return False
        self.evict()
        return True

    def entries(self) -> list[tuple[float, int, Path]]:
        """(last use, bytes, folder) of every complete entry."""
        out = []
        folder = self.root / _ENTRIES
        if not folder.is_dir():
            return []
        for entry in folder.iterdir():
            if entry.name.startswith(".tmp-"):
                with contextlib.suppress(OSError):  # left by a build that was killed
                    if time.time() - entry.stat().st_mtime > _STALE_TMP_SECONDS:
                        shutil.rmtree(entry, ignore_errors=True)
                continue
            try:
                used = (entry / _META).stat().st_mtime
                size = (entry / _ARTIFACT).stat().st_size
            except OSError:
                continue
            out.append((used, size, entry))
        return out

    def evict(self) -> None:
        """Delete least recently used entries until the total fits ``max_bytes``."""
        items = sorted(self.entries())
        total = sum(size for _, size, _ in items)
        for _, size, entry in items:
            if total <= self.max_bytes:
                break
            shutil.rmtree(entry, ignore_errors=True)
            total -= size


# --------------------------------------------------------------------------- keys


def _digest(material: dict[str, Any]) -> str:
    text = json.dumps(material, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _installed(path: str) -> bool:
    parts = Path(path).parts
    return "site-packages" in parts or "dist-packages" in parts


def _process_start() -> float | None:
    """When this process started (Linux), else None."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        boot = next(
            int(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def _version(top: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(top)
    except (metadata.PackageNotFoundError, ValueError):
        mod = sys.modules.get(top)
        return str(getattr(mod, "__version__", "?"))


def _installed_package(top: str) -> bool:
    """Whether the top-level package ``top`` lives in site-packages (keyed by version)."""
    mod = sys.modules.get(top)
    where = getattr(mod, "__file__", None) or next(iter(getattr(mod, "__path__", [])), None)
    return where is not None and _installed(str(where))


def _submodules(name: str) -> list[ModuleType]:
    return [m for n, m in list(sys.modules.items()) if n.startswith(name + ".") and m is not None]


def code_fingerprint(model: TorchModel) -> dict[str, Any] | None:
    """Module name -> sha256 of the Python files the model's code reaches, and the versions of
    the installed packages it imports.

    Starts from the factory's module and the modules defining the model's classes, and
    follows module-level names (imported modules, classes, functions) transitively, stopping
    at installed packages (keyed by version) and the standard library. None (no key) when a
    file may differ from the code in memory: a module imported before this load whose file
    changed since the process started, or code without a file (defined interactively).
    """
    factory = model.factory
    names = {getattr(factory, "__module__", None)} | {
        type(m).__module__ for m in model.module.modules()
    }
    mods = [
        sys.modules[n] for n in sorted(n for n in names if isinstance(n, str)) if n in sys.modules
    ]
    started = _process_start()
    code: dict[str, str] = {}
    packages: dict[str, str] = {}
    seen: set[str] = set()
    stdlib = set(sys.stdlib_module_names) | {"builtins"}
    while mods:
        mod = mods.pop()
        name = mod.__name__
        if name in seen:
            continue
        seen.add(name)
        top = name.split(".")[0]
        if top in stdlib or top == "edgepack":  # edgepack: its version and _own_code()
            continue
        if _installed_package(top):
            packages[top] = _version(top)
            continue
        file = getattr(mod, "__file__", None)
        if file is None or not Path(file).is_file():
            if hasattr(mod, "__path__"):  # a namespace package: its modules are followed
                mods += _submodules(name)
                continue
            return None
        if name not in model.loaded_modules and (
            started is None or Path(file).stat().st_mtime >= started - 2
        ):
            return None  # imported earlier and maybe edited since: memory may be stale
        code[name] = sha256_file(file)
        for value in list(vars(mod).values()):
            ref = value if isinstance(value, ModuleType) else None
            if ref is None:
                try:
                    owner = getattr(value, "__module__", None)
                except Exception:  # an object with a broken __getattr__: not code
                    owner = None
                ref = sys.modules.get(owner) if isinstance(owner, str) else None
            if ref is not None and ref.__name__ not in seen:
                mods.append(ref)
        if hasattr(mod, "__path__"):  # import pkg; pkg.sub.Net: the imported submodules
            mods += _submodules(name)
    return {"code": code, "packages": packages}


def _own_code() -> dict[str, str]:
    here = Path(__file__).resolve().parent
    return {rel: sha256_file(here / rel) for rel in _OWN_CODE}


def export_key(model: TorchModel) -> str | None:
    """The key of ``model``'s export (see the module docstring); None: not cacheable."""
    if model.source.get("kind") == "exported":
        source: dict[str, Any] = {"kind": "exported", "sha256": model.source["weights_sha256"]}
    else:
        code = code_fingerprint(model) if model.factory is not None else None
        if code is None:
            return None
        factory = model.factory
        source = {
            "kind": "factory",
            "factory": f"{getattr(factory, '__module__', '')}:"
            f"{getattr(factory, '__qualname__', '')}",
            **code,
        }
    return _digest(
        {
            "cache_format": CACHE_FORMAT,
            "artifact": "export",
            "source": source,
            "weights_sha256": model.source.get("weights_sha256"),
            "options": {
                k: model.source[k] for k in _SOURCE_OPTIONS if model.source.get(k) is not None
            },
            "inputs": [s.to_dict() for s in model.inputs],
            "versions": tool_versions(),
            "edgepack_code": _own_code(),
        }
    )


def convert_key(export: str, layout: str, output_names: Sequence[str] = ()) -> str:
    """The key of the float conversion of the export ``export`` with I/O ``layout`` and the
    signature's output names (the input names are in the export key)."""
    material: dict[str, Any] = {
        "cache_format": CACHE_FORMAT,
        "artifact": "convert",
        "export": export,
        "layout": layout,
    }
    if output_names:
        material["output_names"] = list(output_names)
    return _digest(material)


def key_label(key: str) -> str:
    """How progress lines name an entry: the key's first 12 hex digits."""
    return f"key {key[:12]}"


def cache_status(
    cache: ArtifactCache | None, key: str | None, hit: bool, reason: str
) -> dict[str, Any]:
    """What a stage record says about the cache (manifest ``build.cache``)."""
    if cache is None:
        return {"status": "off", "reason": reason}
    if key is None:
        return {
            "status": "off",
            "reason": "the model's code may differ from its files (edited after import, "
            "or no file)",
        }
    return {"status": "hit" if hit else "miss", "key": key}
