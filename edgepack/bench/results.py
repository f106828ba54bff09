"""Result documents: what was benchmarked where, saved next to the package; baseline compare.

A result document wraps one harness document (schema ``edgepack.bench/1``) with its
provenance::

    {"schema": "edgepack.bench-result/1",
     "package": {"name", "manifest_sha256", "model_sha256"},
     "target": name, "transport": kind, "device": identity, "created_at": iso,
     "harness": <harness document>}

and is saved as ``<package>/bench/<target>-<transport>-<device>-<UTC timestamp>.json``.

Baseline rule (noise-aware). For p50 and p90, with ``b`` the baseline value and ``c`` the
current one, ``delta = c - b``. The run-to-run noise of a benchmark is estimated from the runs
themselves: ``spread = max(b_p90 - b_p50, c_p90 - c_p50)``, the width of the upper half of the
central latency band of whichever run was noisier. A change counts only if it exceeds BOTH
the relative threshold (``|delta| > threshold * b``) AND that spread (``|delta| > spread``):

- ``regressed``: delta > threshold * b and delta > spread;
- ``improved``: -delta > threshold * b and -delta > spread;
- ``within-noise``: beyond the threshold but not beyond the spread (a noisy device: rerun with
  more runs, fixed governor, or pinned cores rather than trusting the number);
- ``unchanged``: within the threshold.

Why p90 - p50: it is a robust (percentile-based, outlier-insensitive) measure of how far a
typical slow run lies from the median; it exists in every harness document (also those parsed
from benchmark_model, which has no per-run list for a bootstrap); and on a quiet device it is
small, so the threshold decides; on a throttling or shared device it is large, so a shift
that the device's own jitter can explain never fails a release gate.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from edgepack.errors import PackageError, RegressionError, UsageError, decode_problem
from edgepack.manifest import (
    MANIFEST_NAME,
    manifest_sha256,
    model_path,
    read_manifest,
    sha256_file,
)

RESULT_SCHEMA = "edgepack.bench-result/1"
HARNESS_SCHEMA = "edgepack.bench/1"
BENCH_DIR = "bench"
COMPARED = ("p50_ms", "p90_ms")


# --------------------------------------------------------------------------- the subject


@dataclass(frozen=True)
class BenchSubject:
    """What is benchmarked: a package folder, or a bare .tflite (then ``manifest`` is None)."""

    name: str
    model_path: Path
    model_sha256: str
    manifest: dict[str, Any] | None
    manifest_sha256: str | None
    target: str | None  # the package's target name (None for a bare .tflite)
    save_dir: Path  # where results go: <package>/bench or <tflite dir>/bench

    @property
    def profile_sha256(self) -> str | None:
        """The target profile hash the package's manifest records (None: a bare .tflite)."""
        sha = ((self.manifest or {}).get("target") or {}).get("sha256")
        return sha if isinstance(sha, str) else None

    @property
    def default_inputs(self) -> Path | None:
        """The package's samples of the build data (valid inputs for a model with integer
        inputs, e.g. token ids), passed to the harness when no --input-data is given."""
        if self.manifest is None:
            return None
        d = self.manifest.get("default_inputs")
        name = d.get("file") if isinstance(d, dict) else None
        if not isinstance(name, str) or Path(name).name != name:
            return None
        path = self.model_path.parent / name
        recorded = ((self.manifest.get("files") or {}).get(name) or {}).get("sha256")
        if not path.is_file() or recorded != sha256_file(path):
            raise PackageError(
                f"{path} is missing or does not match the sha256 in its manifest",
                "rebuild the package with `edgepack build` instead of editing its files",
            )
        return path

    @property
    def profile_dict(self) -> dict[str, Any] | None:
        if self.manifest is None:
            return None
        prof = self.manifest.get("target", {}).get("profile")
        return prof if isinstance(prof, dict) else None


