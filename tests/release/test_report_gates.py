"""The report's gate column, rendered by headless Chromium: every gate with its value and
limit, passed gates green, failed gates and an accuracy gate that never ran in red."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest

from edgepack.manifest import read_manifest, write_manifest
from tests.release.conftest import Release, copy_package, run_cli
from tests.release.test_report import DomIndex, chromium

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def _badges(dom_text: str) -> list[tuple[str, str, str, str]]:
    """(class, data-gate, data-status, text) of every gate badge in the rendered DOM."""
    return [
        (m[0], m[1], m[2], html.unescape(m[3]))
        for m in re.findall(
            r'<span class="(gate [a-z]+)" data-gate="([^"]*)" data-status="([a-z]+)">([^<]*)</span>',
            dom_text,
        )
    ]


def test_gates_show_value_and_limit_and_failures_in_red(release: Release, tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    rpi4 = copy_package(release.package("rpi4"), dist / "digits-rpi4")
    host = copy_package(release.package("host"), dist / "digits-host")
    # The host package as a build without --eval records it (no accuracy gate ran), with a
    # size gate that failed: the report must show both in red.
    m = read_manifest(host)
    m["accuracy_gate"] = {"status": "not measured", "reason": "no --eval data"}
    m["metrics"]["gates"] = [{"gate": "max_model_kb", "limit": 1.0, "value": 99.5, "passed": False}]
    write_manifest(host / "manifest.json", m)

    out = tmp_path / "report.html"
    code, _, err = run_cli(["report", str(dist), "-o", str(out)], tmp_path)
    assert code == 0, err
    dom_text = chromium(["--dump-dom", out.as_uri()], tmp_path / "profile").stdout
    dom = DomIndex()
    dom.feed(dom_text)
    (body,) = dom.find("body")
    assert body.get("data-rendered") == "ok", body.get("data-render-errors")

    badges = _badges(dom_text)
    expected = [
        (
            "gate pass",
            g["gate"],
            "pass",
            f"{g['gate']} {g['value']} {g.get('op', '<=')} {g['limit']}: pass",
        )
        for g in read_manifest(rpi4)["metrics"]["gates"]
    ]
    assert [g for g in expected if g[1] == "max_accuracy_drop"]  # the build's accuracy gate
    expected += [
        ("gate fail", "max_model_kb", "fail", "max_model_kb 99.5 <= 1.0: FAIL"),
        ("gate fail", "accuracy", "missing", "accuracy gate: not measured (no --eval data)"),
    ]
    assert sorted(badges) == sorted(expected)
    # Red is red: the stylesheet gives failed badges the red palette.
    assert ".gate.fail { background:#fee4e2; color:#912018; }" in dom_text


def test_release_gates_of_a_matrix_build_are_shown(release: Release, tmp_path: Path) -> None:
    """The matrix build's release gates (its .gates.json record beside the package): rpi4's
    latency gate had no result from an rpi4 device, so the report shows it red with its
    limit; a record about other model bytes is ignored."""
    import json
    import shutil

    from edgepack.release.matrix import gate_record_path

    dist = tmp_path / "dist"
    rpi4 = copy_package(release.package("rpi4"), dist / "digits-rpi4")
    shutil.copy(gate_record_path(release.package("rpi4")), gate_record_path(rpi4))
    record = json.loads(gate_record_path(rpi4).read_text())
    (latency,) = [g for g in record["gates"] if g["gate"].startswith("max_latency_ms")]
    host = copy_package(release.package("host"), dist / "digits-host")
    stale = {**record, "package": host.name, "model_sha256": "0" * 64}
    gate_record_path(host).write_text(json.dumps(stale))

    out = tmp_path / "report.html"
    code, _, err = run_cli(["report", str(dist), "-o", str(out)], tmp_path)
    assert code == 0, err
    dom_text = chromium(["--dump-dom", out.as_uri()], tmp_path / "profile").stdout
    badges = _badges(dom_text)
    # "no data", or "skipped" when another test rebuilt the release with the opt-out: red
    assert latency["status"] in ("no data", "skipped") and latency["value"] is None
    shown = [b for b in badges if b[1] == latency["gate"]]
    text = f"{latency['gate']} no data <= {latency['limit']}: {latency['status'].upper()}"
    assert shown == [("gate fail", latency["gate"], "fail", text)]  # once: rpi4 only
    passed = [g for g in record["gates"] if g["status"] == "pass"]
    assert passed  # the size gate held
    for g in passed:
        assert (
            "gate pass",
            g["gate"],
            "pass",
            f"{g['gate']} {g['value']} <= {g['limit']}: pass",
        ) in badges
