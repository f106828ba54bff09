"""A --force rebuild of a single-target package keeps what was added after the build."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from edgepack.manifest import read_manifest
from edgepack.release.config import Gates
from edgepack.release.matrix import GateStatus, evaluate_gates
from tests.conftest import DIGITS, CliResult
from tests.release.benchdocs import bench_package

pytestmark = pytest.mark.slow


def _build(cli: Callable[..., CliResult], out: Path, mode: str, *extra: str) -> CliResult:
    return cli(
        "build",
        f"{DIGITS}/model.py:build_model",
        "--weights",
        DIGITS / "weights.pt",
        "--input-shape",
        "1x1x32x32",
        "--target",
        "host",
        "--quantization",
        mode,
        "--latency-runs",
        "1",
        "-o",
        out,
        *extra,
    )


def test_force_keeps_bench_and_analysis_results(
    cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    pkg = tmp_path / "digits-host"
    assert _build(cli, pkg, "float32").code == 0
    result = bench_package(pkg, runs=5)  # the real harness, saved as `edgepack bench` does
    measured = result.read_bytes()
    (pkg / "analysis").mkdir()
    (pkg / "analysis" / "layers.csv").write_text("rank,op\n1,CONV_2D\n")
    old_sha = read_manifest(pkg)["model"]["sha256"]
    assert json.loads(measured)["package"]["model_sha256"] == old_sha
    gates = Gates(max_latency_ms=1e6)

    def latency(manifest: dict) -> GateStatus:
        (g,) = [g for g in evaluate_gates(gates, manifest, pkg, None) if "latency" in g.gate]
        return g.status

    assert latency(read_manifest(pkg)) is GateStatus.PASS  # counted for its own model

    r = _build(cli, pkg, "dynamic-range", "--force")  # another model
    assert r.code == 0, r.err
    new = read_manifest(pkg)
    assert new["quantization"]["mode"] == "dynamic-range" and new["model"]["sha256"] != old_sha
    # Nothing lost: the result and the analysis are in the new package, byte for byte ...
    assert (pkg / "bench" / result.name).read_bytes() == measured
    assert (pkg / "analysis" / "layers.csv").read_text() == "rank,op\n1,CONV_2D\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["digits-host"]  # nothing aside
    # ... but the result measured the previous model: no gate counts it for this one.
    assert latency(new) is GateStatus.NO_DATA
