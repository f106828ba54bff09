"""Progress for long stages on stderr: rich bars on a terminal, plain lines otherwise.

Disabled with --quiet or --json. Bars only when stderr is a TTY (CI logs get one line per
stage instead of redraw sequences). In a matrix, each plain line names the target, its stage,
the node that builds it ("local" for the worker processes of the machine running edgepack) and the seconds since
the target's first message.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import typer

# The stages a build reports, in order (unknown ones update the text without advancing).
STAGES = ("load", "export", "convert", "quantize", "validate", "preflight", "package")
SHARED = "*"  # messages about the shared load/export step
LOCAL = "local"  # the node of a target built by the local process pool


def _stage(msg: str) -> str:
    return msg.split(":", 1)[0].strip()


@contextmanager
def build_progress(
    targets: Sequence[str],
    enabled: bool,
    stream: Any = None,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[Callable[..., None]]:
    """Yields ``report(target_id, message, node="local")``; ``target_id`` is "*" for the
    shared steps."""
    stream = stream if stream is not None else sys.stderr
    if not enabled:
        yield lambda t, m, node=LOCAL: None
        return
    if not getattr(stream, "isatty", lambda: False)():
        single = len(targets) <= 1
        started: dict[str, float] = {}

        def line(t: str, m: str, node: str = LOCAL) -> None:
            if single or t == SHARED:
                typer.echo(f"  {m}", file=stream)
                return
            now = clock()
            since = now - started.setdefault(t, now)
            typer.echo(f"  [{t} @ {node}, {since:.1f} s] {m}", file=stream)

        yield line
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    console = Console(file=stream)
    with Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.fields[label]:<18}"),
        BarColumn(bar_width=24),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as bar:
        tasks = {SHARED: bar.add_task("waiting", total=2, label="load + export")}
        for t in targets:
            tasks[t] = bar.add_task("waiting", total=len(STAGES) - 2, label=t)

        def report(t: str, m: str, node: str = LOCAL) -> None:
            del node  # the bar's label is the target; its elapsed column is per target
            task = tasks.get(t)
            if task is None:
                return
            stage = _stage(m)
            if t != SHARED:
                bar.update(tasks[SHARED], completed=2, description="shared by every target")
            done: int | None
            if t == SHARED:
                done = {"load": 0, "export": 1}.get(stage, 1)
            else:
                done = max(0, STAGES.index(stage) - 2) if stage in STAGES else None
            if done is None:
                bar.update(task, description=m)
            else:
                bar.update(task, completed=done, description=m)

        yield report
        for t, task in tasks.items():
            bar.update(task, completed=2 if t == SHARED else len(STAGES) - 2)
