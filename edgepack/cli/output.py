"""Small printing helpers shared by the commands: aligned tables and JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import typer


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for n, r in enumerate(cells):
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def echo_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    typer.echo(table(headers, rows))


def echo_json(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2, sort_keys=True, default=str))


def echo_pairs(rows: Sequence[tuple[str, Any]]) -> None:
    """Key / value lines, keys aligned."""
    width = max((len(k) for k, _ in rows), default=0)
    for k, v in rows:
        typer.echo(f"{k.ljust(width)}  {v}")
