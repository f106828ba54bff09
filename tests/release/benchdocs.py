"""Benchmark results for the release tests, measured by the real device harness.

devices/edgepack_bench.py runs in a local subprocess (edgepack.bench.local) on the package's
model; the result document is made and saved exactly as `edgepack bench` does
(<package>/bench/<target>-local-<device>-<UTC timestamp>.json, schema
"edgepack.bench-result/1").
"""

from __future__ import annotations

import sys
from pathlib import Path

from edgepack.bench.local import LocalTransport
from edgepack.bench.options import BenchOptions
from edgepack.bench.results import load_subject, make_result, save_result


def bench_package(package: Path, runs: int = 40, threads: int = 1) -> Path:
    """Benchmark a package on this host with the real harness; returns the saved file.

    A local run counts for a host package's latency gate, never for a device target's."""
    subject = load_subject(package)
    transport = LocalTransport(python=sys.executable)
    harness = transport.run(subject.model_path, BenchOptions(runs=runs, threads=threads))
    assert subject.target is not None
    result = make_result(
        subject,
        subject.target,
        transport.kind,
        transport.device_identity(),
        harness,
        profile_sha256=subject.profile_sha256,
    )
    return save_result(result, subject.save_dir)
