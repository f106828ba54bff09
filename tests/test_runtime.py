from __future__ import annotations

from pathlib import Path

import pytest

from edgepack.runtime import Runner

TINY_INT8 = Path(__file__).parent / "fixtures" / "tiny_int8.tflite"


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
