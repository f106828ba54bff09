"""Matrix builds from edgepack.toml, gates, and reproducibility (real builds)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from edgepack.manifest import read_manifest
from edgepack.release.config import Gates
from edgepack.release.matrix import GateResult, GateStatus, evaluate_gates
from tests.release.benchdocs import bench_package
from tests.release.conftest import DIGITS, Release, copy_package, run_cli

pytestmark = pytest.mark.slow


def _without_build(manifest: dict) -> dict:
    return {k: v for k, v in manifest.items() if k != "build"}


def test_matrix_builds_every_target_and_keeps_them_when_one_fails(release: Release) -> None:
    # tiny's 10 KB budget fails inside its build: gate failure -> exit 3, others kept.
    assert release.code == 3, release.stderr
    assert sorted(p.name for p in release.dist.iterdir()) == [
        "digits-host",
        "digits-host.gates.json",  # the release gates evaluated on each written package
        "digits-rpi4",
        "digits-rpi4.gates.json",
    ]
    record = json.loads((release.dist / "digits-rpi4.gates.json").read_text())
    assert record["model_sha256"] == read_manifest(release.package("rpi4"))["model"]["sha256"]
    latency = [g for g in record["gates"] if g["gate"].startswith("max_latency_ms")]
    assert [(g["status"], g["value"], g["limit"]) for g in latency] == [("no data", None, 1000)]
    for t in ("rpi4", "host"):
        names = sorted(p.name for p in release.package(t).iterdir())
        # model_float32.tflite: the float reference `edgepack analyze` reads
        assert names == ["manifest.json", "model.tflite", "model_float32.tflite", "summary.md"]
    rows = {line.split()[0]: line for line in release.stdout.splitlines()[2:5]}
    # rpi4's max_latency_ms has no result from an rpi4 device: the gate fails closed.
    assert rows["rpi4"].split()[1] == "full-int8" and rows["rpi4"].endswith("gate failed")
    assert rows["host"].split()[1] == "dynamic-range" and rows["host"].endswith("ok")
    assert rows["tiny"].endswith("gate failed") and "model_kb fail" in rows["tiny"]
    assert "accuracy_drop" not in rows["tiny"]  # it stopped on the profile's size budget
    assert "99.11%" in rows["rpi4"]
    assert "model_kb pass" in rows["rpi4"] and "latency_ms no data" in rows["rpi4"]
    assert "budget gate failed: max_model_kb" in release.stderr
    assert (
        "rpi4: gate failed: max_latency_ms (p50): no benchmark result from a rpi4 device for "
        "this model: run `edgepack bench dist/digits-rpi4 --host user@<rpi4 device>` on a rpi4 "
        "device, then build again; or set allow_missing_latency = true in [gates] "
        "(--allow-missing-latency) to release without a latency figure"
    ) in release.stderr
    assert "wrote 2 package(s)" in release.stdout


def test_the_export_is_shared_by_every_target(release: Release) -> None:
    rpi4 = read_manifest(release.package("rpi4"))
    host = read_manifest(release.package("host"))
    # Both packages carry the one load/export record (same timings to the millisecond).
    for stage in ("load", "export"):
        assert rpi4["build"]["stage_seconds"][stage] == host["build"]["stage_seconds"][stage]
    assert [s["name"] for s in rpi4["stages"]] == [
        "load",
        "export",
        "convert",
        "quantize",
        "validate",
        "preflight",
    ]
    # The manifest records the source as written in edgepack.toml: no temp paths.
    assert rpi4["source"]["spec"] == "model.py:build_model"
    assert str(release.project) not in json.dumps(rpi4)


def test_rebuild_is_byte_identical_and_keeps_valid_bench_results(
    release: Release, tmp_path: Path
) -> None:
    pkg = release.package("rpi4")
    old = tmp_path / "old"
    shutil.copytree(pkg, old)
    bench = bench_package(pkg, runs=30)  # a run on this machine, not on an rpi4

    # The explicit opt-out releases without a latency figure; the host run never counts.
    code, out, err = run_cli(
        [
            *("build", "--target", "rpi4", "--force", "--jobs", "1", "--json"),
            "--allow-missing-latency",
        ],
        release.project,
    )
    assert code == 0, err
    res = json.loads(out)
    (t,) = res["targets"]
    assert t["status"] == "ok" and t["restored_bench"] == [bench.name]
    latency = next(g for g in t["gates"] if g["gate"].startswith("max_latency_ms"))
    assert latency["status"] == "skipped" and latency["value"] is None
    assert latency["detail"] == (
        f"no benchmark result from a rpi4 device for this model (ignored bench/{bench.name}: "
        "measured over local: rpi4 devices are benchmarked over ssh) (opted out)"
    )

    # Reproducible: same model bytes, same summary, manifests differ only in "build".
    assert (pkg / "model.tflite").read_bytes() == (old / "model.tflite").read_bytes()
    assert (pkg / "summary.md").read_bytes() == (old / "summary.md").read_bytes()
    new_m, old_m = read_manifest(pkg), read_manifest(old)
    assert _without_build(new_m) == _without_build(old_m)
    assert new_m["build"]["created_at"] >= old_m["build"]["created_at"]
    assert "ms" not in (pkg / "summary.md").read_text()  # no timings in summary.md
    _check_data_record(new_m["data"], release.project)


def _check_data_record(record: dict[str, dict[str, object]], project: Path) -> None:
    """The manifest names the data files by sha256 and the samples used by their indices."""
    import numpy as np

    from edgepack.data import indices_sha256, sample_indices
    from edgepack.manifest import sha256_file

    assert sorted(record) == ["calibration", "evaluation"]
    for purpose, name in (("calibration", "calib.npz"), ("evaluation", "eval.npz")):
        rec = record[purpose]
        with np.load(project / name) as z:
            total, labels = z["x"].shape[0], z["y"] if "y" in z.files else None
        assert (rec["file"], rec["sha256"], rec["of"]) == (name, sha256_file(project / name), total)
        n = rec["samples"]
        assert isinstance(n, int) and 1 <= n <= total
        if n == total:
            idx = np.arange(total)
            assert (rec["selection"], rec["seed"]) == ("all", None)
        else:
            idx = sample_indices(total, n, 0, labels)
            assert rec["seed"] == 0
        assert rec["indices_sha256"] == indices_sha256(idx)


def test_single_target_command_line_build_matches_the_matrix(
    release: Release, tmp_path: Path
) -> None:
    out_dir = tmp_path / "single"
    code, out, err = run_cli(
        [
            "build",
            "model.py:build_model",
            "--weights",
            "weights.pt",
            "--input-shape",
            "1x1x32x32",
            "--target",
            "host",
            "--name",
            "digits",
            "--calibration",
            "calib.npz",
            "--eval",
            "eval.npz",
            "--max-accuracy-drop",
            "1.0",
            "--latency-runs",
            "20",
            "-o",
            str(out_dir),
        ],
        release.project,
    )
    assert code == 0, err
    assert "top-1" in out and f"wrote {out_dir}/" in out
    matrix = release.package("host")
    assert (out_dir / "model.tflite").read_bytes() == (matrix / "model.tflite").read_bytes()
    assert _without_build(read_manifest(out_dir)) == _without_build(read_manifest(matrix))


def test_release_gates_on_a_built_package(release: Release, tmp_path: Path) -> None:
    pkg = copy_package(release.package("rpi4"), tmp_path / "p")
    m = read_manifest(pkg)

    def only(gates: Gates, result: Path | None = None) -> GateResult:
        out = evaluate_gates(gates, m, pkg, result)
        # The accuracy gate ran inside the build; it is reported from the manifest.
        assert out[0].gate == "max_accuracy_drop" and out[0].status is GateStatus.PASS
        (g,) = out[1:]
        return g

    size = only(Gates(max_model_kb=100))
    kb = m["metrics"]["size_bytes"] / 1024
    assert 100 < kb < 120  # the int8 digits CNN
    assert size.status is GateStatus.FAIL and size.value == round(kb, 2)
    ram = only(Gates(max_ram_mb=1))
    assert ram.status is GateStatus.PASS and ram.value == m["metrics"]["est_ram_mb_upper"]
    lat = only(Gates(max_latency_ms=5))
    assert lat.status is GateStatus.NO_DATA  # nothing benchmarked yet: fails the release
    assert "run `edgepack bench " in lat.detail and "--host user@<rpi4 device>`" in lat.detail
    assert only(Gates(max_latency_ms=5, allow_missing_latency=True)).status is GateStatus.SKIPPED
    # A run on this machine saved into the rpi4 package is not an rpi4 measurement.
    result = bench_package(pkg, runs=20)
    lat = only(Gates(max_latency_ms=1e6))
    assert lat.status is GateStatus.NO_DATA and lat.value is None
    assert f"ignored bench/{result.name}: measured over local" in lat.detail

    # The same harness document as if measured over SSH: the device facts decide. Every
    # variant is written as an explicit result file (gates.latency_result).
    doc = json.loads(result.read_text())
    p90 = doc["harness"]["stats"]["p90_ms"]

    def as_result(**changes: object) -> Path:
        d = json.loads(json.dumps(doc))
        d["transport"] = "ssh"
        d["harness"]["device"]["machine"] = "aarch64"
        for key, value in changes.items():
            if key == "machine":
                d["harness"]["device"]["machine"] = value
            elif key == "model_sha256":
                d["package"]["model_sha256"] = value
            else:
                d[key] = value
        out = tmp_path / f"r{len(list(tmp_path.glob('r*.json')))}.json"
        out.write_text(json.dumps(d))
        return out

    lat = only(Gates(max_latency_ms=p90 / 2, latency_stat="p90"), as_result())
    assert lat.status is GateStatus.FAIL and lat.value == p90
    assert only(Gates(max_latency_ms=1e6), as_result()).status is GateStatus.PASS
    for changes, why in (
        ({"machine": "x86_64"}, "measured on a x86_64 device over ssh, the target is aarch64"),
        ({"target": "host"}, "measured for target 'host', not 'rpi4'"),
        ({"profile_sha256": "0" * 64}, "measured with another version of the target profile"),
        ({"profile_sha256": None}, "does not record its target profile"),
        ({"model_sha256": "0" * 64}, "measured on another model build"),
        ({"transport": "adb"}, "measured over adb: rpi4 devices are benchmarked over ssh"),
    ):
        lat = only(Gates(max_latency_ms=1e6), as_result(**changes))
        assert lat.status is GateStatus.NO_DATA and why in lat.detail, (changes, lat.detail)


def test_a_local_run_counts_for_the_host_package(release: Release, tmp_path: Path) -> None:
    """The host profile is the machine running edgepack: a local run is its measurement."""
    pkg = copy_package(release.package("host"), tmp_path / "h")
    m = read_manifest(pkg)
    result = bench_package(pkg, runs=20)
    p50 = json.loads(result.read_text())["harness"]["stats"]["p50_ms"]
    gates = evaluate_gates(Gates(max_latency_ms=1e6), m, pkg, None)
    (lat,) = [g for g in gates if g.gate.startswith("max_latency_ms")]
    assert lat.status is GateStatus.PASS and lat.value == p50
    assert lat.detail == f"bench/{result.name}"


def test_release_size_gate_fails_inside_the_build_and_writes_nothing(tmp_path: Path) -> None:
    """A size/RAM gate from edgepack.toml is checked inside the build, like the profile's
    budgets: a package over budget is never written."""
    from tests.release.conftest import make_project

    config = """\