def load_subject(path: str | Path) -> BenchSubject:
    p = Path(path)
    if p.is_dir():
        if not (p / MANIFEST_NAME).is_file():
            raise PackageError(
                f"{p} is not a package: it has no {MANIFEST_NAME}",
                "pass a folder written by `edgepack build`, or a .tflite file with --target",
            )
        manifest = read_manifest(p)
        model = model_path(p, manifest)
        model_file = str(manifest["model_file"])
        target = (manifest.get("target") or {}).get("name")
        if not model.is_file() or not isinstance(target, str):
            raise PackageError(
                f"package {p} is incomplete: "
                + ("no target in its manifest" if model.is_file() else f"{model_file} missing"),
                "rebuild it with `edgepack build`",
            )
        digest = sha256_file(model)
        recorded = ((manifest.get("files") or {}).get(model_file) or {}).get("sha256")
        if recorded and recorded != digest:
            raise PackageError(
                f"{model} does not match the sha256 in its manifest (was it modified?)",
                "rebuild the package with `edgepack build` instead of editing its files",
            )
        return BenchSubject(
            name=str(manifest.get("name") or p.name),
            model_path=model,
            model_sha256=digest,
            manifest=manifest,
            manifest_sha256=manifest_sha256(p),
            target=target,
            save_dir=p / BENCH_DIR,
        )
    if p.is_file():
        if p.suffix.lower() != ".tflite":
            raise UsageError(
                f"{p} is neither a package folder nor a .tflite file",
                "pass a package folder (dist/NAME-TARGET) or a model.tflite with --target",
            )
        return BenchSubject(
            name=p.stem,
            model_path=p,
            model_sha256=sha256_file(p),
            manifest=None,
            manifest_sha256=None,
            target=None,
            save_dir=p.parent / BENCH_DIR,
        )
    raise UsageError(
        f"not found: {p}", "pass a package folder written by `edgepack build` or a .tflite file"
    )


# --------------------------------------------------------------------------- result docs


def now_utc() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0)


def make_result(
    subject: BenchSubject,
    target: str,
    transport: str,
    device: dict[str, Any],
    harness: dict[str, Any],
    created_at: _dt.datetime | None = None,
    profile_sha256: str | None = None,
) -> dict[str, Any]:
    """``profile_sha256``: hash of the target profile the run used (the package's, from its
    manifest); the latency gate counts only results of the package's own profile."""
    when = created_at or now_utc()
    doc = {
        "schema": RESULT_SCHEMA,
        "package": {
            "name": subject.name,
            "manifest_sha256": subject.manifest_sha256,
            "model_sha256": subject.model_sha256,
        },
        "target": target,
        "profile_sha256": profile_sha256,
        "transport": transport,
        "device": device,
        "created_at": when.isoformat(),
        "harness": harness,
    }
    tpu = (subject.manifest or {}).get("edgetpu")
    if isinstance(tpu, dict) and tpu.get("compiled") is not True:
        doc["edgetpu"] = {"compiled": False, "note": EDGETPU_NOT_COMPILED}
    return doc


EDGETPU_NOT_COMPILED = (
    "the package is NOT compiled for the Edge TPU (edgetpu_compiler did not run at build "
    "time): these figures are the CPU's, not the accelerator's"
)


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def result_filename(result: dict[str, Any]) -> str:
    dev = result.get("device") or {}
    device = str(dev.get("name") or dev.get("address") or dev.get("serial") or "device")
    device = _UNSAFE.sub("_", device).strip("._") or "device"
    stamp = _dt.datetime.fromisoformat(result["created_at"]).strftime("%Y%m%dT%H%M%SZ")
    return f"{result['target']}-{result['transport']}-{device}-{stamp}.json"


def save_result(result: dict[str, Any], save_dir: Path) -> Path:
    save_dir.mkdir(parents=True, exist_ok=True)
    path = save_dir / result_filename(result)
    n = 1
    while path.exists():  # two runs in the same second on the same device
        n += 1
        path = save_dir / (result_filename(result)[: -len(".json")] + f"-{n}.json")
    path.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def fmt_ms(v: float | None) -> str:
    """Latency without a unit: 4 significant digits below 10 ms, else 2 decimals."""
    if v is None:
        return "-"
    return f"{v:.4g}" if abs(v) < 10 else f"{v:.2f}"


def _fmt(v: Any, unit: str = "", digits: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}{unit}"
    return f"{v}{unit}"


