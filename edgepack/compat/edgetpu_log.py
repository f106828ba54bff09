"""Parse what edgetpu_compiler prints (stdout with -s) or writes (<model>_edgetpu.log).

Both forms carry the per-op table ("Operator  Count  Status"); stdout adds the summary lines
("Model compiled successfully in N ms.", memory use, subgraph and op counts). Every field is
optional: the parser returns what the text holds.
"""

from __future__ import annotations

import re
from typing import Any

MAPPED = "Mapped to Edge TPU"
_UNITS = {"B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}
_SIZE = r"([0-9.]+)\s*(B|KiB|MiB|GiB)"
_PATTERNS: dict[str, tuple[str, str]] = {
    # key: (regex, kind)
    "compiler_version": (r"Edge TPU Compiler version\s+(\S+)", "str"),
    "compile_ms": (r"Models? compiled successfully in\s+(\d+)\s*ms", "int"),
    "input_model": (r"^Input(?: model)?:\s*(\S.*?)\s*$", "str"),
    "input_size_bytes": (r"^Input size:\s*" + _SIZE, "size"),
    "output_model": (r"^Output(?: model)?:\s*(\S.*?)\s*$", "str"),
    "output_size_bytes": (r"^Output size:\s*" + _SIZE, "size"),
    "on_chip_memory_used_bytes": (
        r"On-chip memory used for caching model parameters:\s*" + _SIZE,
        "size",
    ),
    "on_chip_memory_remaining_bytes": (
        r"On-chip memory remaining for caching model parameters:\s*" + _SIZE,
        "size",
    ),
    "off_chip_memory_used_bytes": (
        r"Off-chip memory used for streaming uncached model parameters:\s*" + _SIZE,
        "size",
    ),
    "edgetpu_subgraphs": (r"Number of Edge TPU subgraphs:\s*(\d+)", "int"),
    "total_operations": (r"Total number of operations:\s*(\d+)", "int"),
    "operation_log": (r"Operation log:\s*(\S.*?)\s*$", "str"),
    "ops_on_edgetpu": (r"Number of operations that will run on Edge TPU:\s*(\d+)", "int"),
    "ops_on_cpu": (r"Number of operations that will run on CPU:\s*(\d+)", "int"),
}
_ROW = re.compile(r"^([A-Z][A-Z0-9_]*)\s+(\d+)\s+(\S.*?)\s*$")


def _size(number: str, unit: str) -> int:
    return round(float(number) * _UNITS[unit])


def parse_compiler_log(text: str) -> dict[str, Any]:
    """Fields of an edgetpu_compiler output or operation log, as a JSON-able dict."""
    out: dict[str, Any] = {}
    for key, (pattern, kind) in _PATTERNS.items():
        m = re.search(pattern, text, flags=re.MULTILINE)
        if not m:
            continue
        if kind == "int":
            out[key] = int(m.group(1))
        elif kind == "size":
            out[key] = _size(m.group(1), m.group(2))
        else:
            out[key] = m.group(1)
    rows: list[dict[str, Any]] = []
    in_table = False
    for line in text.splitlines():
        if re.match(r"^Operator\s+Count\s+Status\s*$", line.strip()):
            in_table = True
            continue
        if not in_table:
            continue
        m = _ROW.match(line.strip())
        if m:
            rows.append({"op": m.group(1), "count": int(m.group(2)), "status": m.group(3)})
        elif line.strip() and rows:
            in_table = False  # the first non-row line after the table ends it
    if rows:
        out["operations"] = rows
        mapped: dict[str, int] = {}
        not_mapped: dict[str, dict[str, int]] = {}
        for r in rows:
            if r["status"] == MAPPED:
                mapped[r["op"]] = mapped.get(r["op"], 0) + r["count"]
            else:
                by_status = not_mapped.setdefault(r["op"], {})
                by_status[r["status"]] = by_status.get(r["status"], 0) + r["count"]
        out["mapped"] = dict(sorted(mapped.items()))
        out["not_mapped"] = dict(sorted(not_mapped.items()))
        out["ops_mapped_in_table"] = sum(mapped.values())
        out["ops_in_table"] = sum(r["count"] for r in rows)
    if "Compilation failed" in text:
        out["success"] = False
    elif "compiled successfully" in text or "Compilation succeeded" in text:
        out["success"] = True
    return out
