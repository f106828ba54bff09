"""Matrix builds: each model exported once, built for its targets in parallel processes.

    per model: load + torch.export (once, here) -> per target, in a "spawn" process pool:
        convert -> quantize -> validate -> package
    -> release gates (size, RAM, latency from a benchmark result) -> summary

The targets of one model build while the next model exports. With ``--shard I/N`` only the
plan's slice is built, and the shard's summary (edgepack.release.shard) lands in the output
folder for `edgepack report` / `verify` to merge.

One target failing never loses the others' packages: every target is its own future, and a
failure is recorded with its message and hint. The exit code is 0 when every target built and
passed its gates, 3 when a gate failed, 2 when a target could not be built.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import queue as queue_mod
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from edgepack.errors import decode_problem
from edgepack.release.config import Gates, ReleasePlan, TargetJob

# (target id or "*", message[, node=...]): the node that builds the target, "local" by default
Progress = Callable[..., None]

RESULT_SCHEMA = "edgepack.bench-result/1"
STAT_KEYS = {"p50": "p50_ms", "p90": "p90_ms", "p99": "p99_ms", "mean": "mean_ms"}


def _no_progress(target: str, msg: str, node: str = "local") -> None:
    del target, msg, node


class Status(str, Enum):
    OK = "ok"
    GATE_FAILED = "gate failed"
    FAILED = "failed"


class GateStatus(str, Enum):
    PASS = "pass"
    FAIL = "fail"
    NO_DATA = "no data"  # fails the release: a gate without data never passes
    SKIPPED = "skipped"  # no data, and the user opted out explicitly (allow_missing_latency)


@dataclass
class GateResult:
    gate: str
    limit: float
    value: float | None
    status: GateStatus
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "gate": self.gate,
            "limit": self.limit,
            "value": self.value,
            "status": self.status.value,
            "detail": self.detail,
        }


@dataclass
class TargetOutcome:
    id: str
    target: str
    mode: str
    dest: Path
    status: Status = Status.OK
    manifest: dict[str, Any] | None = None
    gates: list[GateResult] = field(default_factory=list)
    message: str = ""
    hint: str = ""
    restored_bench: list[str] = field(default_factory=list)
    # Ray executor: the node that built it (IP and node id) and its task's timings
    ray: dict[str, Any] = field(default_factory=dict)

    @property
    def package(self) -> Path | None:
        return self.dest if self.manifest is not None else None

    def to_dict(self) -> dict[str, Any]:
        m = self.manifest or {}
        metrics = m.get("metrics", {})
        acc = metrics.get("accuracy") or {}
        return {
            "id": self.id,
            "target": self.target,
            "mode": self.mode,
            "status": self.status.value,
            "package": None if self.package is None else str(self.package),
            "size_bytes": metrics.get("size_bytes"),
            "accuracy": acc.get("quantized"),
            "accuracy_drop": acc.get("drop_points"),
            "model_sha256": (m.get("model") or {}).get("sha256"),
            "gates": [g.to_dict() for g in self.gates],
            "message": self.message or None,
            "hint": self.hint or None,
            "restored_bench": self.restored_bench,
            **({"ray": self.ray} if self.ray else {}),
        }


@dataclass
class ModelExport:
    """One model's shared export: what the matrix did once for all its targets."""

    model: str
    seconds: float
    cache_key: str  # "" when the export could not be cached (compressed model, --no-cache)
    targets: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "seconds": round(self.seconds, 3),
            "cache_key": self.cache_key or None,
            "targets": self.targets,
        }


@dataclass
class MatrixResult:
    outcomes: list[TargetOutcome]
    export_seconds: float = 0.0  # every model's export, summed
    exports: list[ModelExport] = field(default_factory=list)
    shard: Any = None  # edgepack.release.shard.Shard
    skipped: list[TargetJob] = field(default_factory=list)  # jobs of the other shards

    @property
    def exit_code(self) -> int:
        if any(o.status is Status.FAILED for o in self.outcomes):
            return 2
        if any(o.status is Status.GATE_FAILED for o in self.outcomes):
            return 3
        return 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "exit_code": self.exit_code,
            "shard": None if self.shard is None else self.shard.to_dict(),
            "exports": [e.to_dict() for e in self.exports],
            "targets": [o.to_dict() for o in self.outcomes],
            "skipped": [
                {"id": t.id, "shard": t.shard, "package": t.dest.name} for t in self.skipped
            ],
        }


# --------------------------------------------------------------------------- workers

