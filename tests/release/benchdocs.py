"""Benchmark result documents for the tests, measured for real on this host.

They follow the bench contract (a harness document "edgepack.bench/1" wrapped in a result
document "edgepack.bench-result/1", saved as <package>/bench/<target>-<transport>-<device>-<UTC
timestamp>.json). The latencies are real: every run is timed around the LiteRT interpreter's
invoke(), like the device harness does.
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgepack.manifest import manifest_sha256, read_manifest, sha256_file
from edgepack.runtime import make_interpreter


def measure(model: Path, runs: int = 60, warmup: int = 5, threads: int = 1) -> dict[str, Any]:
    t0 = time.perf_counter()
    interp = make_interpreter(model, threads=threads)
    init_ms = (time.perf_counter() - t0) * 1e3
    for d in interp.get_input_details():
        interp.set_tensor(d["index"], np.zeros(tuple(d["shape"]), dtype=d["dtype"]))
    t0 = time.perf_counter()
    interp.invoke()
    first_ms = (time.perf_counter() - t0) * 1e3
    for _ in range(warmup):
        interp.invoke()
    lat = []
    for _ in range(runs):
        t0 = time.perf_counter()
        interp.invoke()
        lat.append((time.perf_counter() - t0) * 1e3)
    s = sorted(lat)

    def pct(q: float) -> float:
        return s[min(len(s) - 1, round(q * (len(s) - 1)))]

    mean = statistics.fmean(lat)
    return {
        "schema": "edgepack.bench/1",
        "tool": {"name": "edgepack_bench", "version": "test"},
        "runtime": {"name": "ai_edge_litert", "version": None},
        "model": {"sha256": sha256_file(model), "bytes": model.stat().st_size},
        "config": {
            "threads": threads,
            "warmup_runs": warmup,
            "runs": runs,
            "min_seconds": 0.0,
            "max_seconds": 60.0,
            "delegate": "xnnpack",
            "input": "random",
        },
        "init_ms": init_ms,
        "first_inference_ms": first_ms,
        "latencies_ms": lat,
        "stats": {
            "count": len(lat),
            "mean_ms": mean,
            "std_ms": statistics.pstdev(lat),
            "min_ms": s[0],
            "p50_ms": pct(0.5),
            "p90_ms": pct(0.9),
            "p99_ms": pct(0.99),
            "max_ms": s[-1],
            "throughput_ips": 1e3 / mean,
        },
        "memory": {"peak_rss_mb": None},
        "delegate": {
            "requested": "xnnpack",
            "applied": True,
            "delegated_nodes": None,
            "total_nodes": None,
            "partitions": None,
        },
        "device": {
            "machine": platform.machine(),
            "cpu_model": None,
            "cores": None,
            "governor": None,
            "freq_khz": None,
            "python": platform.python_version(),
            "os": platform.system(),
            "numpy": np.__version__,
        },
        "thermal": {"before": {}, "after": {}, "throttled": None},
        "errors": [],
    }


def save_result(package: Path, harness: dict[str, Any], stamp: str = "20250101T000000Z") -> Path:
    m = read_manifest(package)
    doc = {
        "schema": "edgepack.bench-result/1",
        "package": {
            "name": m["name"],
            "manifest_sha256": manifest_sha256(package),
            "model_sha256": sha256_file(package / m["model_file"]),
        },
        "target": m["target"]["name"],
        "transport": "local",
        "device": {"hostname": "localhost", "kind": "local"},
        "created_at": f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]}T{stamp[9:11]}:{stamp[11:13]}:{stamp[13:15]}+00:00",
        "harness": harness,
    }
    out = package / "bench" / f"{m['target']['name']}-local-localhost-{stamp}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return out
