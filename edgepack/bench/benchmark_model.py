"""TFLite's ``benchmark_model`` tool: its flags and a parser for what it prints.

The parser reads every output variant we keep as fixtures (tests/bench/fixtures/
benchmark_model/): bare lines (TF 2.x before ~2.10), ``INFO:``/``VERBOSE:`` prefixes
(newer builds), logcat lines (``... I tflite  : ...``) from the Android benchmark app, with or
without ``p5= median= p95=``, op profiling tables, and failures. It never invents a number:
what the tool did not print stays ``None``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from edgepack.bench.options import BenchOptions, Delegate, is_delegate_path

_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"

_TIMINGS = re.compile(
    rf"Inference timings in us: Init: (?P<init>{_NUM}), First inference: (?P<first>{_NUM}),"
    rf" Warmup \(avg\): (?P<warmup>{_NUM}), Inference \(avg\): (?P<avg>{_NUM})"
)
# The statistics line of one benchmark phase. "Timings (microseconds): count=..." lines of the
# op profiler look alike and are excluded by the look-behind on "Timings (microseconds): ".
_STATS = re.compile(
    rf"(?<!Timings \(microseconds\): )\bcount=(?P<count>\d+) first=(?P<first>{_NUM})"
    rf" curr=(?P<curr>{_NUM}) min=(?P<min>{_NUM}) max=(?P<max>{_NUM})"
    rf" avg=(?P<avg>{_NUM}) std=(?P<std>{_NUM})"
    rf"(?: p5=(?P<p5>{_NUM}) median=(?P<median>{_NUM}) p95=(?P<p95>{_NUM}))?"
)
_MEM_DELTA = re.compile(
    rf"(?:Memory footprint delta from the start of the tool|Peak memory footprint) \(MB\):"
    rf" init=(?P<init>{_NUM}) overall=(?P<overall>{_NUM})"
)
_PEAK = re.compile(rf"Overall peak memory footprint \(MB\) via periodic monitoring: (?P<mb>{_NUM})")
_REPLACING = re.compile(
    r"Replacing (?P<taken>\d+) out of (?P<total>\d+) node\(s\) with delegate"
    r" \((?P<kernel>[^)]+)\) node, yielding (?P<parts>\d+) partitions"
)
_APPLIED_ALL = re.compile(
    r"Explicitly applied (?P<name>\S+) delegate, and the model graph will be completely"
    r" executed by the delegate"
)
_APPLIED_PART = re.compile(
    r"Explicitly applied (?P<name>\S+) delegate, and the model graph will be partially"
    r" executed by the delegate w/ (?P<kernels>\d+) delegate kernels"
)
_NOT_APPLIED = re.compile(
    r"Though (?P<name>\S+) delegate is explicitly applied, the model graph will not be"
    r" executed by the delegate"
)
_FAILED_APPLY = re.compile(r"Failed to apply (?P<name>\S+) delegate")
_ERROR_LINE = re.compile(r"(?:^|\s)(?:ERROR: |E tflite\s*: )(?P<msg>.*\S)")
_MODEL_MB = re.compile(rf"The input model file size \(MB\): (?P<mb>{_NUM})")
_LINE_PREFIX = re.compile(r"^(?:\S+ \S+\s+\d+\s+\d+ [VDIWEF] \S+\s*: |(?:INFO|VERBOSE|WARNING): )")

# How each requested delegate names itself in the tool's log lines.
_LOG_NAME = {"xnnpack": "XNNPACK", "gpu": "GPU", "nnapi": "NNAPI", "external": "External"}
_KERNEL_NAME = {
    "xnnpack": ("TfLiteXNNPackDelegate",),
    "gpu": ("TfLiteGpuDelegateV2", "TfLiteGpuDelegate"),
    "nnapi": ("TfLiteNnapiDelegate",),
}


@dataclass(frozen=True)
class DelegateReport:
    """What the tool said about one delegate (by its log name: XNNPACK, GPU, NNAPI, ...)."""

    name: str
    applied: bool | None = None
    delegated_nodes: int | None = None
    total_nodes: int | None = None
    partitions: int | None = None


@dataclass(frozen=True)
class StatsLine:
    """One ``count=... first=... avg=... std=...`` line; times in microseconds."""

    count: int
    first_us: float
    curr_us: float
    min_us: float
    max_us: float
    avg_us: float
    std_us: float
    p5_us: float | None = None
    median_us: float | None = None
    p95_us: float | None = None


@dataclass(frozen=True)
class BenchmarkModelRun:
    """Everything one run of benchmark_model printed that we use. Times in microseconds."""

    init_us: float | None = None
    first_inference_us: float | None = None
    warmup_avg_us: float | None = None
    inference_avg_us: float | None = None
    warmup: StatsLine | None = None
    measured: StatsLine | None = None
    memory_delta_init_mb: float | None = None
    memory_delta_overall_mb: float | None = None
    peak_memory_mb: float | None = None
    model_size_mb: float | None = None
    delegates: tuple[DelegateReport, ...] = ()
    errors: tuple[str, ...] = ()
    failed: bool = False  # "Benchmarking failed." or no timings line at all

    @property
    def complete(self) -> bool:
        return not self.failed and self.inference_avg_us is not None

    def delegate(self, requested: str) -> DelegateReport | None:
        """The report for the requested delegate (by its log or kernel name), if any."""
        log_name = _LOG_NAME.get(requested, "").upper()
        for rep in self.delegates:
            if rep.name.upper() == log_name or rep.name in _KERNEL_NAME.get(requested, ()):
                return rep
        return None


def _f(value: str | None) -> float | None:
    return None if value is None else float(value)


def _stats(m: re.Match[str]) -> StatsLine:
    return StatsLine(
        count=int(m["count"]),
        first_us=float(m["first"]),
        curr_us=float(m["curr"]),
        min_us=float(m["min"]),
        max_us=float(m["max"]),
        avg_us=float(m["avg"]),
        std_us=float(m["std"]),
        p5_us=_f(m["p5"]),
        median_us=_f(m["median"]),
        p95_us=_f(m["p95"]),
    )


def _merge(reports: dict[str, dict[str, Any]], name: str, **facts: Any) -> None:
    entry = reports.setdefault(name, {"name": name})
    for key, value in facts.items():
        if value is not None:
            entry[key] = value


def parse_benchmark_output(text: str) -> BenchmarkModelRun:
    """Parse benchmark_model's stdout+stderr (any of the known variants)."""
    stats: list[StatsLine] = []
    timings: re.Match[str] | None = None
    stats_before_timings: list[StatsLine] = []
    mem: re.Match[str] | None = None
    peak: float | None = None
    model_mb: float | None = None
    reports: dict[str, dict[str, Any]] = {}
    kernel_to_name = {k: _LOG_NAME[d] for d, ks in _KERNEL_NAME.items() for k in ks}
    errors: list[str] = []
    failed = False
    for raw in text.splitlines():
        line = _LINE_PREFIX.sub("", raw.rstrip("\r"))
        if (m := _STATS.search(line)) is not None:
            stats.append(_stats(m))
            continue
        if timings is None and (m := _TIMINGS.search(line)) is not None:
            timings = m
            stats_before_timings = list(stats)
            continue
        if (m := _MEM_DELTA.search(line)) is not None:
            mem = m
        elif (m := _PEAK.search(line)) is not None:
            peak = float(m["mb"])
        elif (m := _MODEL_MB.search(line)) is not None:
            model_mb = float(m["mb"])
        elif (m := _REPLACING.search(line)) is not None:
            name = kernel_to_name.get(m["kernel"], m["kernel"])
            _merge(
                reports,
                name,
                delegated_nodes=int(m["taken"]),
                total_nodes=int(m["total"]),
                partitions=int(m["parts"]),
            )
        elif (m := _APPLIED_ALL.search(line)) is not None:
            _merge(reports, m["name"], applied=True)
        elif (m := _APPLIED_PART.search(line)) is not None:
            _merge(reports, m["name"], applied=True, partitions=int(m["kernels"]))
        elif (m := _NOT_APPLIED.search(line)) is not None:
            _merge(reports, m["name"], applied=False, delegated_nodes=0, partitions=0)
        elif (m := _FAILED_APPLY.search(line)) is not None:
            _merge(reports, m["name"], applied=False)
            errors.append(line.strip())
        elif "Benchmarking failed" in line:
            failed = True
            errors.append(line.strip())
        elif (m := _ERROR_LINE.search(raw)) is not None:
            errors.append(m["msg"])
    # The measured phase is the last statistics line printed before the timings summary; the
    # one before it (if any) is the warmup phase.
    phase = stats_before_timings if timings is not None else stats
    measured = phase[-1] if timings is not None and phase else None
    warmup = phase[-2] if timings is not None and len(phase) >= 2 else None
    return BenchmarkModelRun(
        init_us=_f(timings["init"]) if timings else None,
        first_inference_us=_f(timings["first"]) if timings else None,
        warmup_avg_us=_f(timings["warmup"]) if timings else None,
        inference_avg_us=_f(timings["avg"]) if timings else None,
        warmup=warmup,
        measured=measured,
        memory_delta_init_mb=_f(mem["init"]) if mem else None,
        memory_delta_overall_mb=_f(mem["overall"]) if mem else None,
        peak_memory_mb=peak,
        model_size_mb=model_mb,
        delegates=tuple(DelegateReport(**r) for r in reports.values()),
        errors=tuple(errors),
        failed=failed or timings is None,
    )


