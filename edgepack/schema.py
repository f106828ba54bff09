"""A small strict validator for TOML data into frozen dataclasses.

Why not pydantic: `edgepack targets list` must start as fast as a bare Typer program, and
importing pydantic and building its models costs more than the whole CLI. This covers what
profiles need: nested dataclasses, str/int/float/bool, Enum, Literal, list[...], optional
values, numeric bounds and patterns (field metadata), key aliases, unknown keys rejected, and
every problem collected before raising.

Field metadata: ``ge``, ``le``, ``gt`` (numbers), ``pattern`` (str), ``key`` (the TOML key
when it differs from the attribute name), ``one_or_list`` (a list field that also takes a
single value, read as a list of one), ``nonempty`` and ``unique`` (lists). A dataclass may
define ``_check(self) -> list[str]`` for cross-field rules. A value outside an enum or literal
is reported with the closest valid name.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import types
import typing
from enum import Enum
from typing import Any, Literal, TypeVar, cast, get_args, get_origin

T = TypeVar("T")


class SchemaErrors(Exception):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def _choices(tp: Any) -> list[Any]:
    if isinstance(tp, type) and issubclass(tp, Enum):
        return [e.value for e in tp]
    return list(get_args(tp))


def _not_one_of(tp: Any, value: Any, loc: str) -> str:
    """``'loc': 'int4' is not one of ...; did you mean 'int8'?`` (the closest valid name)."""
    import difflib

    msg = f"'{loc}': {value!r} is not {_type_name(tp)}"
    names = [c for c in _choices(tp) if isinstance(c, str)]
    if isinstance(value, str):
        close = difflib.get_close_matches(value, names, n=1, cutoff=0.3)
        if close:
            msg += f"; did you mean {close[0]!r}?"
    return msg


def _type_name(tp: Any) -> str:
    if isinstance(tp, type) and issubclass(tp, Enum):
        return "one of " + ", ".join(repr(e.value) for e in tp)
    if get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    return getattr(tp, "__name__", str(tp))


def _convert(tp: Any, value: Any, loc: str, problems: list[str]) -> Any:
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _convert(args[0], value, loc, problems)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return _build(tp, value, loc, problems)
    if origin is Literal:
        if value not in get_args(tp):
            problems.append(_not_one_of(tp, value, loc))
        return value
    if origin is list:
        if not isinstance(value, list):
            problems.append(f"'{loc}': expected a list, got {type(value).__name__}")
            return []
        (item,) = get_args(tp)
        return [_convert(item, v, f"{loc}[{i}]", problems) for i, v in enumerate(value)]
    if isinstance(tp, type) and issubclass(tp, Enum):
        try:
            return tp(value)
        except ValueError:
            problems.append(_not_one_of(tp, value, loc))
            return value
    if tp is bool:
        if not isinstance(value, bool):
            problems.append(f"'{loc}': expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append(f"'{loc}': expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            problems.append(f"'{loc}': expected a number, got {value!r}")
            return value
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            problems.append(f"'{loc}': expected a string, got {value!r}")
        return value
    raise TypeError(f"schema: unsupported type {tp!r} at {loc}")  # a bug in our schema


def _bounds(meta: Any, value: Any, loc: str, problems: list[str]) -> None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "ge" in meta and value < meta["ge"]:
            problems.append(f"'{loc}': must be >= {meta['ge']}, got {value}")
        if "le" in meta and value > meta["le"]:
            problems.append(f"'{loc}': must be <= {meta['le']}, got {value}")
        if "gt" in meta and value <= meta["gt"]:
            problems.append(f"'{loc}': must be > {meta['gt']}, got {value}")
    if isinstance(value, list):
        if meta.get("nonempty") and not value:
            problems.append(f"'{loc}': must list at least one value, got []")
        if meta.get("unique"):
            seen = [_plain(v) for v in value]
            dup = sorted({repr(v) for v in seen if seen.count(v) > 1})
            if dup:
                problems.append(f"'{loc}': {', '.join(dup)} listed more than once")
    if isinstance(value, str) and "pattern" in meta and not re.match(meta["pattern"], value):
        problems.append(f"'{loc}': {value!r} does not match {meta['pattern']}")


@functools.cache
def _hints(cls: Any) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _build(cls: type[T], data: Any, loc: str, problems: list[str]) -> T:
    prefix = f"{loc}." if loc else ""
    if not isinstance(data, dict):
        problems.append(f"'{loc or '<root>'}': expected a table, got {type(data).__name__}")
        data = {}
    hints = _hints(cast(Any, cls))
    fields = [f for f in dataclasses.fields(cls) if f.init]  # type: ignore[arg-type]
    keys = {f.metadata.get("key", f.name): f for f in fields}
    for k in data:
        if k not in keys:
            problems.append(f"unknown key '{prefix}{k}'")
    kwargs: dict[str, Any] = {}
    for key, f in keys.items():
        if key not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                problems.append(f"missing key '{prefix}{key}'")
            continue
        n = len(problems)
        tp, raw = hints[f.name], data[key]
        if f.metadata.get("one_or_list") and not isinstance(raw, list):
            value = [_convert(get_args(tp)[0], raw, prefix + key, problems)]
        else:
            value = _convert(tp, raw, prefix + key, problems)
        if len(problems) == n:
            _bounds(f.metadata, value, prefix + key, problems)
        kwargs[f.name] = value
    try:
        obj = cls(**kwargs)
    except TypeError:
        return None  # type: ignore[return-value]  # missing keys, already reported
    check = getattr(obj, "_check", None)
    if check is not None and len(problems) == 0:
        problems.extend(f"'{prefix}{m}" if not m.startswith("'") else m for m in check())
    return obj


def build(cls: type[T], data: Any) -> T:
    """Validate ``data`` into ``cls``; raise SchemaErrors listing every problem."""
    problems: list[str] = []
    obj = _build(cls, data, "", problems)
    if problems:
        raise SchemaErrors(problems)
    return obj


def to_dict(obj: Any) -> dict[str, Any]:
    """The data form of a validated object (enum values, TOML key names)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = _plain(getattr(obj, f.name))
        if f.metadata.get("one_or_list") and isinstance(value, list) and len(value) == 1:
            value = value[0]  # the single-value form: its hash is what older versions recorded
        out[f.metadata.get("key", f.name)] = value
    return out


def _plain(v: Any) -> Any:
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return to_dict(v)
    if isinstance(v, Enum):
        return v.value
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v
