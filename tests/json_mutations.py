"""Mutations of a JSON document for fuzz tests of commands that read package files: every
node (object member or list item, containers included) replaced by a value of another type."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

# One of each JSON type a reader may not expect: a string, null, a list, an object.
VALUES: list[Any] = ["x", None, [1], {"a": 1}]
Path_ = tuple[str | int, ...]


def nodes(doc: Any, list_items: int = 2, path: Path_ = ()) -> Iterator[Path_]:
    """The path of every node below ``doc`` (the first ``list_items`` items of each list)."""
    children = (
        doc.items()
        if isinstance(doc, dict)
        else enumerate(doc[:list_items])
        if isinstance(doc, list)
        else ()
    )
    for key, child in children:
        yield (*path, key)
        yield from nodes(child, list_items, (*path, key))


def mutated(doc: Any, path: Path_, value: Any) -> Any:
    """A copy of ``doc`` with the node at ``path`` replaced by ``value``."""
    out = copy.deepcopy(doc)
    node = out
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = copy.deepcopy(value)
    return out
