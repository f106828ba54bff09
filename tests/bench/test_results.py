"""Result documents and the noise-aware baseline rule, on synthetic harness documents."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from edgepack.bench.results import (
    Verdict,
    compare,
    load_baseline,
    make_result,
    parse_threshold,
    raise_on_regression,
    result_filename,
    save_result,
)
from edgepack.errors import RegressionError, UsageError


def harness(p50: float, p90: float, threads: int = 1, cpu: str = "Cortex-A72") -> dict:
    return {
        "schema": "edgepack.bench/1",
        "stats": {"p50_ms": p50, "p90_ms": p90, "count": 100},
        "config": {"threads": threads, "delegate": "xnnpack"},
        "device": {"machine": "aarch64", "cpu_model": cpu},
    }


def verdicts(base: dict, cur: dict, threshold: float = 0.10) -> list[str]:
    return [m.verdict.value for m in compare(base, cur, threshold).metrics]


def test_clear_regression() -> None:
    # +20% on a quiet device (spread 0.2 ms): beyond both the 10% threshold and the spread.
    c = compare(harness(10.0, 10.2), harness(12.0, 12.2), 0.10)
    assert [m.verdict for m in c.metrics] == [Verdict.REGRESSED, Verdict.REGRESSED]
    assert c.regressed
    p50 = c.metrics[0]
    assert (p50.delta_ms, p50.threshold_ms, p50.spread_ms) == pytest.approx((2.0, 1.0, 0.2))
    assert p50.delta_pct == pytest.approx(20.0)
    with pytest.raises(RegressionError) as exc:
        raise_on_regression(c)
    assert exc.value.exit_code == 5
    assert "p50 10.000 -> 12.000 ms (+20.0%)" in exc.value.message


def test_shift_within_the_runs_own_spread_is_not_a_regression() -> None:
    # +20% but the device jitters by 4 ms between p50 and p90: noise, not a regression.
    c = compare(harness(10.0, 14.0), harness(12.0, 16.0), 0.10)
    assert [m.verdict for m in c.metrics] == [Verdict.WITHIN_NOISE, Verdict.WITHIN_NOISE]
    assert not c.regressed
    raise_on_regression(c)  # no exception
    # The noisier of the two runs sets the spread: a quiet baseline does not help.
    assert verdicts(harness(10.0, 10.1), harness(12.0, 16.0)) == ["within-noise", "regressed"]


def test_improvement_and_unchanged() -> None:
    assert verdicts(harness(10.0, 10.2), harness(7.0, 7.2)) == ["improved", "improved"]
    assert verdicts(harness(10.0, 10.2), harness(10.5, 10.7)) == ["unchanged", "unchanged"]
    # Exactly at the threshold is not beyond it.
    assert verdicts(harness(10.0, 10.0), harness(11.0, 11.0)) == ["unchanged", "unchanged"]


def test_comparison_warns_about_different_setups() -> None:
    c = compare(harness(1, 1, threads=4), harness(1, 1, threads=1, cpu="Cortex-A76"), 0.1)
    assert "threads differ: baseline 4, this run 1" in c.warnings
    assert any("cpu_model differs" in w for w in c.warnings)
    d = c.to_dict()
    assert d["threshold_pct"] == 10.0 and d["regressed"] is False
    assert [m["metric"] for m in d["metrics"]] == ["p50", "p90"]


@pytest.mark.parametrize(("text", "value"), [("10%", 0.10), ("2.5%", 0.025), ("0.1", 0.1)])
def test_parse_threshold(text, value) -> None:
    assert parse_threshold(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["10", "abc", "-5%", "5000%"])
def test_parse_threshold_rejects(text) -> None:
    with pytest.raises(UsageError):
        parse_threshold(text)


def test_load_baseline_accepts_result_and_harness_docs(tmp_path) -> None:
    h = harness(1.0, 2.0)
    (tmp_path / "h.json").write_text(json.dumps(h))
    (tmp_path / "r.json").write_text(
        json.dumps({"schema": "edgepack.bench-result/1", "harness": h})
    )
    assert load_baseline(tmp_path / "h.json") == h == load_baseline(tmp_path / "r.json")
    (tmp_path / "np.json").write_text(json.dumps(harness(None, None)))  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="has no p50_ms / p90_ms"):
        load_baseline(tmp_path / "np.json")
    with pytest.raises(UsageError, match="baseline not found"):
        load_baseline(tmp_path / "missing.json")


def test_result_file_name_and_save(tmp_path) -> None:
    from edgepack.bench.results import BenchSubject

    subject = BenchSubject(
        "m", tmp_path / "m.tflite", "ab" * 32, None, None, None, tmp_path / "bench"
    )
    when = dt.datetime(2026, 11, 28, 21, 5, 7, tzinfo=dt.timezone.utc)
    r = make_result(subject, "rpi4", "ssh", {"name": "pi@10.0.0.7:22 / $x"}, harness(1, 2), when)
    assert result_filename(r) == "rpi4-ssh-pi_10.0.0.7_22_x-20261128T210507Z.json"
    first, second = save_result(r, subject.save_dir), save_result(r, subject.save_dir)
    assert first != second and second.name.endswith("-2.json")
    assert json.loads(first.read_text()) == r


def test_result_records_the_profile_and_an_uncompiled_edge_tpu_package(tmp_path) -> None:
    from edgepack.bench.results import BenchSubject, summary_rows
    from edgepack.targets import load_target

    coral = load_target("coral-usb")
    h = {**harness(1, 2), "delegate": {"requested": "edgetpu"}}
    manifest = {"target": {"name": "coral-usb"}, "edgetpu": {"compiled": False, "log": {}}}
    subject = BenchSubject(
        "m", tmp_path / "m.tflite", "ab" * 32, manifest, "cd" * 32, "coral-usb", tmp_path
    )
    r = make_result(subject, "coral-usb", "ssh", {"name": "pi"}, h, profile_sha256=coral.sha256)
    assert r["profile_sha256"] == coral.sha256
    assert r["edgetpu"]["compiled"] is False
    assert "NOT compiled for the Edge TPU" in r["edgetpu"]["note"]
    assert "the CPU's, not the accelerator's" in r["edgetpu"]["note"]
    rows = dict(summary_rows(r))
    assert rows["edgetpu"] == "NOT compiled for the Edge TPU: CPU figures"
    compiled = {**manifest, "edgetpu": {"compiled": True, "file": "model_edgetpu.tflite"}}
    subject = BenchSubject("m", tmp_path / "m.tflite", "ab" * 32, compiled, "cd", "x", tmp_path)
    r = make_result(subject, "coral-usb", "ssh", {"name": "pi"}, h)
    assert "edgetpu" not in r and "edgetpu" not in dict(summary_rows(r))


@pytest.mark.parametrize("model_file", ["../outside.tflite", "/etc/hostname", None, ["m"]])
def test_a_package_model_file_outside_the_package_is_never_benchmarked(
    tmp_path, model_file
) -> None:  # type: ignore[no-untyped-def]
    """bench copies the package's model to a device: the manifest cannot point it at another
    file of this machine."""
    from edgepack.bench.results import load_subject
    from edgepack.errors import PackageError

    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (tmp_path / "outside.tflite").write_bytes(b"secret")
    manifest = {"schema_version": 1, "model_file": model_file, "target": {"name": "rpi4"}}
    (pkg / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(PackageError) as exc:
        load_subject(pkg)
    assert "is not a path inside the package" in exc.value.message
