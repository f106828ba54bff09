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