_QUEUE: Any = None
_STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n))
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


class _Stop(BaseException):
    """A worker was told to stop (SIGTERM/SIGHUP, or its parent died): unwind, so the
    build's temporary folders and staging package are removed, then exit."""


_IN_TASK = False  # a worker is running a task (that has folders to clean up)


def _stop(signum: int, frame: object) -> None:
    del frame
    for s in _STOP_SIGNALS:
        signal.signal(s, signal.SIG_IGN)
    if not _IN_TASK:  # idle or starting: nothing to clean up, no traceback to print
        os._exit(128 + signum)
    raise _Stop(signum)


def _init_worker(q: Any, parent: int | None = None) -> None:
    """Worker set-up: progress queue; stop cleanly on SIGTERM/SIGHUP; never outlive the
    parent (a killed `edgepack build` must not leave ~500 MB workers behind)."""
    global _QUEUE
    _QUEUE = q
    for s in _STOP_SIGNALS:
        signal.signal(s, _stop)
    if parent is None:
        return
    if sys.platform.startswith("linux"):  # the kernel signals us when the parent dies
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    # Portable fallback (and the race before prctl): poll the parent.
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    os.kill(os.getpid(), _STOP_SIGNALS[0] if _STOP_SIGNALS else signal.SIGINT)
    time.sleep(30)  # the main thread is unwinding; a stuck one is ended here
    os._exit(1)


def _exit_on_stop(fn: Callable[..., Any], *args: Any) -> Any:
    global _IN_TASK
    _IN_TASK = True
    try:
        return fn(*args)
    except _Stop as stop:
        # Clean-up ran while the exception unwound; leave without serving more work.
        os._exit(128 + int(stop.args[0]))
    finally:
        _IN_TASK = False


def _send(job_id: str, msg: str) -> None:
    if _QUEUE is not None:
        _QUEUE.put((job_id, msg))


def _build_target_worker(job: TargetJob, shared: Any) -> dict[str, Any]:
    return _exit_on_stop(_build_target, job, shared)


