"""The package manifest: what every stage did, with what, and the hash of what it wrote.

Reproducibility contract: two builds from the same inputs give manifests that differ only in
the top-level ``build`` field (timestamps, durations, host latency, host facts). Everything
outside ``build`` must be a pure function of the inputs.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import platform
import sys
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from edgepack import __version__
from edgepack.errors import PackageError, decode_problem

MANIFEST_SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
# Keys every manifest must have (checked by `edgepack verify`).
REQUIRED_KEYS = (
    "schema_version",
    "edgepack_version",
    "name",
    "source",
    "target",
    "quantization",
    "stages",
    "versions",
    "model_file",
    "files",
    "model",
    "metrics",
    "build",
)
TRACKED_PACKAGES = (
    "torch",
    "litert-torch",
    "ai-edge-quantizer",
    "ai-edge-litert",
    "numpy",
    "torch-pruning",
)


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def tool_versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "edgepack": __version__}
    for name in TRACKED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


@dataclass
class StageRecord:
    """What one stage did. ``outputs`` maps a file name to its sha256."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0  # moved under build.stage_seconds when written
    # export/convert: {"status": "hit"|"miss"|"off", "key"/"reason"}; under build.cache
    cache: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("seconds")
        d.pop("cache")
        return d


def host_facts() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": sys.version.split()[0],
    }


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def read_manifest(package_dir: str | Path) -> dict[str, Any]:
    p = Path(package_dir)
    mpath = p / MANIFEST_NAME if p.is_dir() else p
    if not mpath.is_file():
        raise PackageError(
            f"no {MANIFEST_NAME} in {p}",
            "pass a package folder written by `edgepack build` (e.g. dist/digits-rpi4)",
        )
    try:
        data = json.loads(mpath.read_bytes().decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
        raise PackageError(
            f"{mpath} is not valid JSON: {decode_problem(exc)}",
            "rebuild the package with `edgepack build`",
        ) from exc
    if not isinstance(data, dict) or data.get("schema_version") != MANIFEST_SCHEMA_VERSION:
        raise PackageError(
            f"{mpath} has schema_version {data.get('schema_version') if isinstance(data, dict) else None!r}, "
            f"this edgepack reads {MANIFEST_SCHEMA_VERSION}",
            "rebuild the package with this edgepack version",
        )
    return data


def package_member(package_dir: str | Path, name: Any) -> Path | None:
    """``package_dir / name`` when ``name`` is a relative path that stays inside the package
    (no absolute path, no "..", no symlink out of it); None otherwise. A manifest is data: any
    field of it may hold any JSON value."""
    if not isinstance(name, str):
        return None
    rel = Path(name)
    if not rel.parts or rel.anchor or ".." in rel.parts:
        return None
    pkg = Path(package_dir)
    try:
        inside = (pkg / rel).resolve().is_relative_to(pkg.resolve())
    except (OSError, RuntimeError, ValueError):  # a symlink loop; a NUL byte, a lone surrogate
        return None
    return pkg / rel if inside else None


def model_path(package_dir: str | Path, manifest: dict[str, Any]) -> Path:
    """The package's model file, manifest["model_file"]; refused unless it names a path
    inside the package."""
    name = manifest.get("model_file")
    path = package_member(package_dir, name)
    if path is None:
        text = repr(name)
        raise PackageError(
            f"{Path(package_dir) / MANIFEST_NAME}: model_file "
            f"{text if len(text) <= 200 else text[:197] + '...'} is not a path inside the package",
            'model_file names a file in the package folder (e.g. "model.tflite"); rebuild the '
            "package with `edgepack build`",
        )
    return path


def manifest_sha256(package_dir: str | Path) -> str:
    return sha256_file(Path(package_dir) / MANIFEST_NAME)