def summary_rows(result: dict[str, Any]) -> list[tuple[str, str]]:
    """(field, value) rows of the printed table for one result."""
    h = result["harness"]
    s, dlg, dev, th = h["stats"], h["delegate"], h.get("device") or {}, h.get("thermal") or {}
    cfg = h.get("config") or {}
    nodes = (
        f"{dlg.get('delegated_nodes')}/{dlg.get('total_nodes')} nodes"
        if dlg.get("total_nodes") is not None
        else "-"
    )
    parts = f", {dlg['partitions']} partition(s)" if dlg.get("partitions") is not None else ""
    applied = {True: "applied", False: "not applied", None: "unknown"}[dlg.get("applied")]
    temps = ""
    if th.get("before") or th.get("after"):
        b = max(th.get("before", {}).values(), default=None)
        a = max(th.get("after", {}).values(), default=None)
        temps = f"{_fmt(b, ' C', 1)} -> {_fmt(a, ' C', 1)}"
    rt = h.get("runtime") or {}
    ident = result.get("device") or {}
    rows = [
        ("device", f"{ident.get('name') or '-'} ({result['transport']})"),
        ("target", str(result["target"])),
        ("runtime", f"{rt.get('name') or '-'} {rt.get('version') or ''}".strip()),
        (
            "cpu",
            f"{dev.get('cpu_model') or '-'} x{dev.get('cores') or '?'} {dev.get('machine') or ''}",
        ),
        ("governor / freq", f"{dev.get('governor') or '-'} / {_fmt(dev.get('freq_khz'), ' kHz')}"),
        ("threads / delegate", f"{cfg.get('threads')} / {dlg.get('requested')}"),
        ("delegate", f"{applied}, {nodes}{parts}"),
        ("init", f"{fmt_ms(h.get('init_ms'))} ms"),
        ("first inference", f"{fmt_ms(h.get('first_inference_ms'))} ms"),
        ("runs", str(s.get("count"))),
        ("mean +- std", f"{fmt_ms(s.get('mean_ms'))} +- {fmt_ms(s.get('std_ms'))} ms"),
        (
            "min / p50 / p90",
            f"{fmt_ms(s.get('min_ms'))} / {fmt_ms(s.get('p50_ms'))} / {fmt_ms(s.get('p90_ms'))} ms",
        ),
        ("p99 / max", f"{fmt_ms(s.get('p99_ms'))} / {fmt_ms(s.get('max_ms'))} ms"),
        ("throughput", _fmt(s.get("throughput_ips"), " inf/s", 1)),
        ("peak RSS", _fmt((h.get("memory") or {}).get("peak_rss_mb"), " MB", 1)),
        ("temperature", temps or "-"),
        ("throttled", str(th.get("throttled") or "-")),
    ]
    if result.get("edgetpu"):
        rows.insert(2, ("edgetpu", "NOT compiled for the Edge TPU: CPU figures"))
    return rows


# --------------------------------------------------------------------------- baseline


def parse_threshold(text: str) -> float:
    """``10%`` -> 0.10; a bare fraction ``0.1`` is accepted too."""
    t = text.strip()
    try:
        value = float(t[:-1]) / 100.0 if t.endswith("%") else float(t)
    except ValueError:
        value = -1.0
    if not t.endswith("%") and value >= 1.0:
        raise UsageError(
            f"--max-regression {text!r} is ambiguous", f"write it as a percentage: {t}%"
        )
    if not 0.0 <= value < 10.0:
        raise UsageError(
            f"bad --max-regression {text!r}", "write a percentage such as 10% (or a fraction 0.1)"
        )
    return value


def load_baseline(path: str | Path) -> dict[str, Any]:
    """The harness document inside a saved result (or a bare harness document)."""
    p = Path(path)
    try:
        data = json.loads(p.read_bytes().decode("utf-8"))
    except FileNotFoundError as exc:
        raise UsageError(
            f"baseline not found: {p}", "pass a result JSON saved by a bench run"
        ) from exc
    except (OSError, ValueError, RecursionError) as exc:  # ValueError: JSON, UTF-8
        raise UsageError(
            f"cannot read baseline {p}: {decode_problem(exc)}",
            "pass a result JSON saved by a bench run",
        ) from exc
    doc = (
        data.get("harness")
        if isinstance(data, dict) and data.get("schema") == RESULT_SCHEMA
        else data
    )
    if not isinstance(doc, dict) or doc.get("schema") != HARNESS_SCHEMA:
        raise UsageError(
            f"{p} is not a benchmark result ({RESULT_SCHEMA} or {HARNESS_SCHEMA})",
            "pass a JSON file from <package>/bench/ or from `edgepack bench --json`",
        )
    stats = doc.get("stats") or {}
    missing = [k for k in COMPARED if not isinstance(stats.get(k), (int, float))]
    if missing:
        raise UsageError(
            f"baseline {p} has no {' / '.join(missing)}",
            "rerun the baseline with a harness that reports percentiles",
        )
    return doc


class Verdict(str, Enum):
    REGRESSED = "regressed"
    IMPROVED = "improved"
    WITHIN_NOISE = "within-noise"
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class MetricComparison:
    metric: str
    baseline_ms: float
    current_ms: float
    delta_ms: float
    delta_pct: float
    threshold_ms: float
    spread_ms: float
    verdict: Verdict