def _build_target(
    job: TargetJob, shared: Any, progress: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Runs in a worker process (or in-process with one job). Never raises for a build
    problem: returns it, so one target cannot take the others down."""
    from edgepack.errors import EdgepackError, GateError
    from edgepack.pipeline import build_from_export

    try:
        result = build_from_export(
            job.plan, shared, job.dest, progress=progress or (lambda m: _send(job.id, m))
        )
        return {"status": Status.OK.value, "manifest": result.manifest}
    except GateError as err:
        return {"status": Status.GATE_FAILED.value, "message": err.message, "hint": err.hint}
    except EdgepackError as err:
        return {"status": Status.FAILED.value, "message": err.message, "hint": err.hint}
    except Exception as exc:  # a bug: keep the traceback, but do not lose the other targets
        return {
            "status": Status.FAILED.value,
            "message": f"internal error: {type(exc).__name__}: {exc}",
            "hint": "this is a bug in edgepack; the traceback follows:\n" + traceback.format_exc(),
        }


# --------------------------------------------------------------------------- gates


def _bench_results(folder: Path) -> list[tuple[str, bytes, dict[str, Any]]]:
    out = []
    for p in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            raw = p.read_bytes()
            doc = json.loads(raw)
        except (OSError, ValueError, RecursionError):  # ValueError: JSON, UTF-8
            continue
        if isinstance(doc, dict) and doc.get("schema") == RESULT_SCHEMA:
            out.append((p.name, raw, doc))
    return out


def latency_value(doc: dict[str, Any], stat: str) -> float | None:
    v = ((doc.get("harness") or {}).get("stats") or {}).get(STAT_KEYS[stat])
    return float(v) if isinstance(v, (int, float)) else None


def evaluate_gates(
    gates: Gates,
    manifest: dict[str, Any],
    package: Path,
    latency_result: Path | None,
) -> list[GateResult]:
    """Release gates on a built package (the accuracy gate ran inside the build)."""
    out: list[GateResult] = []
    metrics = manifest["metrics"]
    units = {"max_accuracy_drop": "top-1 points", "min_fidelity": "output cosine vs float"}
    for g in metrics.get("gates", []):
        if g["gate"] in units:
            out.append(
                GateResult(
                    g["gate"],
                    g["limit"],
                    g["value"],
                    GateStatus.PASS if g["passed"] else GateStatus.FAIL,
                    units[g["gate"]],
                )
            )
    if gates.max_model_kb is not None:
        kb = round(metrics["size_bytes"] / 1024, 2)
        out.append(
            GateResult(
                "max_model_kb",
                gates.max_model_kb,
                kb,
                GateStatus.PASS if kb <= gates.max_model_kb else GateStatus.FAIL,
                "model.tflite",
            )
        )
    if gates.max_ram_mb is not None:
        ram = metrics.get("est_ram_mb_upper")
        out.append(
            GateResult(
                "max_ram_mb",
                gates.max_ram_mb,
                ram,
                GateStatus.NO_DATA
                if ram is None
                else (GateStatus.PASS if ram <= gates.max_ram_mb else GateStatus.FAIL),
                "estimate: weights + activations",
            )
        )
    if gates.max_latency_ms is not None:
        out.append(_latency_gate(gates, manifest, package, latency_result))
    return out


_ARCH = {"arm64": "aarch64", "arm64-v8a": "aarch64", "amd64": "x86_64", "armeabi-v7a": "armv7l"}


def _arch(name: Any) -> str | None:
    return _ARCH.get(str(name).lower(), str(name).lower()) if name else None


def result_mismatch(doc: dict[str, Any], manifest: dict[str, Any]) -> str | None:
    """Why a benchmark result does not count for this package's latency gate (None: it does).

    A result counts when it measured this model's bytes, with this package's target profile
    (name and sha256), over the profile's transport (a local run is this machine, never an
    SSH or adb board), on a device whose architecture is the profile's. A profile benchmarked
    locally (``bench.transport = "local"``, the host) describes whatever machine runs it.
    """
    target = manifest.get("target") or {}
    if (doc.get("package") or {}).get("model_sha256") != manifest["model"]["sha256"]:
        return "measured on another model build"
    if doc.get("target") != target.get("name"):
        return f"measured for target '{doc.get('target')}', not '{target.get('name')}'"
    if doc.get("profile_sha256") is None:
        return "the result does not record its target profile (benchmarked by an older edgepack)"
    if doc.get("profile_sha256") != target.get("sha256"):
        return "measured with another version of the target profile"
    profile = target.get("profile") or {}
    transport = (profile.get("bench") or {}).get("transport")
    if doc.get("transport") != transport:
        return (
            f"measured over {doc.get('transport')}: {target.get('name')} devices are "
            f"benchmarked over {transport}"
        )
    if transport == "local":
        return None  # the profile of the machine running edgepack
    want = _arch((profile.get("device") or {}).get("arch"))
    got = _arch(((doc.get("harness") or {}).get("device") or {}).get("machine"))
    if got is None:
        return "the result records no device architecture"
    if got != want:
        return f"measured on a {got} device over {doc.get('transport')}, the target is {want}"
    return None


def how_to_bench(manifest: dict[str, Any], package: Path) -> str:
    """The command that produces a result the latency gate counts."""
    profile = (manifest.get("target") or {}).get("profile") or {}
    transport = (profile.get("bench") or {}).get("transport")
    name = (manifest.get("target") or {}).get("name")
    device = {"ssh": f" --host user@<{name} device>", "adb": " --serial <device serial>"}
    return f"edgepack bench {package}{device.get(str(transport), '')}"


def _latency_gate(
    gates: Gates, manifest: dict[str, Any], package: Path, latency_result: Path | None
) -> GateResult:
    limit = gates.max_latency_ms
    assert limit is not None
    name = f"max_latency_ms ({gates.latency_stat})"
    target = (manifest.get("target") or {}).get("name")
    how = (
        f"run `{how_to_bench(manifest, package)}` on a {target} device, then build again; "
        "or set allow_missing_latency = true in [gates] (--allow-missing-latency) to release "
        "without a latency figure"
    )

    def missing(detail: str) -> GateResult:
        if gates.allow_missing_latency:
            return GateResult(name, limit, None, GateStatus.SKIPPED, f"{detail} (opted out)")
        return GateResult(name, limit, None, GateStatus.NO_DATA, f"{detail}: {how}")

    if latency_result is not None:
        try:
            doc = json.loads(latency_result.read_bytes().decode("utf-8"))
        except (OSError, ValueError, RecursionError) as exc:  # ValueError: JSON, UTF-8
            return GateResult(
                name, limit, None, GateStatus.FAIL, f"{latency_result}: {decode_problem(exc)}"
            )
        value = latency_value(doc, gates.latency_stat) if isinstance(doc, dict) else None
        if value is None:
            return GateResult(
                name, limit, None, GateStatus.FAIL, f"{latency_result} is not a bench result"
            )
        why = result_mismatch(doc, manifest)
        if why is not None:
            return missing(f"{latency_result} does not count ({why})")
        ok = value <= limit
        return GateResult(
            name, limit, value, GateStatus.PASS if ok else GateStatus.FAIL, str(latency_result)
        )
    results = _bench_results(package / "bench")
    matching = [(n, d) for n, _, d in results if result_mismatch(d, manifest) is None]
    if not matching:
        ignored = "; ".join(f"bench/{n}: {result_mismatch(d, manifest)}" for n, _, d in results)
        return missing(
            f"no benchmark result from a {target} device for this model"
            + (f" (ignored {ignored})" if ignored else "")
        )
    fname, doc = max(matching, key=lambda nd: str(nd[1].get("created_at", "")))
    value = latency_value(doc, gates.latency_stat)
    if value is None:
        return missing(f"bench/{fname} has no {gates.latency_stat}")
    ok = value <= limit
    return GateResult(
        name, limit, value, GateStatus.PASS if ok else GateStatus.FAIL, f"bench/{fname}"
    )


# --------------------------------------------------------------------------- the matrix


def run_matrix(
    plan: ReleasePlan, progress: Progress = _no_progress, executor: Any = None
) -> MatrixResult:
    """Export once, build every target (in ``plan.jobs`` processes), apply the gates.

    ``executor``: None builds in local processes; an
    :class:`edgepack.release.ray_executor.RayOptions` builds every target as a task on a Ray
    cluster (connected before the export, so a bad address fails fast).

    Raises EdgepackError only for problems shared by every target (the model source, the
    data, the export); per-target problems are outcomes. Worker processes use the "spawn"
    start method: a script calling this must guard its entry point with
    ``if __name__ == "__main__":`` (the edgepack CLI does).
    """
    from edgepack.errors import storage_errors

    with storage_errors():  # a full disk or an unwritable TMPDIR: a clean error
        return _run_matrix(plan, progress, executor)


def _run_matrix(plan: ReleasePlan, progress: Progress, executor: Any = None) -> MatrixResult:
    from edgepack.errors import EdgepackError
    from edgepack.pipeline import prepare
    from edgepack.stages.base import StageContext

    remote = None
    if executor is not None:  # connect before the export: a bad address fails fast
        from edgepack.release.ray_executor import RayMatrix

        remote = RayMatrix(executor)
    work = Path(tempfile.mkdtemp(prefix="edgepack-matrix-"))
    parallel = remote is None and plan.jobs > 1 and len(plan.targets) > 1
    # Workers start (and import torch / litert-torch) while this process exports.
    pool = _Pool(plan.jobs, progress) if parallel else None
    exports: list[ModelExport] = []
    try:
        raw: dict[str, dict[str, Any]] = {}
        for model, jobs in plan.groups():  # one export per model, shared by its targets

            def shared_progress(m: str, prefix: str = f"{model.name}: ") -> None:
                progress("*", prefix + m if plan.multi_model else m)

            ctx = StageContext(workdir=work / model.name, progress=shared_progress, seed=0)
            try:
                with ctx.timed() as elapsed:
                    _, shared, _ = prepare([t.plan for t in jobs], ctx, model.name)
            except EdgepackError as err:
                if not plan.multi_model:
                    raise  # shared by every target: the command fails
                # Several models: this model's targets fail, the other models still build.
                for t in jobs:
                    raw[t.id] = {
                        "status": Status.FAILED.value,
                        "message": f"model {model.name}: {err.message}",
                        "hint": err.hint,
                    }
                continue
            exports.append(
                ModelExport(model.name, elapsed(), shared.exported.cache_key, [t.id for t in jobs])
            )
            if remote is not None:  # the model's targets run on the cluster
                raw.update(remote.build(jobs, shared, progress))
                continue
            if pool is not None:
                pool.submit(jobs, shared)  # they build while the next model exports
                continue
            for t in jobs:

                def report(m: str, i: str = t.id) -> None:
                    progress(i, m)

                raw[t.id] = _build_target(t, shared, report)
        if pool is not None:
            raw.update(pool.results())
        outcomes = [_outcome(t, raw[t.id]) for t in plan.targets]
        result = MatrixResult(
            outcomes,
            export_seconds=sum(e.seconds for e in exports),
            exports=exports,
            shard=plan.shard,
            skipped=list(plan.skipped),
        )
        if plan.shard is not None:
            write_shard_summary(plan, result)
        return result
    except BaseException:  # Ctrl-C, SIGTERM/SIGHUP (edgepack.cli), a bug: no worker survives
        if pool is not None:
            pool.terminate()
        if remote is not None:
            remote.cancel()
        raise
    finally:
        if pool is not None:
            pool.close()
        if remote is not None:
            remote.close()
        shutil.rmtree(work, ignore_errors=True)


def write_shard_summary(plan: ReleasePlan, result: MatrixResult) -> Path:
    """``<output_dir>/edgepack-shard-I-of-N.json``: this shard, the whole matrix (each job
    with its shard and package folder) and this shard's outcomes, written atomically."""
    from edgepack.release.shard import SUMMARY_SCHEMA

    doc = {
        "schema": SUMMARY_SCHEMA,
        "shard": plan.shard.to_dict(),
        "config": None if plan.config is None else str(plan.config),
        "matrix": [
            {"id": t.id, "model": t.model, "shard": t.shard, "package": t.dest.name}
            for t in plan.matrix
        ],
        **result.to_dict(),
    }
    plan.output_dir.mkdir(parents=True, exist_ok=True)
    dest = plan.output_dir / plan.shard.summary_name
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, dest)
    return dest


