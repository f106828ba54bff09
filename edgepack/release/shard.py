"""``--shard I/N``: a stable, balanced slice of a release matrix, for CI jobs without a cluster.

The rule uses nothing but the config: the jobs are sorted by (model, target, variant) and
cut into N contiguous slices whose sizes differ by at most one (the first ``len % N`` slices
get one more). The same config gives the same slices on every run and every machine; a
model's targets stay together where the sizes allow it, so most shards export a model once.
A shard whose slice is empty builds nothing and still writes its summary.

Each shard writes ``<output_dir>/edgepack-shard-I-of-N.json`` (:data:`SUMMARY_SCHEMA`): its
index, the full job list with the shard of every job, and its outcomes. `edgepack report` and
`edgepack verify` read these to merge the shards' dist folders and to name missing shards.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from edgepack.errors import UsageError

SUMMARY_SCHEMA = "edgepack.shard-summary/1"
SUMMARY_GLOB = "edgepack-shard-*-of-*.json"
HINT = (
    "--shard I/N builds slice I of N (1 <= I <= N), e.g. --shard 1/3 in the first of three CI "
    "jobs; every I in 1..N must run once"
)


@dataclass(frozen=True, order=True)
class Shard:
    index: int  # 1-based
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def summary_name(self) -> str:
        return f"edgepack-shard-{self.index}-of-{self.count}.json"

    def to_dict(self) -> dict[str, int]:
        return {"index": self.index, "count": self.count}


def parse_shard(text: str) -> Shard:
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if m is None:
        raise UsageError(f"--shard {text!r} is not I/N (two whole numbers)", HINT)
    index, count = int(m.group(1)), int(m.group(2))
    if count < 1:
        raise UsageError(f"--shard {text}: N must be at least 1", HINT)
    if not 1 <= index <= count:
        raise UsageError(f"--shard {text}: I must be between 1 and {count}", HINT)
    return Shard(index, count)


class _Job(Protocol):
    @property
    def sort_key(self) -> tuple[str, ...]: ...


J = TypeVar("J", bound=_Job)


def assign(jobs: Sequence[J], count: int) -> list[tuple[int, J]]:
    """Every job with its 1-based shard, in (model, target, variant) order."""
    ordered = sorted(jobs, key=lambda j: j.sort_key)
    size, extra = divmod(len(ordered), count)
    out: list[tuple[int, J]] = []
    start = 0
    for i in range(count):
        n = size + (1 if i < extra else 0)
        out += [(i + 1, j) for j in ordered[start : start + n]]
        start += n
    return out
