"""The packages of several dist folders, as one release: what `edgepack report` and
`edgepack verify` read when a matrix was built in shards (``--shard I/N``, one CI job each).

An input is a package folder, a dist folder (packages and shard summaries inside), or a
folder of dist folders (the downloaded artifacts of every CI job, one folder each). The
merge checks that

- a package found in two inputs is the same package: identical bytes are fine (a shard's
  artifact downloaded twice); different bytes are an error, since one of them is not what
  the other shards built;
- every shard of the matrix is there: each shard's summary (edgepack-shard-I-of-N.json)
  records N and the whole job list, so a missing one is named with the packages it builds;
- every job of the matrix has its package (a target that failed in its shard has none).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgepack.errors import PackageError, UsageError
from edgepack.manifest import MANIFEST_NAME
from edgepack.release.shard import SUMMARY_GLOB, SUMMARY_SCHEMA

# Added to a package after its build (benchmark results, analysis tables): not part of the
# bytes two copies of one package must share.
AFTER_BUILD = ("bench", "analysis")


@dataclass
class Merged:
    packages: list[Path]
    conflicts: list[str] = field(default_factory=list)  # same package, different bytes
    shard_count: int | None = None
    shards_found: list[int] = field(default_factory=list)
    missing_shards: list[str] = field(default_factory=list)  # "shard 2/3 missing: ..."
    not_built: list[str] = field(default_factory=list)  # jobs of present shards, no package
    disagreements: list[str] = field(default_factory=list)  # summaries of other matrices

    @property
    def problems(self) -> list[str]:
        return [*self.conflicts, *self.disagreements, *self.missing_shards, *self.not_built]

    def to_dict(self) -> dict[str, Any]:
        return {
            "count": self.shard_count,
            "found": self.shards_found,
            "missing": self.missing_shards,
            "not_built": self.not_built,
            "conflicts": self.conflicts,
            "disagreements": self.disagreements,
        }


def _packages_in(folder: Path) -> list[Path]:
    return sorted(c for c in folder.iterdir() if (c / MANIFEST_NAME).is_file())


def _scan(inputs: list[Path]) -> tuple[list[Path], list[Path]]:
    """Package folders and shard summaries of ``inputs``, in the order given."""
    packages: list[Path] = []
    summaries: list[Path] = []
    for p in inputs:
        if (p / MANIFEST_NAME).is_file():
            packages.append(p)
            continue
        if not p.is_dir():
            raise UsageError(f"not found: {p}", "pass dist folders or package folders")
        found, sums = _packages_in(p), sorted(p.glob(SUMMARY_GLOB))
        if not found and not sums:  # a folder of dist folders (CI artifacts, one per job)
            for c in sorted(d for d in p.iterdir() if d.is_dir()):
                found += _packages_in(c)
                sums += sorted(c.glob(SUMMARY_GLOB))
        if not found and not sums:
            raise PackageError(
                f"no packages in {p}",
                "pass a dist folder holding packages, or package folders (with manifest.json)",
            )
        packages += found
        summaries += sums
    return list(dict.fromkeys(packages)), list(dict.fromkeys(summaries))


def package_digest(pkg: Path) -> str:
    """sha256 over the package's built files (paths and bytes; bench/ and analysis/ left out)."""
    h = hashlib.sha256()
    for f in sorted(pkg.rglob("*")):
        rel = f.relative_to(pkg)
        if f.is_dir() or rel.parts[0] in AFTER_BUILD:
            continue
        h.update(rel.as_posix().encode() + b"\0")
        h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()


def _read_summary(path: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(doc, dict) or doc.get("schema") != SUMMARY_SCHEMA:
        return None
    shard, matrix = doc.get("shard"), doc.get("matrix")
    ok = (
        isinstance(shard, dict)
        and _whole(shard.get("count"))
        and _whole(shard.get("index"))
        and 1 <= shard["index"] <= shard["count"]
        and isinstance(matrix, list)
        and all(isinstance(j, dict) and _whole(j.get("shard")) for j in matrix)
    )
    return doc if ok else None


def _whole(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def merge(inputs: list[Path]) -> Merged:
    """Find every package and shard summary of ``inputs`` and check them as one release.
    Raises only for inputs that hold nothing; problems are listed in the result."""
    found, summary_paths = _scan(inputs)
    by_name: dict[str, tuple[Path, str | None]] = {}
    packages: list[Path] = []
    out = Merged(packages)
    for pkg in found:
        first = by_name.get(pkg.name)
        if first is None:
            by_name[pkg.name] = (pkg, None)
            packages.append(pkg)
            continue
        path0, digest0 = first
        digest0 = digest0 or package_digest(path0)
        by_name[pkg.name] = (path0, digest0)
        if package_digest(pkg) != digest0:
            out.conflicts.append(
                f"{pkg.name} is in {path0.parent} and {pkg.parent} with different bytes"
            )
    docs = []
    for p in summary_paths:
        doc = _read_summary(p)
        if doc is None:
            out.disagreements.append(f"{p} is not an edgepack shard summary")
        else:
            docs.append((p, doc))
    if not docs:
        return out
    _check_shards(out, docs, set(by_name))
    return out


def _job_list(doc: dict[str, Any]) -> list[tuple[str, str, int]]:
    return sorted((str(j.get("id")), str(j.get("package")), j["shard"]) for j in doc["matrix"])


def _check_shards(out: Merged, docs: list[tuple[Path, dict[str, Any]]], names: set[str]) -> None:
    p0, doc0 = docs[0]
    count = doc0["shard"].get("count")
    jobs = _job_list(doc0)
    for p, doc in docs[1:]:
        if doc["shard"].get("count") != count or _job_list(doc) != jobs:
            out.disagreements.append(
                f"{p} and {p0} are shards of different matrices "
                f"({doc['shard'].get('count')} vs {count} shards, or other jobs)"
            )
    out.shard_count = count
    out.shards_found = sorted({d["shard"]["index"] for _, d in docs})
    failed = {
        str(t.get("id")): f"{t.get('status')} in shard {d['shard']['index']}/{count}"
        for _, d in docs
        for t in (d["targets"] if isinstance(d.get("targets"), list) else [])
        if isinstance(t, dict) and t.get("package") is None
    }
    # the shards with jobs (a shard without jobs builds nothing: nothing is lost without it)
    for i in sorted({s for _, _, s in jobs if 1 <= s <= count}):
        mine = [(jid, pkg) for jid, pkg, s in jobs if s == i]
        if i not in out.shards_found:
            listed = ", ".join(pkg for _, pkg in mine)
            out.missing_shards.append(f"shard {i}/{out.shard_count} missing: {listed} not built")
            continue
        for jid, pkg in mine:
            if pkg not in names:
                why = failed.get(jid, f"not in the artifacts of shard {i}/{out.shard_count}")
                out.not_built.append(f"{pkg}: no package ({why})")