@dataclass(frozen=True)
class Comparison:
    threshold: float
    metrics: tuple[MetricComparison, ...]
    warnings: tuple[str, ...] = field(default=())

    @property
    def regressed(self) -> bool:
        return any(m.verdict is Verdict.REGRESSED for m in self.metrics)

    def to_dict(self) -> dict[str, Any]:
        return {
            "threshold_pct": round(self.threshold * 100, 4),
            "rule": "regression iff delta > threshold*baseline AND delta > "
            "max(p90-p50 of baseline, p90-p50 of current)",
            "regressed": self.regressed,
            "metrics": [
                {
                    "metric": m.metric,
                    "baseline_ms": m.baseline_ms,
                    "current_ms": m.current_ms,
                    "delta_ms": round(m.delta_ms, 6),
                    "delta_pct": round(m.delta_pct, 3),
                    "threshold_ms": round(m.threshold_ms, 6),
                    "spread_ms": round(m.spread_ms, 6),
                    "verdict": m.verdict.value,
                }
                for m in self.metrics
            ],
            "warnings": list(self.warnings),
        }


def compare(baseline: dict[str, Any], current: dict[str, Any], threshold: float) -> Comparison:
    """Compare two harness documents' p50 and p90 with the noise-aware rule (module doc)."""
    bs, cs = baseline["stats"], current["stats"]
    for name, st in (("current run", cs), ("baseline", bs)):
        if not all(isinstance(st.get(k), (int, float)) for k in COMPARED):
            raise UsageError(f"the {name} has no p50/p90", "compare runs that report percentiles")
    spread = max(bs["p90_ms"] - bs["p50_ms"], cs["p90_ms"] - cs["p50_ms"], 0.0)
    metrics = []
    for key in COMPARED:
        b, c = float(bs[key]), float(cs[key])
        delta = c - b
        limit = threshold * b
        if delta > limit and delta > spread:
            verdict = Verdict.REGRESSED
        elif -delta > limit and -delta > spread:
            verdict = Verdict.IMPROVED
        elif abs(delta) > limit:
            verdict = Verdict.WITHIN_NOISE
        else:
            verdict = Verdict.UNCHANGED
        metrics.append(
            MetricComparison(
                metric=key.removesuffix("_ms"),
                baseline_ms=b,
                current_ms=c,
                delta_ms=delta,
                delta_pct=100.0 * delta / b if b else 0.0,
                threshold_ms=limit,
                spread_ms=spread,
                verdict=verdict,
            )
        )
    warnings = []
    bc, cc = baseline.get("config") or {}, current.get("config") or {}
    for key in ("threads", "delegate"):
        if bc.get(key) != cc.get(key):
            warnings.append(f"{key} differ: baseline {bc.get(key)!r}, this run {cc.get(key)!r}")
    bd, cd = baseline.get("device") or {}, current.get("device") or {}
    for key in ("machine", "cpu_model"):
        if bd.get(key) and cd.get(key) and bd.get(key) != cd.get(key):
            warnings.append(f"device {key} differs: baseline {bd[key]!r}, this run {cd[key]!r}")
    return Comparison(threshold=threshold, metrics=tuple(metrics), warnings=tuple(warnings))


def raise_on_regression(comparison: Comparison) -> None:
    bad = [m for m in comparison.metrics if m.verdict is Verdict.REGRESSED]
    if bad:
        what = ", ".join(
            f"{m.metric} {m.baseline_ms:.3f} -> {m.current_ms:.3f} ms ({m.delta_pct:+.1f}%)"
            for m in bad
        )
        raise RegressionError(
            f"latency regressed beyond {comparison.threshold * 100:g}% and the runs' spread: "
            f"{what}",
            hint="find the change that slowed the model, or accept the new numbers by making "
            "this run the new --baseline",
        )


def comparison_rows(comparison: Comparison) -> list[tuple[str, ...]]:
    return [
        (
            m.metric,
            fmt_ms(m.baseline_ms),
            fmt_ms(m.current_ms),
            f"{m.delta_pct:+.1f}%",
            fmt_ms(m.threshold_ms),
            fmt_ms(m.spread_ms),
            m.verdict.value,
        )
        for m in comparison.metrics
    ]


COMPARISON_HEADERS = (
    "metric",
    "baseline ms",
    "now ms",
    "change",
    "threshold ms",
    "spread ms",
    "verdict",
)
