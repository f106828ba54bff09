"""edgepack.runtime: the one latency percentile definition, host latency bounded by time."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from edgepack.runtime import Runner, percentile

HARNESS_DIR = Path(__file__).resolve().parent.parent / "devices"
TINY_INT8 = Path(__file__).parent / "fixtures" / "tiny_int8.tflite"


def harness():  # type: ignore[no-untyped-def]
    sys.path.insert(0, str(HARNESS_DIR))
    try:
        import edgepack_bench
    finally:
        sys.path.pop(0)
    return edgepack_bench


@pytest.mark.parametrize("n", [1, 2, 5, 50, 101])
def test_build_and_bench_percentiles_are_one_definition(n: int) -> None:
    samples = sorted(np.random.default_rng(n).gamma(2.0, 3.0, size=n).tolist())
    h = harness()
    for q in (0, 50, 90, 99, 100):
        ours, device = percentile(samples, q), h.percentile(samples, q)
        assert ours == device
        assert ours == pytest.approx(float(np.percentile(samples, q)), rel=1e-12)


def test_p90_of_ten_values_is_interpolated_not_nearest_rank() -> None:
    # nearest-rank (the former host definition) gave values[int(0.9 * 9)] = 8.0
    assert percentile([float(v) for v in range(10)], 90) == pytest.approx(8.1)


def test_latency_without_budget_times_every_run() -> None:
    lat = Runner(TINY_INT8).latency_ms(warmup=1, runs=7)
    assert lat["runs"] == 7
    assert 0 < lat["min_ms"] <= lat["median_ms"] <= lat["p90_ms"]


@pytest.mark.parametrize(("runs", "timed"), [(1000, 3), (2, 2)])
def test_latency_budget_bounds_the_runs(runs: int, timed: int) -> None:
    # A spent budget stops at the minimum of 3 timed runs (fewer if fewer were asked for):
    # whatever the machine's speed, the count is known.
    lat = Runner(TINY_INT8).latency_ms(runs=runs, budget_s=0.0)
    assert lat["runs"] == timed
    assert 0 < lat["min_ms"] <= lat["median_ms"]


def _samples(runner: Runner, n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [
        rng.standard_normal((n, *(int(d) for d in i["shape"][1:]))).astype(np.float32)
        for i in runner.inputs
    ]


def test_latency_reuses_the_invokes_of_run() -> None:
    # The validation's parity/fidelity invokes are timed runs already: the first is the
    # warmup, the next `runs` are the figures, and no invoke is repeated for them.
    runner = Runner(TINY_INT8)
    runner.run(_samples(runner, 6))
    assert len(runner.invoke_ms) == 6
    lat = runner.latency_ms(runs=4, reuse=True)
    reused = sorted(runner.invoke_ms[1:5])
    assert lat["runs"] == 4
    assert lat["min_ms"] == round(reused[0], 4)
    assert lat["median_ms"] == round(percentile(reused, 50), 4)


def test_latency_tops_up_the_reused_invokes_within_the_budget() -> None:
    runner = Runner(TINY_INT8)
    runner.run(_samples(runner, 3))
    assert Runner(TINY_INT8).latency_ms(runs=10, reuse=True)["runs"] == 10  # nothing to reuse
    lat = runner.latency_ms(runs=10, reuse=True)
    assert lat["runs"] == 10  # 2 reused + 8 new
    assert lat["min_ms"] <= min(runner.invoke_ms[1:])
    # A spent budget: the 2 reused runs and 1 new one make the minimum of 3.
    runner2 = Runner(TINY_INT8)
    runner2.run(_samples(runner2, 3))
    assert runner2.latency_ms(runs=10, budget_s=0.0, reuse=True)["runs"] == 3