def _warm() -> None:
    _exit_on_stop(_warm_imports)


def _warm_imports() -> None:
    """Import the heavy libraries in a fresh worker before it gets a target."""
    from edgepack._quiet import quiet_native

    with quiet_native():
        import litert_torch  # noqa: F401
        import torch  # noqa: F401
        from ai_edge_litert import interpreter  # noqa: F401


class _Pool:
    """A "spawn" process pool whose progress messages come back through a queue."""

    def __init__(self, jobs: int, progress: Progress) -> None:
        self.mp = multiprocessing.get_context("spawn")
        self.queue = self.mp.Queue()
        self.progress = progress
        self.stop = threading.Event()
        self.reader = threading.Thread(target=self._drain, daemon=True)
        self.reader.start()
        self.pool = self._executor(jobs)
        self.extra: list[ProcessPoolExecutor] = []  # one-target pools of a crash re-run
        self.warm = [self.pool.submit(_warm) for _ in range(jobs)]
        self.futures: dict[str, tuple[TargetJob, Any, Future[dict[str, Any]] | None]] = {}

    def _executor(self, jobs: int) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=jobs,
            mp_context=self.mp,
            initializer=_init_worker,
            initargs=(self.queue, os.getpid()),
        )

    def _drain(self) -> None:
        while not self.stop.is_set() or not self.queue.empty():
            try:
                tid, msg = self.queue.get(timeout=0.1)
            except queue_mod.Empty:
                continue
            except (EOFError, OSError):
                return
            self.progress(tid, msg)

    def submit(self, targets: list[TargetJob], shared: Any) -> None:
        """Queue one model's targets (they share its export)."""
        for t in targets:
            try:
                future = self.pool.submit(_build_target_worker, t, shared)
            except BrokenProcessPool:  # a worker died already: built again alone in results()
                future = None
            self.futures[t.id] = (t, shared, future)

    def results(self) -> dict[str, dict[str, Any]]:
        """Wait for every submitted target."""
        raw: dict[str, dict[str, Any]] = {}
        lost: list[tuple[TargetJob, Any]] = []
        for t, shared, future in self.futures.values():
            if future is None:
                lost.append((t, shared))
                continue
            try:
                raw[t.id] = future.result()
            except BrokenProcessPool:
                lost.append((t, shared))  # a worker died: every unfinished target fails
        # One crash must not take the other targets down: each lost target is built again
        # alone, in a fresh process, so only the one that crashes again is reported.
        for t, shared in lost:
            with self._executor(1) as alone:
                self.extra.append(alone)
                try:
                    raw[t.id] = alone.submit(_build_target_worker, t, shared).result()
                except BrokenProcessPool as exc:
                    raw[t.id] = {
                        "status": Status.FAILED.value,
                        "message": f"the build process for {t.id} died: {exc}",
                        "hint": "a crash or an out-of-memory kill; `--jobs 1` runs it in this "
                        "process, where the crash shows",
                    }
        return raw

    def close(self) -> None:
        # Workers tear down torch on their own time; the results are in, nobody waits.
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.stop.set()
        self.reader.join(timeout=5)

    def terminate(self, grace_s: float = 20.0) -> None:
        """The build is interrupted: tell every worker to stop (each removes its temporary
        folders while it unwinds), wait for them, kill the ones still running."""
        procs = [p for ex in (self.pool, *self.extra) for p in list((ex._processes or {}).values())]
        for p in procs:
            with contextlib.suppress(OSError, ValueError):
                p.terminate()
        deadline = time.monotonic() + grace_s
        for p in procs:
            with contextlib.suppress(OSError, ValueError, AssertionError):
                p.join(max(0.0, deadline - time.monotonic()))
                if p.is_alive():
                    p.kill()
                    p.join(5)


