"""`edgepack report`: one self-contained HTML file with plots of a release.

Everything is inline: the data as a JSON script element, the style, and a small script that
draws SVG plots. No network request, no CDN; the file can be attached to a CI run and opened
anywhere. Plots:

- latency distributions per package/variant from its bench/*.json results (every measured
  run; the build's host latency summary when a package has not been benchmarked),
- size by layer: weight bytes of each op, read from the .tflite,
- accuracy vs size vs latency across quantization modes,
- the compatibility map: per op, accelerator or CPU (manifest["compat"], when a pre-flight ran).

Package files are data from anywhere (a CI artifact, an edited manifest): :func:`collect` reads
every field through the typed accessors below, so the page only ever sees the types it draws;
a field of another type shows as not measured ("-"), and a gate without a numeric value and
limit never shows as passed.
"""

from __future__ import annotations

import html
import json
import math
import re
from pathlib import Path
from typing import Any

from edgepack import __version__
from edgepack.errors import PackageError, UsageError
from edgepack.manifest import model_path, read_manifest

RESULT_SCHEMA = "edgepack.bench-result/1"
MAX_SAMPLES = 1000  # per benchmark series drawn as dots (the box uses every run)


def _dict(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def _str(v: Any) -> str | None:
    return v if isinstance(v, str) else None


def _num(v: Any) -> int | float | None:
    """A finite number (not a bool), else None."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    try:
        return v if math.isfinite(v) else None
    except OverflowError:  # an integer too large for a float
        return None


def _numbers(v: Any) -> dict[str, int | float]:
    """The finite numbers of a JSON object."""
    return {k: n for k, x in _dict(v).items() if (n := _num(x)) is not None}


def find_packages(inputs: list[Path], allow_missing_shards: bool = False) -> list[Path]:
    """The packages of ``inputs`` (package folders, dist folders, folders of dist folders),
    merged across the shards of a matrix (edgepack.release.merge)."""
    return merged_packages(inputs, allow_missing_shards)[0]


def merged_packages(
    inputs: list[Path], allow_missing_shards: bool = False
) -> tuple[list[Path], Any]:
    """Packages plus the merge record; raises when shards disagree or (unless allowed) a
    shard is missing."""
    from edgepack.release.merge import merge

    merged = merge(inputs)
    bad = [*merged.conflicts, *merged.disagreements]
    if bad:
        raise PackageError(
            f"the dist folders do not merge: {'; '.join(bad)}",
            "a package must come from one build: download each shard's artifact once, from "
            "the same CI run",
        )
    if merged.missing_shards and not allow_missing_shards:
        raise PackageError(
            "; ".join(merged.missing_shards),
            "pass the dist folder of every shard (download every CI job's artifact), or "
            "--allow-missing-shards to report the shards that are there",
        )
    if not merged.packages:
        raise PackageError(
            "no packages in " + ", ".join(str(p) for p in inputs),
            "every shard built nothing; check the build jobs' logs",
        )
    return merged.packages, merged


def _layers(model_path: Path) -> list[dict[str, Any]]:
    """Weight bytes per op in graph order (ops without constant inputs are left out)."""
    from edgepack.tflite import read_model

    info = read_model(model_path)
    out = []
    for op in info.operators:
        consts = [t for t in info.op_inputs(op) if t.is_constant]
        size = sum(t.buffer_bytes for t in consts)
        if size == 0:
            continue
        main = max(consts, key=lambda t: t.buffer_bytes)
        out.append(
            {
                "index": op.index,
                "op": op.op,
                "bytes": size,
                "dtype": main.dtype,
                "tensor": main.name,
                "shape": list(main.shape),
            }
        )
    return out


def _bench(pkg: Path, model_sha: str | None) -> list[dict[str, Any]]:
    out = []
    folder = pkg / "bench"
    for p in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            doc = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):  # ValueError: JSON, UTF-8
            continue
        if not isinstance(doc, dict) or doc.get("schema") != RESULT_SCHEMA:
            continue
        h = _dict(doc.get("harness"))
        lat = [float(x) for x in _list(h.get("latencies_ms")) if _num(x) is not None]
        dev = _dict(doc.get("device"))
        names = (dev.get(k) for k in ("name", "hostname", "address", "serial"))
        device = next((n for n in names if isinstance(n, str) and n), None)
        out.append(
            {
                "file": p.name,
                "created_at": _str(doc.get("created_at")),
                "transport": _str(doc.get("transport")),
                "device": device or _str(doc.get("transport")) or "device",
                "cpu": _str(_dict(h.get("device")).get("cpu_model")),
                "threads": _num(_dict(h.get("config")).get("threads")),
                "delegate": _str(_dict(h.get("delegate")).get("requested")),
                "latencies_ms": lat[:MAX_SAMPLES],
                "count": len(lat),
                "stats": _numbers(h.get("stats")),
                "peak_rss_mb": _num(_dict(h.get("memory")).get("peak_rss_mb")),
                "stale": _dict(doc.get("package")).get("model_sha256") not in (None, model_sha),
            }
        )
    return sorted(out, key=lambda b: (b["created_at"] or "", b["file"]))


def _compat(manifest: dict[str, Any]) -> list[dict[str, Any]] | None:
    """manifest["compat"] as a list of rule tables with per-op placements (None: no
    pre-flight ran)."""
    c = manifest.get("compat")
    if not c:
        return None
    tables: list[tuple[str, Any]]
    if isinstance(c, list):
        tables = [("compat", {"ops": c})]
    elif isinstance(c, dict) and isinstance(c.get("results"), dict):
        tables = list(c["results"].items())
    elif isinstance(c, dict) and isinstance(c.get("ops"), list):
        tables = [(_str(c.get("rules")) or "compat", c)]
    else:
        return None
    out = []
    for name, t in tables:
        if not isinstance(t, dict):
            continue
        ops = [
            {
                "index": i if _num(o.get("index")) is None else o["index"],
                "op": _str(o.get("op")) or "?",
                "placement": _str(o.get("placement")) or "cpu",
                "reason": _str(o.get("reason")),
                "detail": _str(o.get("detail")) or "",
            }
            for i, o in enumerate(_list(t.get("ops")))
            if isinstance(o, dict)
        ]
        out.append(
            {
                "rules": name,
                "accelerator": _str(t.get("accelerator")) or name,
                "partitions": _num(t.get("partitions")),
                "mac_share": _num(t.get("mac_share")),
                "ops": ops,
            }
        )
    return out


def collect(inputs: list[Path], allow_missing_shards: bool = False) -> dict[str, Any]:
    """Everything the report shows, as JSON-able data."""
    packages = []
    found, merged = merged_packages(inputs, allow_missing_shards)
    for pkg in found:
        m = read_manifest(pkg)
        model = model_path(pkg, m)
        metrics = _dict(m.get("metrics"))
        acc = _dict(metrics.get("accuracy"))
        q = _dict(m.get("quantization"))
        mode = _str(q.get("mode"))
        sha = _str(_dict(m.get("model")).get("sha256"))
        host = _numbers(_dict(_dict(m.get("build")).get("host_latency")).get(mode or ""))
        guard = m.get("accuracy_gate")
        packages.append(
            {
                "id": pkg.name,
                "name": _str(m.get("name")),
                "target": _str(_dict(m.get("target")).get("name")),
                "mode": mode,
                "io_dtype": _str(q.get("io_dtype")),
                "io_layout": _str(q.get("io_layout")),
                "size_bytes": _num(metrics.get("size_bytes")),
                "accuracy": _num(acc.get("quantized")),
                "float_accuracy": _num(acc.get("float")),
                "accuracy_drop": _num(acc.get("drop_points")),
                "fidelity": _numbers(metrics.get("fidelity")) or None,
                "gates": [_gate(g) for g in _list(metrics.get("gates")) if isinstance(g, dict)],
                "release_gates": _release_gates(pkg, sha),
                # present but unreadable: shown as an accuracy gate that did not hold
                "accuracy_gate": None
                if guard is None
                else {
                    "status": _str(_dict(guard).get("status")) or "unreadable",
                    "reason": _str(_dict(guard).get("reason")),
                },
                "model_sha256": sha,
                "host_latency": host if {"min_ms", "median_ms", "p90_ms"} <= set(host) else None,
                "layers": _layers(model) if model.is_file() else [],
                "bench": _bench(pkg, sha),
                "compat": _compat(m),
            }
        )
    return {
        "edgepack_version": __version__,
        "packages": packages,
        "shards": None if merged.shard_count is None else merged.to_dict(),
    }


def _fmt_kb(n: Any) -> str:
    return f"{n / 1024:.1f} KB" if isinstance(n, (int, float)) else "-"


def _gate(g: dict[str, Any], release: bool = False) -> dict[str, Any]:
    """A gate of the build (metrics.gates: "passed") or of the release (.gates.json:
    "status"). A gate without a numeric value and limit never passed."""
    value, limit = _num(g.get("value")), _num(g.get("limit"))
    held = g.get("status") == "pass" if release else g.get("passed") is True
    return {
        "gate": _str(g.get("gate")) or "?",
        "value": value,
        "limit": limit,
        "op": _str(g.get("op")) or "<=",
        "passed": held and value is not None and limit is not None,
        "status": (_str(g.get("status")) or "?") if release else None,
    }


def _release_gates(pkg: Path, model_sha256: str | None) -> list[dict[str, Any]]:
    """The release gates a matrix build evaluated on this package (its ``.gates.json``
    record beside it), when the record is about these model bytes; else none."""
    from edgepack.release.matrix import gate_record_path

    path = gate_record_path(pkg)
    try:
        doc = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, ValueError, RecursionError):
        return []
    if model_sha256 is None or _dict(doc).get("model_sha256") != model_sha256:
        return []
    return [_gate(g, release=True) for g in _list(doc.get("gates")) if isinstance(g, dict)]


def _gate_badges(p: dict[str, Any]) -> str:
    """Each gate with its value and limit; failed gates, and an accuracy gate that did not
    run (no eval data, or opted out), in red."""
    badges = []
    for g in p["gates"]:
        ok = g["passed"]
        name = g["gate"]
        text = f"{name} {_show(g['value'])} {g['op']} {_show(g['limit'])}: "
        badges.append(
            f'<span class="gate {"pass" if ok else "fail"}" data-gate="{html.escape(name)}" '
            f'data-status="{"pass" if ok else "fail"}">'
            f"{html.escape(text)}{'pass' if ok else 'FAIL'}</span>"
        )
    shown = {g["gate"] for g in p["gates"]}
    for g in p["release_gates"]:
        name = g["gate"]
        if name in shown:
            continue
        ok = g["passed"]
        value = "no data" if g["value"] is None else g["value"]
        status = "pass" if ok else "FAIL" if g["status"] == "pass" else g["status"].upper()
        text = f"{name} {value} <= {_show(g['limit'])}: {status}"
        badges.append(
            f'<span class="gate {"pass" if ok else "fail"}" data-gate="{html.escape(name)}" '
            f'data-status="{"pass" if ok else "fail"}">{html.escape(text)}</span>'
        )
    guard = p["accuracy_gate"]
    if guard is not None and guard["status"] != "enforced":
        status = guard["status"]
        reason = f" ({guard['reason']})" if guard["reason"] else ""
        badges.append(
            '<span class="gate fail" data-gate="accuracy" data-status="missing">'
            f"accuracy gate: {html.escape(status + reason)}</span>"
        )
    return " ".join(badges) or "-"


def _show(v: Any) -> str:
    return "-" if v is None else str(v)


def _pct(v: int | float | None) -> str:
    return "-" if v is None else f"{v:.2f}%"


def _summary_table(data: dict[str, Any]) -> str:
    rows = []
    for p in data["packages"]:
        drop = p["accuracy_drop"]
        acc = (
            f"{_pct(p['float_accuracy'])} &rarr; {_pct(p['accuracy'])}"
            + ("" if drop is None else f" ({0.0 - drop:+.2f})")
            if p["accuracy"] is not None
            else "not measured"
        )
        bench = [b for b in p["bench"] if b["stats"].get("p50_ms") is not None]
        dev = (
            ", ".join(f"{b['stats']['p50_ms']:.3f} ms ({html.escape(b['device'])})" for b in bench)
            if bench
            else "-"
        )
        hl = p["host_latency"]
        host = "-" if hl is None else f"{hl['median_ms']:.3f} ms"
        gates = _gate_badges(p)
        rows.append(
            "<tr>"
            + "".join(
                f"<td>{c}</td>"
                for c in (
                    f"<b>{html.escape(p['id'])}</b>",
                    html.escape(_show(p["target"])),
                    html.escape(_show(p["mode"])),
                    html.escape(f"{_show(p['io_dtype'])} / {_show(p['io_layout'])}"),
                    _fmt_kb(p["size_bytes"]),
                    acc,
                    host,
                    dev,
                    gates,
                )
            )
            + "</tr>"
        )
    head = "".join(
        f"<th>{h}</th>"
        for h in (
            "package",
            "target",
            "quantization",
            "I/O",
            "size",
            "top-1 float &rarr; built",
            "host latency (build)",
            "device p50",
            "gates",
        )
    )
    table = f"<table class='summary'><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    return table + _shard_notes(data.get("shards"))


def _shard_notes(shards: dict[str, Any] | None) -> str:
    """Which shards of a --shard build the report merges, and what is missing."""
    if not shards:
        return ""
    found = ", ".join(f"{i}/{shards['count']}" for i in shards["found"])
    out = f'<p class="shards">merged from shard(s) {html.escape(found)} of {shards["count"]}</p>'
    return out + "".join(
        f'<p class="shards missing">{html.escape(str(m))}</p>'
        for m in (*shards["missing"], *shards["not_built"])
    )


_PLACEHOLDER = re.compile(r"%%([A-Z]+)%%")
# JSON inside <script>: no "<", ">" or "&" may reach the HTML parser ("</script>", "<!--"),
# and U+2028/U+2029 are escaped for old JavaScript parsers.
_SCRIPT_SAFE = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


def script_json(data: Any) -> str:
    """``data`` as JSON that is inert inside a <script> element."""
    return json.dumps(data, sort_keys=True, separators=(",", ":")).translate(_SCRIPT_SAFE)


def render_html(data: dict[str, Any], title: str = "edgepack report") -> str:
    values = {
        "TITLE": html.escape(title),
        "SUMMARY": _summary_table(data),
        "VERSION": html.escape(str(data.get("edgepack_version", ""))),
        "COUNT": str(len(data["packages"])),
        "DATA": script_json(data),
        "SCRIPT": _SCRIPT,
    }
    # One pass over the template only: text from the packages is never scanned for
    # placeholders, so a target named "%%DATA%%" stays that text.
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], _TEMPLATE)


def write_report(data: dict[str, Any], output: Path, title: str = "edgepack report") -> Path:
    if not data["packages"]:
        raise UsageError("no packages to report", "pass dist folders or package folders")
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.tmp")
    # errors="replace": package text may hold a lone surrogate (a JSON "\ud800" escape)
    tmp.write_text(render_html(data, title), encoding="utf-8", errors="replace")
    tmp.replace(output)
    return output


_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:">
<title>%%TITLE%%</title>
<style>
:root { --fg:#1d2430; --muted:#667085; --line:#e4e7ec; --bg:#f7f8fa; --card:#fff; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
       color:var(--fg); background:var(--bg); }
header { padding:20px 32px 8px; }
header h1 { margin:0 0 4px; font-size:22px; }
header p { margin:0; color:var(--muted); }
main { padding:8px 32px 40px; max-width:1280px; }
section { background:var(--card); border:1px solid var(--line); border-radius:10px;
          padding:16px 20px; margin:16px 0; }
section h2 { margin:0 0 2px; font-size:16px; }
section p.note { margin:0 0 10px; color:var(--muted); font-size:13px; }
table.summary { border-collapse:collapse; width:100%; font-size:13px; }
table.summary th, table.summary td { text-align:left; padding:6px 8px; border-bottom:1px solid var(--line); }
table.summary th { color:var(--muted); font-weight:600; }
.gate { display:inline-block; padding:0 6px; margin:1px; border-radius:8px; font-size:12px; }
.gate.pass { background:#dcfae6; color:#085d3a; } .gate.fail { background:#fee4e2; color:#912018; }
.grid { display:flex; flex-wrap:wrap; gap:16px; }
.grid > div { flex:1 1 380px; min-width:320px; }
.grid h3 { font-size:13px; margin:4px 0; }
svg { display:block; max-width:100%; height:auto; font:11px system-ui,"DejaVu Sans",sans-serif; }
svg text { fill:#344054; } svg .axis line, svg .axis path { stroke:#98a2b3; }
svg .gridline { stroke:#eef0f3; }
svg text.label { paint-order:stroke; stroke:#fff; stroke-width:3px; stroke-linejoin:round; }
.legend { display:flex; flex-wrap:wrap; gap:12px; font-size:12px; color:var(--muted); margin:6px 0; }
.legend i { display:inline-block; width:10px; height:10px; border-radius:2px; margin-right:4px; vertical-align:-1px; }
.empty { color:var(--muted); font-style:italic; padding:8px 0; }
footer { color:var(--muted); font-size:12px; padding:0 32px 24px; }
</style>
</head>
<body>
<header><h1>%%TITLE%%</h1><p>%%COUNT%% package(s) &middot; edgepack %%VERSION%%</p></header>
<main>
<section id="summary"><h2>Summary</h2>%%SUMMARY%%</section>
<section id="latency"><h2>Latency distributions</h2>
<p class="note">Every measured run of each benchmark result (dots), with the 25&ndash;75% box, the median line
and 5&ndash;95% whiskers. Packages without a benchmark show the build's host latency (min / median / p90).</p>
<div class="plot" data-slot="latency"></div></section>
<section id="tradeoff"><h2>Accuracy vs size vs latency</h2>
<p class="note">One point per package: model size (x), top-1 of the built model (y); the point's area grows with latency
(device p50 when benchmarked, else the build's host median). Colour: quantization mode.</p>
<div class="plot" data-slot="tradeoff"></div></section>
<section id="size"><h2>Size by layer</h2>
<p class="note">Weight bytes of each op, in graph order, read from the .tflite. Colour: weight dtype.</p>
<div class="plot grid" data-slot="size"></div></section>
<section id="compat"><h2>Compatibility map</h2>
<p class="note">Per op, in graph order: runs on the accelerator or falls back to the CPU (hover for the reason).
From the build's pre-flight.</p>
<div class="plot" data-slot="compat"></div></section>
</main>
<footer>Self-contained: no network requests. Data: the packages' manifest.json, model.tflite and bench/*.json.</footer>
<script type="application/json" id="edgepack-data">%%DATA%%</script>
<script>%%SCRIPT%%</script>
</body>
</html>
"""

_SCRIPT = r"""
(function () {
  "use strict";
  var NS = "http://www.w3.org/2000/svg";
  var DATA = JSON.parse(document.getElementById("edgepack-data").textContent);
  var PALETTE = ["#2e90fa", "#f79009", "#12b76a", "#9e77ed", "#f04438", "#0ba5ec", "#ee46bc", "#667085"];
  var MODE_COLOR = {"float32": "#667085", "float16": "#9e77ed", "dynamic-range": "#f79009", "full-int8": "#2e90fa"};
  var DTYPE_COLOR = {"INT8": "#2e90fa", "UINT8": "#0ba5ec", "INT32": "#98a2b3", "FLOAT16": "#9e77ed", "FLOAT32": "#f79009", "INT16": "#12b76a"};

  function el(tag, attrs, parent, text) {
    var n = document.createElementNS(NS, tag);
    for (var k in attrs) { if (attrs[k] !== undefined && attrs[k] !== null) n.setAttribute(k, attrs[k]); }
    if (text !== undefined) n.textContent = text;
    if (parent) parent.appendChild(n);
    return n;
  }
  function h(tag, cls, parent, text) {
    var n = document.createElement(tag);
    if (cls) n.className = cls;
    if (text !== undefined) n.textContent = text;
    if (parent) parent.appendChild(n);
    return n;
  }
  function tip(node, text) { el("title", {}, node, text); return node; }
  function slot(name) { return document.querySelector('[data-slot="' + name + '"]'); }
  function svg(parent, w, hgt, plot) {
    return el("svg", {"viewBox": "0 0 " + w + " " + hgt, "width": w, "height": hgt, "data-plot": plot, "role": "img"}, parent);
  }
  function niceTicks(lo, hi, n) {
    var span = hi - lo || 1, step = Math.pow(10, Math.floor(Math.log10(span / n)));
    var err = span / n / step;
    if (err >= 7.5) step *= 10; else if (err >= 3.5) step *= 5; else if (err >= 1.5) step *= 2;
    var out = [];
    for (var v = Math.ceil(lo / step) * step; v <= hi + 1e-9; v += step) out.push(+v.toFixed(10));
    return out;
  }
  function fmt(v) { if (v === 0) return "0"; return Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 10 ? v.toFixed(1) : Math.abs(v) >= 1 ? v.toFixed(2) : v.toFixed(3); }
  function quantile(sorted, q) {
    if (!sorted.length) return NaN;
    var pos = (sorted.length - 1) * q, lo = Math.floor(pos), hi = Math.ceil(pos);
    return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
  }
  function kb(b) { return (b / 1024).toFixed(1) + " KB"; }
  function bytes(b) { return b >= 1024 ? (b / 1024).toFixed(1) + " KB" : b + " B"; }
  function legend(parent, items) {
    var lg = h("div", "legend", parent);
    items.forEach(function (it) { var s = h("span", "", lg); var i = h("i", "", s); i.style.background = it[1]; s.appendChild(document.createTextNode(it[0])); });
  }

  // ---------------------------------------------------------------- latency distributions
  function drawLatency() {
    var series = [];
    DATA.packages.forEach(function (p, pi) {
      var color = PALETTE[pi % PALETTE.length];
      p.bench.forEach(function (b) {
        var st = b.stats;
        // without the runs, the box needs the result's whole summary
        if (!b.latencies_ms.length && [st.min_ms, st.p50_ms, st.p90_ms, st.p99_ms].indexOf(undefined) >= 0) return;
        var s = b.latencies_ms.slice().sort(function (a, c) { return a - c; });
        series.push({pkg: p.id, label: p.id, sub: b.device + (b.threads ? ", " + b.threads + " thr" : "") + (b.delegate ? ", " + b.delegate : "") + (b.stale ? " (older model)" : ""),
          samples: b.latencies_ms, color: color, kind: "bench",
          q05: s.length ? quantile(s, 0.05) : st.min_ms, q25: s.length ? quantile(s, 0.25) : st.p50_ms,
          q50: s.length ? quantile(s, 0.5) : st.p50_ms, q75: s.length ? quantile(s, 0.75) : st.p90_ms,
          q95: s.length ? quantile(s, 0.95) : st.p99_ms, count: b.count});
      });
      if (!p.bench.length && p.host_latency) {
        var hl = p.host_latency;
        series.push({pkg: p.id, label: p.id, sub: "build host, " + (hl.runs || "?") + " runs (summary only)", samples: [], color: color, kind: "host",
          q05: hl.min_ms, q25: hl.min_ms, q50: hl.median_ms, q75: hl.p90_ms, q95: hl.p90_ms, count: hl.runs});
      }
    });
    var root = slot("latency");
    if (!series.length) { h("div", "empty", root, "No benchmark results and no host latency in these packages: run `edgepack bench` on them."); return; }
    var lo = Infinity, hi = -Infinity;
    series.forEach(function (s) {
      s.samples.concat([s.q05, s.q95]).forEach(function (v) { if (v != null && isFinite(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); } });
    });
    // A log axis when runs span more than a decade (a slow outlier, or float vs int8 models).
    var logScale = lo > 0 && hi / lo > 8;
    var W = 1100, L = 260, R = 110, row = 46, T = 10, B = 36, H = T + B + row * series.length;
    var g = svg(root, W, H, "latency");
    g.setAttribute("data-series", series.length);
    g.setAttribute("data-scale", logScale ? "log" : "linear");
    var x, ticks;
    if (logScale) {
      var a = Math.log10(lo * 0.9), c = Math.log10(hi * 1.1);
      x = function (v) { return L + (Math.log10(Math.max(v, 1e-9)) - a) / (c - a) * (W - L - R); };
      ticks = [];
      for (var e = Math.floor(a); e <= Math.ceil(c); e++) {
        [1, 2, 5].forEach(function (m) { var v = m * Math.pow(10, e); if (Math.log10(v) >= a && Math.log10(v) <= c) ticks.push(v); });
      }
    } else {
      lo = Math.max(0, lo - (hi - lo) * 0.05); hi = hi + (hi - lo) * 0.05 || lo + 1;
      x = function (v) { return L + (v - lo) / (hi - lo) * (W - L - R); };
      ticks = niceTicks(lo, hi, 8);
    }
    ticks.forEach(function (t) {
      el("line", {x1: x(t), x2: x(t), y1: T, y2: H - B, "class": "gridline"}, g);
      el("text", {x: x(t), y: H - B + 16, "text-anchor": "middle"}, g, fmt(t));
    });
    el("text", {x: L + (W - L - R) / 2, y: H - 4, "text-anchor": "middle"}, g, "latency per inference (ms" + (logScale ? ", log scale)" : ")"));
    var seed = 1;
    function rnd() { seed = (seed * 16807) % 2147483647; return seed / 2147483647; }
    series.forEach(function (s, i) {
      var cy = T + row * i + row / 2;
      var grp = el("g", {"data-series": s.pkg, "data-kind": s.kind, "data-count": s.count || 0, "data-p50": s.q50}, g);
      el("text", {x: L - 10, y: cy - 3, "text-anchor": "end", "font-weight": "600"}, grp, s.label);
      el("text", {x: L - 10, y: cy + 11, "text-anchor": "end", fill: "#667085"}, grp, s.sub);
      s.samples.forEach(function (v) {
        el("circle", {cx: x(v), cy: cy + (rnd() - 0.5) * row * 0.55, r: 2.2, fill: s.color, "fill-opacity": 0.4, "class": "sample"}, grp);
      });
      el("line", {x1: x(s.q05), x2: x(s.q95), y1: cy, y2: cy, stroke: "#344054"}, grp);
      [s.q05, s.q95].forEach(function (v) { el("line", {x1: x(v), x2: x(v), y1: cy - 6, y2: cy + 6, stroke: "#344054"}, grp); });
      tip(el("rect", {x: x(s.q25), y: cy - 11, width: Math.max(1.5, x(s.q75) - x(s.q25)), height: 22, fill: s.color, "fill-opacity": 0.25, stroke: s.color, "class": "box"}, grp),
          s.label + " \u2014 " + s.sub + "\np50 " + fmt(s.q50) + " ms, box " + fmt(s.q25) + "\u2013" + fmt(s.q75) + " ms, whiskers " + fmt(s.q05) + "\u2013" + fmt(s.q95) + " ms");
      el("line", {x1: x(s.q50), x2: x(s.q50), y1: cy - 11, y2: cy + 11, stroke: s.color, "stroke-width": 3, "class": "median"}, grp);
      el("text", {x: x(s.q95) + 8, y: cy + 4, "font-weight": "600", "class": "label"}, grp, "p50 " + fmt(s.q50) + " ms");
    });
  }

  // ---------------------------------------------------------------- accuracy vs size vs latency
  function drawTradeoff() {
    var root = slot("tradeoff");
    var pts = DATA.packages.filter(function (p) { return p.size_bytes != null; }).map(function (p) {
      // One latency per package: its single-threaded benchmark when there is one.
      var b = p.bench.filter(function (r) { return r.stats.p50_ms != null && !r.stale; })
        .sort(function (r, q) { return (r.threads || 99) - (q.threads || 99); });
      var lat = b.length ? b[0].stats.p50_ms : (p.host_latency ? p.host_latency.median_ms : null);
      return {p: p, size: p.size_bytes / 1024, acc: p.accuracy, lat: lat, src: b.length ? b[0].device + " p50" : "host median"};
    });
    var withAcc = pts.filter(function (d) { return d.acc != null; });
    if (!withAcc.length) { h("div", "empty", root, "No accuracy in these packages (build them with --eval data)."); return; }
    var W = 1100, H = 380, L = 70, R = 200, T = 20, B = 46;
    var g = svg(root, W, H, "tradeoff");
    var sx = withAcc.map(function (d) { return d.size; }), sy = withAcc.map(function (d) { return d.acc; });
    var smin = Math.min.apply(null, sx), smax = Math.max.apply(null, sx);
    var x0 = Math.max(0, smin - (smax - smin) * 0.2 - smax * 0.1), x1 = smax + (smax - smin) * 0.2 + smax * 0.1;
    var y0 = Math.min.apply(null, sy), y1 = Math.max.apply(null, sy);
    var pad = Math.max(0.5, (y1 - y0) * 0.25); y0 -= pad; y1 = Math.min(100, y1 + pad);
    var x = function (v) { return L + (v - x0) / (x1 - x0) * (W - L - R); };
    var y = function (v) { return H - B - (v - y0) / (y1 - y0) * (H - T - B); };
    niceTicks(x0, x1, 8).forEach(function (t) { el("line", {x1: x(t), x2: x(t), y1: T, y2: H - B, "class": "gridline"}, g); el("text", {x: x(t), y: H - B + 16, "text-anchor": "middle"}, g, fmt(t)); });
    niceTicks(y0, y1, 6).forEach(function (t) { el("line", {x1: L, x2: W - R, y1: y(t), y2: y(t), "class": "gridline"}, g); el("text", {x: L - 8, y: y(t) + 4, "text-anchor": "end"}, g, fmt(t) + "%"); });
    el("text", {x: L + (W - L - R) / 2, y: H - 6, "text-anchor": "middle"}, g, "model size (KB)");
    el("text", {x: 14, y: T + (H - T - B) / 2, "text-anchor": "middle", transform: "rotate(-90 14 " + (T + (H - T - B) / 2) + ")"}, g, "top-1 (%)");
    var lats = withAcc.map(function (d) { return d.lat; }).filter(function (v) { return v != null; });
    var lmax = lats.length ? Math.max.apply(null, lats) : 1;
    var placed = [];
    withAcc.slice().sort(function (a, b) { return y(a.acc) - y(b.acc) || a.size - b.size; }).forEach(function (d) {
      var r = d.lat != null ? 6 + 16 * Math.sqrt(d.lat / lmax) : 6;
      var c = MODE_COLOR[d.p.mode] || "#344054";
      var grp = el("g", {"data-package": d.p.id, "data-mode": d.p.mode, "data-size-kb": d.size.toFixed(2), "data-accuracy": d.acc, "data-latency-ms": d.lat}, g);
      tip(el("circle", {cx: x(d.size), cy: y(d.acc), r: r, fill: c, "fill-opacity": 0.55, stroke: c, "class": "point"}, grp),
          d.p.id + ": " + d.p.mode + ", " + d.size.toFixed(1) + " KB, top-1 " + d.acc.toFixed(2) + "%" + (d.lat != null ? ", " + fmt(d.lat) + " ms (" + d.src + ")" : ""));
      // Labels never overlap: push a label down until it clears the ones already placed.
      var lx = x(d.size) + r + 6, ly = y(d.acc) + 4;
      var text = d.p.id + (d.lat != null ? " · " + fmt(d.lat) + " ms" : "");
      var w = text.length * 6.2;
      for (var k = 0; k < placed.length; k++) {
        var q = placed[k];
        if (lx < q.x + q.w && q.x < lx + w && Math.abs(ly - q.y) < 15) { ly = q.y + 15; k = -1; }
      }
      placed.push({x: lx, y: ly, w: w});
      if (Math.abs(ly - (y(d.acc) + 4)) > 1) el("line", {x1: x(d.size) + r * 0.7, y1: y(d.acc), x2: lx - 2, y2: ly - 4, stroke: "#98a2b3"}, grp);
      el("text", {x: lx, y: ly}, grp, text);
    });
    var modes = {}; withAcc.forEach(function (d) { modes[d.p.mode] = MODE_COLOR[d.p.mode] || "#344054"; });
    legend(root, Object.keys(modes).map(function (m) { return [m, modes[m]]; }));
  }

  // ---------------------------------------------------------------- size by layer
  function drawSize() {
    var root = slot("size");
    var any = false, dtypes = {};
    DATA.packages.forEach(function (p) {
      if (!p.layers.length) return;
      any = true;
      var box = h("div", "", root);
      var total = p.layers.reduce(function (a, l) { return a + l.bytes; }, 0);
      h("h3", "", box, p.id + " \u2014 " + kb(total) + " of weights in " + p.layers.length + " ops");
      var W = 520, L = 170, R = 70, row = 18, T = 4, H = T + row * p.layers.length + 6;
      var g = svg(box, W, H, "size-by-layer");
      g.setAttribute("data-package", p.id);
      var max = Math.max.apply(null, p.layers.map(function (l) { return l.bytes; }));
      p.layers.forEach(function (l, i) {
        var yv = T + i * row, c = DTYPE_COLOR[l.dtype] || "#344054";
        dtypes[l.dtype] = c;
        var grp = el("g", {"data-op": l.op, "data-bytes": l.bytes}, g);
        el("text", {x: L - 6, y: yv + 12, "text-anchor": "end"}, grp, "#" + l.index + " " + l.op);
        tip(el("rect", {x: L, y: yv + 2, width: Math.max(1, (W - L - R) * l.bytes / max), height: row - 5, fill: c, rx: 2, "class": "bar"}, grp),
            "#" + l.index + " " + l.op + ": " + bytes(l.bytes) + " (" + l.dtype + " " + JSON.stringify(l.shape) + ", " + l.tensor + ")");
        el("text", {x: L + Math.max(1, (W - L - R) * l.bytes / max) + 4, y: yv + 12, fill: "#667085"}, grp, bytes(l.bytes));
      });
    });
    if (!any) { h("div", "empty", root, "No weights found in these models."); return; }
    legend(root.parentNode, Object.keys(dtypes).map(function (d) { return [d.toLowerCase() + " weights", dtypes[d]]; }));
  }

  // ---------------------------------------------------------------- compatibility map
  function drawCompat() {
    var root = slot("compat");
    DATA.packages.forEach(function (p) {
      var wrap = h("div", "", root);
      h("h3", "", wrap, p.id);
      if (!p.compat) { var e = h("div", "empty", wrap, "no pre-flight"); e.setAttribute("data-compat", "none"); return; }
      p.compat.forEach(function (t) {
        var n = t.ops.length, cell = 16, gap = 3, perRow = Math.max(1, Math.min(n, 60));
        var rows = Math.ceil(n / perRow) || 1;
        var W = Math.max(300, 150 + perRow * (cell + gap)), H = Math.max(40, rows * (cell + gap) + 12);
        var g = svg(wrap, W, H, "compat");
        g.setAttribute("data-package", p.id); g.setAttribute("data-rules", t.rules);
        var onAcc = t.ops.filter(function (o) { return o.placement === "accelerator"; }).length;
        el("text", {x: 0, y: 13, "font-weight": "600"}, g, t.accelerator);
        el("text", {x: 0, y: 27, fill: "#667085"}, g, onAcc + "/" + n + " ops" + (t.mac_share != null ? ", " + (100 * t.mac_share).toFixed(0) + "% MACs" : ""));
        t.ops.forEach(function (o, i) {
          var acc = o.placement === "accelerator";
          tip(el("rect", {x: 150 + (i % perRow) * (cell + gap), y: 4 + Math.floor(i / perRow) * (cell + gap), width: cell, height: cell, rx: 3,
                          fill: acc ? "#12b76a" : "#f04438", "data-op": o.op, "data-placement": o.placement, "class": "op"}, g),
              "#" + o.index + " " + o.op + ": " + (acc ? "accelerator" : "CPU" + (o.reason ? " \u2014 " + o.reason + (o.detail ? " (" + o.detail + ")" : "") : "")));
        });
      });
    });
    legend(root, [["runs on the accelerator", "#12b76a"], ["falls back to the CPU", "#f04438"]]);
  }

  var failures = [];
  [drawLatency, drawTradeoff, drawSize, drawCompat].forEach(function (f) {
    try { f(); } catch (err) { failures.push(f.name + ": " + err); }
  });
  document.body.setAttribute("data-rendered", failures.length ? "error" : "ok");
  if (failures.length) { document.body.setAttribute("data-render-errors", failures.join(" | ")); }
})();
"""
