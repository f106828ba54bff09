"""Benchmark a packaged model on a device: harness transports, results, fleets.

The device side is ``devices/edgepack_bench.py`` (standalone, stdlib + numpy + a TFLite
runtime). The host side pushes it with a :class:`~edgepack.bench.transport.Transport`
(local subprocess, SSH, adb), collects its JSON document and wraps it in a result document
(:mod:`edgepack.bench.results`).
"""

from __future__ import annotations

from edgepack.bench.options import BenchOptions, Delegate
from edgepack.bench.transport import HARNESS_SCHEMA, Transport, harness_path

__all__ = ["HARNESS_SCHEMA", "BenchOptions", "Delegate", "Transport", "harness_path"]
