"""Stage `package`: write the package folder atomically (temp folder, then rename).

A failing build never leaves a half-written package: everything is written into a hidden
sibling folder first, then renamed into place. An existing package is replaced only with
``force``; it is moved aside first and removed after the new one is in place.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from edgepack.errors import PackageError
from edgepack.manifest import MANIFEST_NAME, sha256_file, write_manifest


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
        old = None
        if dest.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent))
            os.rename(dest, old / dest.name)
        os.rename(staging, dest)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return dest