# --------------------------------------------------------------------------- flags


def benchmark_flags(options: BenchOptions, graph: str, delegate_path: str | None) -> list[str]:
    """benchmark_model's flags for ``options`` (the model at ``graph`` on the device).

    Delegates map to the tool's own switches: xnnpack -> --use_xnnpack=true, none -> every
    delegate off, gpu -> --use_gpu=true, nnapi -> --use_nnapi=true, a .so path ->
    --external_delegate_path (pushed by the transport, ``delegate_path`` on the device).
    """
    flags = [
        f"--graph={graph}",
        f"--num_threads={options.threads}",
        f"--warmup_runs={options.warmup_runs}",
        f"--num_runs={options.runs}",
        f"--min_secs={options.min_seconds:g}",
        f"--max_secs={options.max_seconds:g}",
    ]
    delegate = options.delegate
    if is_delegate_path(delegate):
        if delegate_path is None:  # pragma: no cover - the transport always passes it
            raise ValueError("an external delegate needs its path on the device")
        flags += ["--use_xnnpack=false", f"--external_delegate_path={delegate_path}"]
    elif delegate == Delegate.XNNPACK.value:
        flags += ["--use_xnnpack=true"]
    elif delegate == Delegate.NONE.value:
        flags += ["--use_xnnpack=false", "--use_gpu=false", "--use_nnapi=false"]
    elif delegate == Delegate.GPU.value:
        flags += ["--use_xnnpack=false", "--use_gpu=true"]
    elif delegate == Delegate.NNAPI.value:
        flags += ["--use_xnnpack=false", "--use_nnapi=true"]
    else:  # edgetpu is refused before we get here
        raise ValueError(f"benchmark_model has no switch for delegate {delegate!r}")
    return flags


