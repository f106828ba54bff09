"""Stage `package`: write the package folder atomically (temp folder, then rename).

A failing build never leaves a half-written package: everything is written into a hidden
sibling folder first, then renamed into place. An existing package is replaced only with
``force``; it is moved aside first and removed after the new one is in place.

Results added to a package after its build (``bench/`` from `edgepack bench`, ``analysis/``
from `edgepack analyze`) are never lost: a ``--force`` rebuild moves them into the new package.
A result records the sha256 of the model it measured, so one measured on a previous build
stays visible (the report marks it stale) but no gate counts it for the new model.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from edgepack.errors import PackageError, storage_errors
from edgepack.manifest import MANIFEST_NAME, sha256_file, write_manifest

# Folders added to a package after its build; a rebuild keeps them.
KEPT_DIRS = ("bench", "analysis")


def check_destination(dest: Path, force: bool) -> None:
    """Called before any heavy work."""
    if dest.exists() and not force:
        raise PackageError(
            f"destination {dest} already exists",
            "pass --force to replace it, or choose another --output",
        )
    if dest.exists() and not dest.is_dir():
        raise PackageError(
            f"destination {dest} exists and is not a folder", "choose another --output"
        )
    if dest.exists() and force and any(dest.iterdir()) and not (dest / MANIFEST_NAME).is_file():
        raise PackageError(
            f"destination {dest} is a non-empty folder that is not an edgepack package; "
            "--force only replaces packages",
            "choose another --output",
        )
    parent = dest.parent if str(dest.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PackageError(
            f"cannot create {parent}: {exc.strerror}", "choose another --output"
        ) from exc
    if not os.access(parent, os.W_OK):
        raise PackageError(f"cannot write into {parent}", "choose another --output")


def write_package(
    dest: Path,
    files: dict[str, Path],
    texts: dict[str, str],
    manifest: dict[str, Any],
    force: bool,
) -> Path:
    """Copy ``files`` (package name -> source path), write ``texts`` and the manifest (whose
    ``files`` entry is filled here), then move the folder into place."""
    check_destination(dest, force)
    with storage_errors():  # a full disk at the output: a clean error, nothing half-written
        return _write(dest, files, texts, manifest)


def _write(
    dest: Path, files: dict[str, Path], texts: dict[str, str], manifest: dict[str, Any]
) -> Path:
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    # mkdtemp makes the folder 0700; a package is an ordinary folder (honour the umask).
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staging, 0o777 & ~umask)
    try:
        for name, src in files.items():
            shutil.copyfile(src, staging / name)
        for name, text in texts.items():
            (staging / name).write_text(text, encoding="utf-8")
        manifest["files"] = {
            name: {"sha256": sha256_file(staging / name), "bytes": (staging / name).stat().st_size}
            for name in sorted([*files, *texts])
        }
        write_manifest(staging / MANIFEST_NAME, manifest)
        if dest.exists():
            _replace(dest, staging)
        else:
            os.rename(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return dest


def _replace(dest: Path, staging: Path) -> None:
    """Move the package at ``dest`` aside, carry its KEPT_DIRS into ``staging``, rename
    ``staging`` into place, remove the old one. On failure the old package is put back whole."""
    old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent))
    prev = old / dest.name
    os.rename(dest, prev)
    moved: list[str] = []
    try:
        for sub in KEPT_DIRS:
            if (prev / sub).is_dir() and not (staging / sub).exists():
                os.rename(prev / sub, staging / sub)
                moved.append(sub)
        os.rename(staging, dest)
    except BaseException:
        for sub in moved:
            os.rename(staging / sub, prev / sub)
        os.rename(prev, dest)
        shutil.rmtree(old, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)