def _outcome(job: TargetJob, raw: dict[str, Any]) -> TargetOutcome:
    out = TargetOutcome(
        id=job.id,
        target=job.plan.target.name,
        # the mode the build chose from the profile's list (the first one before it ran)
        mode=((raw.get("manifest") or {}).get("quantization") or {}).get("mode")
        or job.plan.mode.value,
        dest=job.dest,
        status=Status(raw["status"]),
        manifest=raw.get("manifest"),
        message=raw.get("message", ""),
        hint=raw.get("hint", ""),
        ray=raw.get("ray") or {},
    )
    if out.manifest is None:
        if out.status is Status.GATE_FAILED:  # a gate inside the build: no package written
            out.gates.append(_build_gate(job, out.message))
        return out
    # A rebuild keeps the replaced package's bench/ (stages/package.py); the results that
    # measured these very model bytes (reproducible builds) still count for the gates.
    sha = out.manifest["model"]["sha256"]
    out.restored_bench = [
        n
        for n, _, d in _bench_results(job.dest / "bench")
        if (d.get("package") or {}).get("model_sha256") == sha
    ]
    out.gates = evaluate_gates(job.gates, out.manifest, job.dest, job.latency_result)
    write_gate_record(job.dest, sha, out.gates)
    failed = [g for g in out.gates if g.status in (GateStatus.FAIL, GateStatus.NO_DATA)]
    if failed:
        out.status = Status.GATE_FAILED
        out.message = "; ".join(
            f"{g.gate}: {g.value} > {g.limit}" if g.value is not None else f"{g.gate}: {g.detail}"
            for g in failed
        )
        out.hint = "the package was written (inspect it); the release gate fails the pipeline"
    return out