def core_mask(cores: tuple[int, ...]) -> str:
    """taskset's hex CPU mask for ``cores`` (``(4, 5, 6, 7)`` -> ``"f0"``)."""
    mask = 0
    for c in cores:
        mask |= 1 << c
    return format(mask, "x")


# --------------------------------------------------------------------------- document


def _ms(us: float | None) -> float | None:
    return None if us is None else round(us / 1000.0, 6)


def harness_document(
    run: BenchmarkModelRun,
    options: BenchOptions,
    *,
    model_sha256: str,
    model_bytes: int,
    device: dict[str, Any],
    thermal_before: dict[str, float],
    thermal_after: dict[str, float],
) -> dict[str, Any]:
    """The ``edgepack.bench/1`` document for one benchmark_model run.

    benchmark_model prints aggregates only, so ``latencies_ms`` is empty; p50 is its
    ``median=`` (newer builds), p90/p99 are null (it never prints them); throughput is
    1000 / mean. Memory: peak_rss_mb only from the periodic-monitoring line; the tool's
    "footprint delta" (called "Peak memory footprint" in TF <= 2.4) is a delta of max RSS from
    the tool's start, kept separately under memory.footprint_delta_mb.
    """
    m = run.measured
    requested = options.delegate
    key = "external" if is_delegate_path(requested) else requested
    rep = run.delegate(key)
    if requested == Delegate.NONE.value:
        applied: bool | None = False
    elif rep is not None and rep.applied is not None:
        applied = rep.applied
    elif rep is not None and rep.delegated_nodes is not None:
        applied = rep.delegated_nodes > 0
    else:
        applied = None
    mean_ms = _ms(m.avg_us) if m else None
    return {
        "schema": "edgepack.bench/1",
        "tool": {"name": "benchmark_model", "version": None},
        "runtime": {"name": "benchmark_model", "version": None},
        "model": {"sha256": model_sha256, "bytes": model_bytes},
        "config": {
            "threads": options.threads,
            "warmup_runs": options.warmup_runs,
            "runs": options.runs,
            "min_seconds": options.min_seconds,
            "max_seconds": options.max_seconds,
            "delegate": requested,
            "input": "random",
            "pin_cores": list(options.pin_cores),
        },
        "init_ms": _ms(run.init_us),
        "first_inference_ms": _ms(run.first_inference_us),
        "warmup_mean_ms": _ms(run.warmup_avg_us),
        "latencies_ms": [],
        "stats": {
            "count": m.count if m else 0,
            "mean_ms": mean_ms,
            "std_ms": _ms(m.std_us) if m else None,
            "min_ms": _ms(m.min_us) if m else None,
            "p50_ms": _ms(m.median_us) if m else None,
            "p90_ms": None,
            "p99_ms": None,
            "max_ms": _ms(m.max_us) if m else None,
            "throughput_ips": round(1000.0 / mean_ms, 3) if mean_ms else None,
        },
        "memory": {
            "peak_rss_mb": run.peak_memory_mb,
            "footprint_delta_mb": (
                None
                if run.memory_delta_overall_mb is None
                else {"init": run.memory_delta_init_mb, "overall": run.memory_delta_overall_mb}
            ),
        },
        "delegate": {
            "requested": requested,
            "applied": applied,
            "delegated_nodes": 0
            if requested == Delegate.NONE.value
            else (rep.delegated_nodes if rep else None),
            "total_nodes": rep.total_nodes if rep else None,
            "partitions": 0
            if requested == Delegate.NONE.value
            else (rep.partitions if rep else None),
        },
        "device": device,
        "thermal": {"before": thermal_before, "after": thermal_after, "throttled": None},
        "errors": list(run.errors),
        "warnings": [],
    }
