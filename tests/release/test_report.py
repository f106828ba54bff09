"""`edgepack report`: data collection, the self-contained HTML, and a real headless Chromium
that runs the report's inline script and must find every plot in the rendered DOM."""

from __future__ import annotations

import html
import json
import re
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from edgepack.manifest import read_manifest, write_manifest
from edgepack.release.report import collect
from edgepack.tflite import read_model
from tests.release.benchdocs import bench_package
from tests.release.conftest import Release, copy_package, run_cli

pytestmark = pytest.mark.slow  # needs the session's real build

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def dist(release: Release, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's packages plus benchmark results (measured on this host) and, for rpi4,
    a pre-flight compatibility map in the compat stage's format."""
    d = tmp_path_factory.mktemp("report") / "dist"
    for t in ("rpi4", "host"):
        copy_package(release.package(t), d / f"digits-{t}")
    bench_package(d / "digits-rpi4", runs=80)
    bench_package(d / "digits-rpi4", runs=40, threads=2)
    bench_package(d / "digits-host", runs=60)
    m = read_manifest(d / "digits-rpi4")
    info = read_model(d / "digits-rpi4" / "model.tflite")
    ops = [
        {
            "index": o.index,
            "op": o.op,
            "dtypes": "INT8",
            "placement": "cpu" if o.op in ("QUANTIZE", "DEQUANTIZE") else "accelerator",
            "macs": 0,
            **(
                {"reason": "op not supported", "detail": "float boundary"}
                if o.op in ("QUANTIZE", "DEQUANTIZE")
                else {}
            ),
        }
        for o in info.operators
    ]
    m["compat"] = {
        "model": "model.tflite",
        "ok": False,
        "results": {"xnnpack": {"rules": "xnnpack", "accelerator": "XNNPACK", "ops": ops}},
    }
    write_manifest(d / "digits-rpi4" / "manifest.json", m)
    # A package built for a target without rule tables has no pre-flight.
    h = read_manifest(d / "digits-host")
    h.pop("compat", None)
    write_manifest(d / "digits-host" / "manifest.json", h)
    return d


def test_collect_reads_manifests_models_and_bench_results(dist: Path) -> None:
    data = collect([dist])
    by_id = {p["id"]: p for p in data["packages"]}
    assert list(by_id) == ["digits-host", "digits-rpi4"]
    rpi4 = by_id["digits-rpi4"]
    assert rpi4["mode"] == "full-int8" and rpi4["accuracy"] == pytest.approx(99.1111)
    assert sorted((len(b["latencies_ms"]), b["threads"]) for b in rpi4["bench"]) == [
        (40, 2),
        (80, 1),
    ]
    assert all(b["transport"] == "local" and b["stats"]["p50_ms"] > 0 for b in rpi4["bench"])
    assert not any(b["stale"] for b in rpi4["bench"])
    # Size by layer: the weight bytes of each op, in graph order, from the .tflite.
    layers = rpi4["layers"]
    assert [layer["op"] for layer in layers] == [
        "RESHAPE",
        "DEPTHWISE_CONV_2D",
        "CONV_2D",
        "CONV_2D",
        "MEAN",
        "FULLY_CONNECTED",
    ]
    conv = max(layers, key=lambda layer: layer["bytes"])
    assert conv["op"] == "CONV_2D" and conv["dtype"] == "INT8"
    assert conv["bytes"] >= 64 * 128 * 9  # int8 weights of the 64->128 3x3 conv
    assert (
        sum(layer["bytes"] for layer in layers)
        <= read_manifest(dist / "digits-rpi4")["model"]["weight_bytes"]
    )
    assert [o["placement"] for o in rpi4["compat"][0]["ops"]].count("cpu") == 2
    assert by_id["digits-host"]["compat"] is None


def test_the_html_is_self_contained(dist: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    code, stdout, err = run_cli(["report", str(dist), "-o", str(out)], tmp_path)
    assert code == 0, err
    assert stdout.strip() == f"wrote {out}: 2 package(s), 3 benchmark result(s)"
    html = out.read_text()
    # No external resource of any kind; the only URL is the SVG namespace string.
    assert re.findall(r"https?://[^\s\"'<>]+", html) == ["http://www.w3.org/2000/svg"]
    assert not re.search(r"<(link|img|iframe)\b|\bsrc=|@import|url\(", html)
    assert "default-src 'none'" in html  # CSP: the browser may not fetch anything
    assert "<svg" not in html  # every plot is drawn by the inline script


def test_report_json_and_errors(dist: Path, tmp_path: Path) -> None:
    code, out, _ = run_cli(
        ["report", str(dist / "digits-rpi4"), "-o", str(tmp_path / "r.html"), "--json"], tmp_path
    )
    assert code == 0
    doc = json.loads(out)
    assert [p["id"] for p in doc["packages"]] == ["digits-rpi4"]
    code, _, err = run_cli(["report", str(tmp_path / "empty"), "-o", "r.html"], tmp_path)
    assert code == 2 and "not found" in err
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli(["report", str(tmp_path / "empty"), "-o", "r.html"], tmp_path)
    assert code == 2 and "no packages in" in err


# --------------------------------------------------------------------------- the browser


class DomIndex(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))

    def find(self, tag: str, **attrs: str) -> list[dict[str, str | None]]:
        want = {k.replace("_", "-"): v for k, v in attrs.items()}
        return [
            a for t, a in self.elements if t == tag and all(a.get(k) == v for k, v in want.items())
        ]


def chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess[str]:
    if not CHROMIUM.is_file():
        pytest.fail("chromium is not installed: run scripts/setup.d/40-chromium.sh (as root)")
    argv = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--host-resolver-rules=MAP * ~NOTFOUND",  # whatever is attempted never leaves the host
        *args,
    ]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=True)