def gate_record_path(package: Path) -> Path:
    """Where a matrix build leaves the release gates it evaluated on a written package:
    beside it (``dist/<name>-<target>.gates.json``), so the package's own files stay as built
    and `edgepack report` can show every gate."""
    return package.parent / f"{package.name}.gates.json"


def write_gate_record(package: Path, model_sha256: str, gates: list[GateResult]) -> None:
    doc = {
        "schema_version": 1,
        "package": package.name,
        "model_sha256": model_sha256,
        "gates": [g.to_dict() for g in gates],
    }
    dest = gate_record_path(package)
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, dest)


def _build_gate(job: TargetJob, message: str) -> GateResult:
    """The gate a build stopped on, from its GateError message."""
    m = re.search(r"budget gate failed: (\w+) ([\d.]+) > ([\d.]+)", message)
    if m:
        return GateResult(
            m.group(1), float(m.group(3)), float(m.group(2)), GateStatus.FAIL, message
        )
    m = re.search(r"fidelity gate failed: output cosine vs the float model ([\d.]+)", message)
    if m:
        limit_f = job.gates.min_fidelity
        return GateResult(
            "min_fidelity",
            float("nan") if limit_f is None else limit_f,
            float(m.group(1)),
            GateStatus.FAIL,
            message,
        )
    m = re.search(r"top-1 dropped ([\d.]+) points", message)
    limit = job.gates.max_accuracy_drop
    return GateResult(
        "max_accuracy_drop",
        float("nan") if limit is None else limit,
        float(m.group(1)) if m else None,
        GateStatus.FAIL,
        message,
    )


def summary_rows(result: MatrixResult) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for o in result.outcomes:
        d = o.to_dict()
        size = f"{d['size_bytes'] / 1024:.1f} KB" if d["size_bytes"] else "-"
        acc = (
            f"{d['accuracy']:.2f}% ({d['accuracy_drop']:+.2f})"
            if d["accuracy"] is not None
            else ("not measured" if o.manifest is not None else "-")
        )
        gates = ", ".join(
            f"{g.gate.split(' ')[0].removeprefix('max_')} {g.status.value}" for g in o.gates
        )
        rows.append((o.id, o.mode, size, acc, gates or "-", o.status.value))
    return rows


SUMMARY_HEADERS = ("target", "mode", "size", "top-1 (drop)", "gates", "status")