[model]
source = "model.py:build_model"
weights = "weights.pt"
input_shapes = ["1x1x32x32"]
name = "digits"
[build]
latency_runs = 0
[[targets]]
target = "host"
quantization = "float32"
[targets.gates]
max_model_kb = 100
"""
    project = make_project(tmp_path / "repo", config)
    code, out, err = run_cli(["build", "--json"], project)
    assert code == 3, err
    (t,) = json.loads(out)["targets"]
    assert t["status"] == "gate failed"
    assert "budget gate failed: max_model_kb" in t["message"] and "> 100.0" in t["message"]
    assert "no package was written" in t["message"]
    assert not (project / "dist" / "digits-host").exists()
    assert not (DIGITS / "dist").exists()


CRASH_ONCE = '''

import multiprocessing as _mp
import os as _os
from pathlib import Path as _Path

_FLAG = _Path(__file__).with_name("crashed.flag")


def build_model_crashing_once():
    """Kills the first build worker that loads it (once): a segfault stand-in."""
    if _mp.parent_process() is not None:
        try:
            fd = _os.open(_FLAG, _os.O_CREAT | _os.O_EXCL | _os.O_WRONLY)
        except FileExistsError:
            return build_model()
        _os.close(fd)
        _os._exit(70)
    return build_model()
'''


def test_a_dying_worker_does_not_lose_the_other_targets(tmp_path: Path) -> None:
    from tests.release.conftest import make_project

    config = """\
[model]
source = "model.py:build_model_crashing_once"
weights = "weights.pt"
input_shapes = ["1x1x32x32"]
name = "digits"
[build]
latency_runs = 0
jobs = 2
[[targets]]
target = "host"
quantization = "float32"
[[targets]]
target = "host"
variant = "b"
quantization = "float32"
"""
    project = make_project(tmp_path / "repo", config)
    with open(project / "model.py", "a") as f:
        f.write(CRASH_ONCE)
    code, out, err = run_cli(["build", "--json"], project)
    assert (project / "crashed.flag").exists()  # a worker really died
    assert code == 0, err
    res = json.loads(out)
    assert [(t["id"], t["status"]) for t in res["targets"]] == [("host", "ok"), ("host-b", "ok")]
    for name in ("digits-host", "digits-host-b"):
        assert (project / "dist" / name / "model.tflite").is_file()
