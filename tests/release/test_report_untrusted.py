"""`edgepack report` reads package files as data: a manifest, a benchmark result, a release
gate record or a shard summary holding a field of any type gives a report (the field shown as
not measured) or a one-line error, never a traceback; no text from a package leaves its
place in the HTML, and a gate without numbers never shows as passed."""

from __future__ import annotations

import html
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from edgepack.release.matrix import gate_record_path
from edgepack.release.shard import SUMMARY_SCHEMA
from tests.json_mutations import VALUES, mutated, nodes
from tests.release.benchdocs import bench_package
from tests.release.conftest import Release, copy_package
from tests.release.test_report import DomIndex, chromium

pytestmark = pytest.mark.slow  # needs the session's real build

SHARD = "edgepack-shard-1-of-1.json"
REFUSED_MODEL = "is not a path inside the package"


@pytest.fixture(scope="module")
def base(release: Release, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dist folder with every kind of file the report reads: the rpi4 package (eval
    accuracy, build gates, accuracy gate, pre-flight compat map), a benchmark result measured
    by the real harness, the matrix build's gate record and a shard summary (1 of 1)."""
    d = tmp_path_factory.mktemp("untrusted") / "dist"
    pkg = copy_package(release.package("rpi4"), d / "digits-rpi4")
    shutil.copy(gate_record_path(release.package("rpi4")), gate_record_path(pkg))
    bench_package(pkg, runs=5)
    summary = {
        "schema": SUMMARY_SCHEMA,
        "shard": {"index": 1, "count": 1},
        "config": None,
        "matrix": [{"id": "digits/rpi4", "model": "digits", "shard": 1, "package": pkg.name}],
        "targets": [{"id": "digits/rpi4", "status": "ok", "package": pkg.name}],
    }
    (d / SHARD).write_text(json.dumps(summary))
    return d


def files(dist: Path) -> dict[str, Path]:
    pkg = dist / "digits-rpi4"
    (result,) = (pkg / "bench").glob("*.json")
    return {
        "manifest": pkg / "manifest.json",
        "bench": result,
        "gates": gate_record_path(pkg),
        "shard": dist / SHARD,
    }


def refusal(kind: str, path: tuple[str | int, ...], value: Any) -> str | None:
    """The error a mutation must give (None: the report is written; a model_file that names
    no file of the package has no size-by-layer plot)."""
    if kind == "manifest" and path[0] == "model_file" and not isinstance(value, str):
        return REFUSED_MODEL
    if kind == "manifest" and path[0] == "schema_version":
        return "this edgepack reads 1"
    if kind == "shard" and (path[0] in ("schema", "shard") or path[::2] == ("matrix", "shard")):
        return "is not an edgepack shard summary"
    if kind == "shard" and path[0] == "matrix" and len(path) <= 2:
        return "is not an edgepack shard summary"
    return None


def _strict(text: str) -> Any:
    def no_constant(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=no_constant)


def page_data(page: str) -> dict[str, Any]:
    """The JSON island the page's script draws from, parsed as strictly as a browser does."""
    m = re.search(r'<script type="application/json" id="edgepack-data">(.*?)</script>', page, re.S)
    assert m is not None
    data: dict[str, Any] = _strict(m.group(1))
    return data


def _num(v: Any) -> bool:
    return v is None or type(v) in (int, float)


def _str(v: Any) -> bool:
    return v is None or isinstance(v, str)


def contract_problems(data: dict[str, Any]) -> list[str]:
    """Fields whose type is not the one the page's script draws (it would throw)."""
    bad = []
    for p in data["packages"]:
        bad += [
            k
            for k in ("size_bytes", "accuracy", "float_accuracy", "accuracy_drop")
            if not _num(p[k])
        ]
        bad += [k for k in ("name", "target", "mode", "io_dtype", "io_layout") if not _str(p[k])]
        for g in p["gates"] + p["release_gates"]:
            if not (isinstance(g["gate"], str) and _num(g["value"]) and _num(g["limit"])):
                bad.append(f"gate {g}")
            if g["passed"] and (g["value"] is None or g["limit"] is None):
                bad.append(f"gate passed without numbers {g}")
        hl = p["host_latency"]
        if hl is not None and not (all(map(_num, hl.values())) and hl["median_ms"] is not None):
            bad.append(f"host_latency {hl}")
        for b in p["bench"]:
            ok = (
                isinstance(b["device"], str)
                and all(type(x) is float for x in b["latencies_ms"])
                and all(v is not None and _num(v) for v in b["stats"].values())
                and _num(b["threads"])
                and _str(b["delegate"])
            )
            bad += [] if ok else [f"bench {b}"]
        for t in p["compat"] or []:
            ok = isinstance(t["accelerator"], str) and _num(t["mac_share"])
            for o in t["ops"]:
                ok = ok and isinstance(o["op"], str) and isinstance(o["placement"], str)
                ok = ok and type(o["index"]) in (int, float) and _str(o["reason"])
            bad += [] if ok else [f"compat {t}"]
        guard = p["accuracy_gate"]
        if guard is not None and not (isinstance(guard["status"], str) and _str(guard["reason"])):
            bad.append(f"accuracy_gate {guard}")
    return bad


@pytest.mark.parametrize("value", VALUES, ids=["str", "null", "list", "object"])
@pytest.mark.parametrize("kind", ["manifest", "bench", "gates", "shard"])
def test_any_field_of_any_package_file_may_hold_any_type(
    base: Path,
    kind: str,
    value: Any,
    tmp_path: Path,
    cli,  # type: ignore[no-untyped-def]
) -> None:
    """Every node of the file (containers too) replaced in turn: the report is written with
    the types its script draws, or the command exits 2 with the error that names the field."""
    dist = shutil.copytree(base, tmp_path / "dist")
    f = files(dist)[kind]
    doc = json.loads(f.read_text())
    out = tmp_path / "report.html"
    problems: list[tuple[Any, ...]] = []
    cases = list(nodes(doc))
    assert len(cases) > {"manifest": 200, "bench": 50, "gates": 10, "shard": 10}[kind]
    for path in cases:
        f.write_text(json.dumps(mutated(doc, path, value)))
        out.unlink(missing_ok=True)
        try:
            r = cli("report", dist, "-o", out)
        except Exception as exc:
            problems.append((path, "raised", repr(exc)))
            continue
        want = refusal(kind, path, value)
        if "Traceback" in r.err or r.code != (0 if want is None else 2):
            problems.append((path, r.code, r.err[-300:]))
        elif want is not None:
            if not (r.err.startswith("error: ") and want in r.err and "\nhint: " in r.err):
                problems.append((path, "message", r.err))
            if out.exists():
                problems.append((path, "wrote a report"))
        else:
            bad = contract_problems(page_data(out.read_text()))
            if bad:
                problems.append((path, bad))
    assert problems == []


@pytest.mark.parametrize(
    "model_file", ["../outside.tflite", "{abs}", "sub/../../outside.tflite", "link.tflite"]
)
def test_a_model_file_outside_the_package_is_refused(
    base: Path,
    model_file: str,
    tmp_path: Path,
    cli,  # type: ignore[no-untyped-def]
) -> None:
    dist = shutil.copytree(base, tmp_path / "dist")
    pkg = dist / "digits-rpi4"
    outside = shutil.copy(pkg / "model.tflite", tmp_path / "outside.tflite")
    (pkg / "link.tflite").symlink_to(outside)
    m = json.loads((pkg / "manifest.json").read_text())
    m["model_file"] = model_file.format(abs=outside)
    (pkg / "manifest.json").write_text(json.dumps(m))
    out = tmp_path / "report.html"
    r = cli("report", dist, "-o", out)
    assert r.code == 2 and not out.exists()
    assert r.err == (
        f"error: {pkg / 'manifest.json'}: model_file {m['model_file']!r} is not a path inside "
        "the package\n"
        'hint: model_file names a file in the package folder (e.g. "model.tflite"); rebuild '
        "the package with `edgepack build`\n"
    )


EVIL = "</script><script>alert(1)</script><!--"


def test_script_tags_in_package_text_stay_text(
    base: Path,
    tmp_path: Path,
    cli,  # type: ignore[no-untyped-def]
) -> None:
    dist = shutil.copytree(base, tmp_path / "dist")
    fs = files(dist)
    m = json.loads(fs["manifest"].read_text())
    m["target"]["name"] = m["quantization"]["mode"] = m["name"] = EVIL
    m["metrics"]["gates"][0]["gate"] = EVIL
    m["accuracy_gate"] = {"status": EVIL, "reason": EVIL}
    fs["manifest"].write_text(json.dumps(m))
    result = json.loads(fs["bench"].read_text())
    result["device"]["name"] = EVIL
    fs["bench"].write_text(json.dumps(result))
    out = tmp_path / "report.html"
    r = cli("report", dist, "-o", out)
    assert r.code == 0, r.err
    page = out.read_text()
    assert page.count("<script") == 2 and page.count("</script>") == 2  # the page's own
    assert "<!--" not in page
    escaped = html.escape(EVIL)
    assert f"<td>{escaped}</td>" in page  # target, then mode
    assert page.count(escaped) == 7  # target, mode, gate (name, data-gate), guard, device
    # The JSON island holds the text intact for the page's script.
    (p,) = page_data(page)["packages"]
    assert p["target"] == p["mode"] == p["name"] == p["gates"][0]["gate"] == EVIL
    assert p["bench"][0]["device"] == EVIL


def test_a_gate_without_numbers_never_shows_as_passed(
    base: Path,
    tmp_path: Path,
    cli,  # type: ignore[no-untyped-def]
) -> None:
    dist = shutil.copytree(base, tmp_path / "dist")
    fs = files(dist)
    m = json.loads(fs["manifest"].read_text())
    drop, kb, ram = m["metrics"]["gates"]
    assert [g["passed"] for g in (drop, kb, ram)] == [True, True, True]
    drop["value"], kb["limit"] = "0.0", None  # still "passed": true
    fs["manifest"].write_text(json.dumps(m))
    record = json.loads(fs["gates"].read_text())
    record["gates"] = [
        {"gate": "max_ram_mb_release", "limit": 9.0, "value": "1", "status": "pass"},
        {"gate": "max_size_release", "limit": 9.0, "value": 1.0, "status": "pass"},
    ]
    fs["gates"].write_text(json.dumps(record))
    out = tmp_path / "report.html"
    r = cli("report", dist, "-o", out)
    assert r.code == 0, r.err
    dom = DomIndex()
    dom.feed(out.read_text())
    status = {a["data-gate"]: a["data-status"] for a in dom.find("span", **{"class": "gate fail"})}
    status |= {a["data-gate"]: a["data-status"] for a in dom.find("span", **{"class": "gate pass"})}
    assert status == {
        "max_accuracy_drop": "fail",
        "max_model_kb": "fail",
        "max_ram_mb": "pass",  # its value and limit are numbers
        "max_ram_mb_release": "fail",
        "max_size_release": "pass",
    }
    page = out.read_text()
    assert f"max_accuracy_drop - &lt;= {drop['limit']}: FAIL" in page
    assert f"max_model_kb {kb['value']} &lt;= -: FAIL" in page
    assert "max_ram_mb_release no data &lt;= 9.0: FAIL" in page


def test_numbers_that_are_not_finite_and_text_that_is_not_unicode(
    base: Path,
    tmp_path: Path,
    cli,  # type: ignore[no-untyped-def]
) -> None:
    """NaN, Infinity and integers too large for a float are not measured; a lone surrogate
    (valid JSON, not encodable as UTF-8) is written as "?"; a shard count of 10**12 is read
    as such, without a loop over it."""
    dist = shutil.copytree(base, tmp_path / "dist")
    fs = files(dist)
    m = json.loads(fs["manifest"].read_text())
    acc = m["metrics"]["accuracy"]
    acc["quantized"], acc["float"], m["metrics"]["size_bytes"] = float("nan"), float("inf"), 10**400
    m["target"]["name"] = "rpi\ud8004"
    fs["manifest"].write_text(json.dumps(m))
    summary = json.loads(fs["shard"].read_text())
    summary["shard"]["count"] = 10**12
    fs["shard"].write_text(json.dumps(summary))
    out = tmp_path / "report.html"
    r = cli("report", dist, "-o", out, "--json")
    assert r.code == 0, r.err
    (p,) = _strict(r.out)["packages"]
    assert (p["accuracy"], p["float_accuracy"], p["size_bytes"]) == (None, None, None)
    page = out.read_text(encoding="utf-8")
    assert "<td>rpi?4</td>" in page and "<td>not measured</td>" in page
    assert f"merged from shard(s) 1/{10**12} of {10**12}" in page
    assert page_data(page)["packages"][0]["target"] == "rpi\ud8004"  # escaped in the JSON


@pytest.mark.integration
def test_a_package_of_wrong_types_draws_every_plot(
    base: Path,
    tmp_path: Path,
    cli,  # type: ignore[no-untyped-def]
) -> None:
    """The fields the page's script reads, each of another type, in a real browser: what
    cannot be drawn is left out, the rest is drawn."""
    dist = shutil.copytree(base, tmp_path / "dist")
    fs = files(dist)

    def edit(path: Path, *changes: tuple[tuple[str | int, ...], Any]) -> None:
        doc = json.loads(path.read_text())
        for where, value in changes:
            doc = mutated(doc, where, value)
        path.write_text(json.dumps(doc))

    # Not benchmarked: drawn from its host latency summary.
    host = copy_package(dist / "digits-rpi4", dist / "digits-host-summary")
    edit(host / "manifest.json", (("build", "host_latency", "full-int8", "runs"), [1]))
    # Neither its runs nor a whole summary, nor a host latency summary: no latency series.
    nothing = shutil.copytree(dist / "digits-rpi4", dist / "digits-unmeasured")
    edit(
        next((nothing / "bench").glob("*.json")),
        (("harness", "latencies_ms"), "x"),
        (("harness", "stats", "p99_ms"), None),
    )
    edit(nothing / "manifest.json", (("build", "host_latency", "full-int8", "min_ms"), "x"))
    edit(
        fs["manifest"],
        (("metrics", "accuracy", "float"), "99"),
        (("compat", "results", "xnnpack", "mac_share"), "1.0"),
        (("compat", "results", "xnnpack", "accelerator"), {"a": 1}),
        (("compat", "results", "xnnpack", "ops", 0), {"op": [1], "placement": None, "index": "x"}),
        (("quantization", "mode"), {"a": 1}),
    )
    edit(
        fs["bench"],
        (("harness", "stats", "p90_ms"), "x"),
        (("harness", "latencies_ms", 0), None),
        (("harness", "config", "threads"), {"a": 1}),
        (("device",), {"name": [1]}),
    )
    out = tmp_path / "report.html"
    r = cli("report", dist, "-o", out)
    assert r.code == 0, r.err
    dom = DomIndex()
    dom.feed(chromium(["--dump-dom", out.as_uri()], tmp_path / "profile").stdout)
    (body,) = dom.find("body")
    assert body.get("data-rendered") == "ok", body.get("data-render-errors")
    series = sorted((a["data-series"], a["data-kind"]) for a in dom.find("g") if a.get("data-kind"))
    assert series == [("digits-host-summary", "host"), ("digits-rpi4", "bench")]
    assert len(dom.find("svg", data_plot="tradeoff")) == 1
    assert len(dom.find("svg", data_plot="size-by-layer")) == 3
    assert len(dom.find("svg", data_plot="compat")) == 3
    (op,) = [a for a in dom.find("rect") if a.get("data-op") == "?"]
    assert op["data-placement"] == "cpu"