def page_requests(netlog: Path) -> list[str]:
    """URLs the page itself asked for, from Chromium's net log."""
    log = json.loads(netlog.read_text())
    start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    return [
        str(e["params"].get("url"))
        for e in log["events"]
        if e["type"] == start
        and isinstance(e.get("params"), dict)
        and "url" in e["params"]
        and e["params"].get("initiator") != "not an origin"
    ]


@pytest.mark.integration
def test_the_network_check_catches_a_page_that_fetches(tmp_path: Path) -> None:
    page = tmp_path / "bad.html"
    page.write_text(
        '<img src="http://example.invalid/x.png"><script>fetch("https://example.invalid/y")'
        ".catch(() => {})</script>"
    )
    netlog = tmp_path / "netlog.json"
    chromium([f"--log-net-log={netlog}", "--dump-dom", page.as_uri()], tmp_path / "profile")
    assert sorted(page_requests(netlog)) == [
        "http://example.invalid/x.png",
        "https://example.invalid/y",
    ]


@pytest.mark.integration
def test_headless_chromium_renders_every_plot(dist: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    code, _, err = run_cli(["report", str(dist), "-o", str(out)], tmp_path)
    assert code == 0, err
    netlog = tmp_path / "netlog.json"
    dom_text = chromium(
        [f"--log-net-log={netlog}", "--dump-dom", out.as_uri()], tmp_path / "profile"
    ).stdout
    dom = DomIndex()
    dom.feed(dom_text)
    (body,) = dom.find("body")
    assert body.get("data-rendered") == "ok", body.get("data-render-errors")

    data = collect([dist])
    n_runs = sum(len(b["latencies_ms"]) for p in data["packages"] for b in p["bench"])
    # Latency: one series per benchmark result, one dot per measured run.
    (lat,) = dom.find("svg", data_plot="latency")
    assert lat["data-series"] == "3"
    assert len(dom.find("circle", **{"class": "sample"})) == n_runs == 180
    series = dom.find("g", data_kind="bench")
    assert sorted(s["data-series"] or "" for s in series) == [
        "digits-host",
        "digits-rpi4",
        "digits-rpi4",
    ]
    assert {s["data-count"] for s in series} == {"80", "40", "60"}
    # Accuracy vs size vs latency: one point per package, at its real values.
    (_trade,) = dom.find("svg", data_plot="tradeoff")
    points = {g["data-package"]: g for g in dom.find("g", data_mode="full-int8")}
    points.update({g["data-package"]: g for g in dom.find("g", data_mode="dynamic-range")})
    assert set(points) == {"digits-rpi4", "digits-host"}
    rpi4 = next(p for p in data["packages"] if p["id"] == "digits-rpi4")
    assert points["digits-rpi4"]["data-size-kb"] == f"{rpi4['size_bytes'] / 1024:.2f}"
    single_thread = next(b for b in rpi4["bench"] if b["threads"] == 1)
    assert float(points["digits-rpi4"]["data-latency-ms"] or 0) == pytest.approx(
        single_thread["stats"]["p50_ms"]
    )
    # Size by layer: one chart per package, one bar per op with weights.
    assert len(dom.find("svg", data_plot="size-by-layer")) == 2
    assert len(dom.find("rect", **{"class": "bar"})) == 2 * len(rpi4["layers"])
    # Compatibility map for the package with a pre-flight, "no pre-flight" for the other.
    (compat,) = dom.find("svg", data_plot="compat")
    assert compat["data-package"] == "digits-rpi4"
    cells = dom.find("rect", **{"class": "op"})
    assert len(cells) == len(rpi4["compat"][0]["ops"])
    assert [c["data-placement"] for c in cells].count("cpu") == 2
    assert len(dom.find("div", data_compat="none")) == 1

    # No network: the page started no request (the browser's own service pings are
    # "not an origin"; anything the page asks for has the file page as its initiator).
    assert page_requests(netlog) == []

    shot = tmp_path / "report.png"
    chromium(
        ["--hide-scrollbars", "--window-size=1280,2400", f"--screenshot={shot}", out.as_uri()],
        tmp_path / "profile",
    )
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000


INJECTIONS = {
    # each, if it ever ran, would add <div id="pwned-N"> to the page
    "name": "</script><script>document.body.append(Object.assign("
    "document.createElement('div'),{id:'pwned-1'}))</script>",
    "target": "%%DATA%%",
    "mode": "%%SCRIPT%%<img src=x onerror=\"this.insertAdjacentHTML('afterend','<div id=pwned-2>')\">",
    "device": "<img src=x onerror=\"document.title='pwned-3'\">%%SUMMARY%%\u2028",
    "title": "%%DATA%%</title><script>document.title='pwned-4'</script>",
}


@pytest.mark.integration
def test_package_data_cannot_inject_into_the_report(dist: Path, tmp_path: Path) -> None:
    """Placeholders, tags and script ends in package data stay text in a real browser."""
    d = tmp_path / "dist"
    copy_package(dist / "digits-host", d / "digits-host")
    evil = copy_package(dist / "digits-rpi4", d / "%%DATA%%<img src=x onerror=alert(1)>")
    m = read_manifest(evil)
    m["name"], m["target"]["name"] = INJECTIONS["name"], INJECTIONS["target"]
    m["quantization"]["mode"] = INJECTIONS["mode"]
    write_manifest(evil / "manifest.json", m)
    bench_package(evil, runs=20)
    (result,) = (evil / "bench").glob("*.json")
    doc = json.loads(result.read_text())
    doc["device"]["name"] = INJECTIONS["device"]
    result.write_text(json.dumps(doc))

    out = tmp_path / "report.html"
    code, _, err = run_cli(
        ["report", str(d), "-o", str(out), "--title", INJECTIONS["title"]], tmp_path
    )
    assert code == 0, err
    html_text = out.read_text()
    # the template's placeholders were each filled once; the data's copies are still there
    assert html_text.count("<script") == 2  # the JSON island and the page's own script
    dom_text = chromium(["--dump-dom", out.as_uri()], tmp_path / "profile").stdout
    dom = DomIndex()
    dom.feed(dom_text)
    assert not any(a.get("id", "").startswith("pwned") for _, a in dom.elements)
    (title,) = re.findall(r"<title>(.*?)</title>", dom_text.split("</head>")[0], re.S)
    assert title == html.escape(INJECTIONS["title"], quote=False)
    assert len(dom.find("script")) == 2 and not dom.find("img")
    (body,) = dom.find("body")
    assert body.get("data-rendered") == "ok", body.get("data-render-errors")
    # the page's script read the data back intact and drew every plot
    assert dom.find("svg", data_plot="latency") and dom.find("svg", data_plot="tradeoff")
    assert len(dom.find("svg", data_plot="size-by-layer")) == 2
    (point,) = dom.find("g", data_mode=INJECTIONS["mode"])  # the data came back intact
    assert point["data-package"] == evil.name
    assert {s["data-series"] for s in dom.find("g", data_kind="bench")} >= {evil.name}
    # the summary shows the data as text
    assert f"<td>{html.escape(INJECTIONS['target'])}</td>" in html_text
    assert html.escape(INJECTIONS["device"]) in html_text
