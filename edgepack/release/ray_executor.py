"""The Ray executor of a matrix build: every target is a Ray task on a cluster.

    driver: load + torch.export (once) -> ray.put(.pt2 bytes, input files) ->
        one task per target (declared CPUs and memory; retried when its node is lost)
    worker: its own temporary folder <- the .pt2 and the input files (no shared file system)
        -> convert -> quantize -> validate -> package -> the package's files as bytes
    driver: write each package into dist/ with the local build's own writer (temporary
        folder, then rename), then the release gates -> the same summary as the local matrix

Ray is an optional extra (``pip install 'edgepack[ray]'``), imported only here and only
when the executor is used. Workers need edgepack (the same version) installed, and a model
given as ``module.path:factory`` importable there; a ``model.py:factory`` file, a .pt2, the
weights and the data files are shipped through the object store.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgepack.errors import DeviceError, EdgepackError, UsageError
from edgepack.release.config import TargetJob

INSTALL_HINT = "pip install 'edgepack[ray]' (Ray is an optional extra)"
LOCAL = "local"  # --address local: start a Ray instance inside this process
CONNECT_TIMEOUT_S = 5.0
POLL_S = 0.25
# Exceptions of the task wrapper (materialising inputs, reading the package back) worth a
# retry; a build problem is never raised (it is the task's result), so never retried.
RETRY_EXCEPTIONS = (OSError, MemoryError)


class ClusterError(DeviceError):
    """The Ray cluster cannot be reached or cannot run a build task. Exit code 4."""


@dataclass(frozen=True)
class RayOptions:
    """Where and how the targets of a matrix run on Ray ([build.ray] in edgepack.toml)."""

    address: str  # host:port of the head, ray://host:port (Ray Client), auto, or local
    cpus: float = 1.0  # num_cpus declared by each target's task
    memory_mb: int = 2048  # memory declared by each target's task
    max_retries: int = 2  # reruns of a task whose worker or node died


def executor_options(
    executor: str | None, address: str | None, section: Any, env: dict[str, str] | None = None
) -> RayOptions | None:
    """The executor a build uses: ``--executor`` else ``[build] executor``; None is local.

    The Ray address: ``--address``, else ``[build.ray] address``, else RAY_ADDRESS. There is
    no silent default: ``local`` must be asked for to start Ray on this machine.
    """
    env = dict(os.environ) if env is None else env
    ray_section = getattr(section, "ray", None)
    name = executor or getattr(section, "executor", None) or "local"
    if name not in ("local", "ray"):
        raise UsageError(f"unknown executor '{name}'", "accepted: local, ray")
    if name == "local":
        if address is not None:
            raise UsageError("--address is for the Ray executor", "add --executor ray")
        return None
    addr = address or getattr(ray_section, "address", None) or env.get("RAY_ADDRESS") or None
    if not addr:
        raise UsageError(
            "the ray executor needs the address of a Ray cluster",
            "pass --address HOST:PORT (the head's GCS port, `ray start --head` prints it), set "
            "RAY_ADDRESS or [build.ray] address, or pass --address local to start Ray on this "
            "machine",
        )
    if ray_section is None:
        return RayOptions(address=addr)
    return RayOptions(
        address=addr,
        cpus=ray_section.cpus,
        memory_mb=ray_section.memory_mb,
        max_retries=ray_section.max_retries,
    )


# --------------------------------------------------------------------------- driver


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise UsageError(f"the ray executor needs the ray package ({exc})", INSTALL_HINT) from exc
    return ray


def _host_port(address: str) -> tuple[str, int] | None:
    """host and port of an address to probe before Ray tries (for minutes) to reach it."""
    m = re.fullmatch(r"(?:ray://)?\[?([^\]\s/]+?)\]?:(\d{1,5})", address.strip())
    return None if m is None else (m.group(1), int(m.group(2)))


def _probe(address: str) -> None:
    hp = _host_port(address)
    if address == "auto":
        return
    if hp is None:
        raise UsageError(
            f"invalid Ray address '{address}'",
            "use HOST:PORT (e.g. 10.0.0.5:6379), ray://HOST:10001, auto, or local",
        )
    try:
        with socket.create_connection(hp, timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        raise ClusterError(
            f"cannot reach the Ray cluster at {address}: {exc.strerror or exc}",
            "start it with `ray start --head` (it prints the address) or fix --address / "
            "RAY_ADDRESS",
        ) from exc


_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))


def _handlers() -> dict[int, Any]:
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {s: signal.getsignal(s) for s in _SIGNALS}


def _restore(saved: dict[int, Any]) -> None:
    for s, handler in saved.items():
        if handler is not None:
            signal.signal(s, handler)


class RayMatrix:
    """A driver connected to a Ray cluster: builds a plan's targets there."""

    def __init__(self, options: RayOptions) -> None:
        self.options = options
        self.ray = _import_ray()
        self.refs: dict[Any, TargetJob] = {}
        self.queue: Any = None
        self._printer: Any = None
        self.submitted: dict[str, float] = {}
        if options.address != LOCAL:
            _probe(options.address)
        import logging

        kwargs: dict[str, Any] = {
            "logging_level": logging.ERROR,
            "log_to_driver": False,  # the workers' TensorFlow chatter stays in the logs
            "configure_logging": True,
        }
        # Ray's core installs its own fatal-signal handler for SIGTERM (it aborts the process);
        # the CLI's handlers come back, so SIGTERM unwinds and cancels the tasks like Ctrl-C.
        saved = _handlers()
        try:
            if options.address == LOCAL:
                self.ray.init(include_dashboard=False, **kwargs)
            else:
                self.ray.init(address=options.address, **kwargs)
            _restore(saved)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ClusterError(
                f"cannot connect to the Ray cluster at {options.address}: "
                f"{str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}",
                "check the address and that this Python and Ray match the cluster's versions",
            ) from exc
        self._quiet_cluster_errors()
        self._check_resources()

    def _quiet_cluster_errors(self) -> None:
        """Ray prints the cluster's error messages (a raylet died, ...) on stdout, whole
        state dumps included; stdout carries --json. One line each goes to stderr instead."""
        from ray._private import worker

        self._printer = getattr(worker, "print_to_stdstream", None)

        def to_stderr(data: dict[str, Any], ignore_prefix: bool) -> None:
            del ignore_prefix
            for line in data.get("lines") or []:
                first = (str(line).strip().splitlines() or [""])[0]
                print(f"ray: {first}", file=sys.stderr)

        if self._printer is not None:
            worker.print_to_stdstream = to_stderr

    def _check_resources(self) -> None:
        """Fail now, not hang: a task no node can hold would wait for ever."""
        need_mem = self.options.memory_mb * 1024 * 1024
        nodes = [n for n in self.ray.nodes() if n.get("Alive")]
        fits = [
            n
            for n in nodes
            if (n.get("Resources") or {}).get("CPU", 0) >= self.options.cpus
            and (n.get("Resources") or {}).get("memory", 0) >= need_mem
        ]
        if not fits:
            have = ", ".join(
                f"{(n.get('Resources') or {}).get('CPU', 0):g} CPU / "
                f"{(n.get('Resources') or {}).get('memory', 0) / 2**20:.0f} MB"
                for n in nodes
            )
            self.close()
            raise ClusterError(
                f"no node of the Ray cluster can run a build task (needs {self.options.cpus:g} "
                f"CPU and {self.options.memory_mb} MB; nodes: {have or 'none'})",
                "lower [build.ray] cpus / memory_mb, or add a bigger node to the cluster",
            )

    def build(
        self, jobs: Sequence[TargetJob], shared: Any, progress: Any
    ) -> dict[str, dict[str, Any]]:
        """Run every target of one model (``jobs``, sharing the export ``shared``) as a task;
        write each finished package; return the raw results (the local matrix's shape) by
        target id."""
        from ray.util.queue import Queue

        ray = self.ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        # The progress queue lives on the driver's node, and comes back if its node is lost
        # (the messages it held are lost with it: progress is best effort).
        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=True)
        if self.queue is None:  # one per matrix, for every model's tasks
            self.queue = Queue(
                actor_options={"num_cpus": 0, "scheduling_strategy": here, "max_restarts": -1}
            )
        pt2 = ray.put(Path(shared.exported.path).read_bytes())
        inputs, where = _collect_inputs(jobs, shared)
        bundle = ray.put(inputs)
        task = ray.remote(_ray_task).options(
            num_cpus=self.options.cpus,
            memory=self.options.memory_mb * 1024 * 1024,
            max_retries=self.options.max_retries,
            retry_exceptions=list(RETRY_EXCEPTIONS),
        )
        for job in jobs:
            progress(job.id, "queued: waiting for a Ray worker")
            self.refs[task.remote(job, shared, where, pt2, bundle, self.queue)] = job
            self.submitted[job.id] = time.time()
        raw: dict[str, dict[str, Any]] = {}
        pending = [ref for ref, job in self.refs.items() if job in jobs]
        # A Python exception raised by a signal handler inside ray.wait (native code) comes
        # out as a SystemError: while waiting, a signal is noted, then handled here.
        signals: list[int] = []
        saved = {s: h for s, h in _handlers().items() if h is not signal.SIG_IGN}
        for s in saved:
            signal.signal(s, lambda signum, frame: signals.append(signum))
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1, timeout=POLL_S)
                if signals:
                    self._stop(signals[0], saved)
                self._drain(progress)
                for ref in done:
                    job = self.refs[ref]
                    raw[job.id] = self._finish(ref, job)
            self._drain(progress)
        finally:
            _restore(saved)
        return raw

    def _stop(self, signum: int, saved: dict[int, Any]) -> None:
        """A signal arrived while waiting: the caller's handler runs now (the CLI's raises,
        and the matrix cancels the tasks while it unwinds); a default one ends the process
        after the tasks are cancelled."""
        _restore(saved)
        handler = saved.get(signum)
        if callable(handler):
            handler(signum, None)
        self.cancel()
        signal.raise_signal(signum)

    def _drain(self, progress: Any) -> None:
        from ray.util.queue import Empty

        while self.queue is not None:
            try:
                items = self.queue.get_nowait_batch(self.queue.qsize())
            except (Empty, ValueError):
                return
            except self.ray.exceptions.RayError:  # the queue restarts: the build goes on
                return
            if not items:
                return
            for tid, msg, node, elapsed in items:
                # "[rpi4 @ <node ip> <node id>, <since queued> s] <stage>  (task <s> s)"
                progress(tid, f"{msg}  (task {elapsed:.1f} s)", node=node)

    def _finish(self, ref: Any, job: TargetJob) -> dict[str, Any]:
        from edgepack.release.matrix import Status

        ray = self.ray
        try:
            raw: dict[str, Any] = ray.get(ref)
        except ray.exceptions.RayError as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            return {
                "status": Status.FAILED.value,
                "message": f"the Ray task for {job.id} failed after "
                f"{self.options.max_retries + 1} attempt(s): {type(exc).__name__}: {first}",
                "hint": "a worker node was lost or its build process died (out of memory?); "
                "see the cluster's logs (`ray logs`), then build again",
            }
        files = raw.pop("files", None)
        if files is not None:
            try:
                raw["manifest"] = install_package(job, files)
            except EdgepackError as err:
                raw = {**raw, "status": Status.FAILED.value, "message": err.message}
                raw["hint"] = err.hint
        raw["ray"] = _timings(raw.get("ray") or {}, self.submitted[job.id], time.time())
        return raw

    def cancel(self) -> None:
        """The driver is interrupted: stop every task (force: the worker process ends)."""
        for ref in self.refs:
            with contextlib.suppress(Exception):
                self.ray.cancel(ref, force=True, recursive=True)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ray.shutdown()
        if getattr(self, "_printer", None) is not None:
            from ray._private import worker

            worker.print_to_stdstream = self._printer


def _timings(ray: dict[str, Any], submitted: float, done: float) -> dict[str, Any]:
    """Where a task's time went (seconds): ``wait`` from submission to its start on a worker
    (queueing behind other tasks, scheduling, worker start-up), ``build`` inside the build,
    ``overhead`` the rest of the task's life: inputs written on the worker, the package sent
    back and written into dist/."""
    if "started_at" not in ray:
        return {}
    return {
        "node": ray["node"],
        "wait_s": round(ray["started_at"] - submitted, 3),
        "build_s": round(ray["build_s"], 3),
        "overhead_s": round(done - ray["started_at"] - ray["build_s"], 3),
    }


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def install_package(job: TargetJob, files: dict[str, bytes]) -> dict[str, Any]:
    """Write a package built by a worker (its files by name) into ``job.dest`` with the local
    build's writer: a hidden temporary folder renamed into place, an existing package replaced
    only with --force (its bench/ and analysis/ kept). Returns the manifest."""
    from edgepack.errors import PackageError, storage_errors
    from edgepack.manifest import MANIFEST_NAME
    from edgepack.stages import package as package_stage

    bad = [n for n in files if not _NAME.match(n) or not isinstance(files[n], bytes)]
    if bad or MANIFEST_NAME not in files:
        raise PackageError(
            f"the Ray worker returned a malformed package for {job.id} "
            f"({'file names ' + ', '.join(map(repr, bad)) if bad else 'no manifest'})",
            "the worker runs another edgepack version? install the same one on every node",
        )
    manifest = json.loads(files[MANIFEST_NAME].decode("utf-8"))
    package_stage.check_destination(job.dest, job.plan.force)
    with storage_errors():
        staging = Path(tempfile.mkdtemp(prefix=f".{job.dest.name}.in-", dir=job.dest.parent))
        try:
            paths = {}
            for name, data in files.items():
                if name != MANIFEST_NAME:
                    (staging / name).write_bytes(data)
                    paths[name] = staging / name
            package_stage.write_package(
                job.dest, files=paths, texts={}, manifest=manifest, force=job.plan.force
            )
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    result: dict[str, Any] = manifest
    return result


# --------------------------------------------------------------------------- inputs


def _file_source(source: str) -> Path | None:
    """The file a model source names (a .pt2, or the .py of file.py:factory), else None."""
    if source.endswith(".pt2"):
        return Path(source)
    spec, sep, _ = source.rpartition(":")
    if sep and (spec.endswith(".py") or "/" in spec or "\\" in spec):
        return Path(spec)
    return None


def _read_input(path: Path) -> dict[str, bytes]:
    """A data file, or every file under a data folder (relative posix names)."""
    if path.is_dir():
        return {
            p.relative_to(path).as_posix(): p.read_bytes()
            for p in sorted(path.rglob("*"))
            if p.is_file()
        }
    return {"": path.read_bytes()}


def _collect_inputs(
    jobs: Sequence[TargetJob], shared: Any
) -> tuple[dict[str, tuple[str, dict[str, bytes]]], dict[str, str]]:
    """Every file a worker reads, read once here: key -> (base name, contents), and
    driver path -> key."""
    inputs: dict[str, tuple[str, dict[str, bytes]]] = {}
    where: dict[str, str] = {}

    def add(p: Any) -> None:
        if p is None:
            return
        path = Path(p)
        k = str(path)
        if k in where:
            return
        key = f"i{len(inputs)}"
        inputs[key] = (path.name, _read_input(path))
        where[k] = key

    for job in jobs:
        bp = job.plan
        if bp.memory_model is not None:
            raise UsageError(
                "the ray executor builds from files, not from an in-memory model",
                "use the local executor for models given as Python objects",
            )
        add(_file_source(bp.source))
        add(_file_source(shared.source))
        for p in (bp.weights, shared.weights, bp.calibration, bp.eval):
            add(p)
        if bp.distill is not None:
            add(bp.distill.train)
    return inputs, where


def _materialize(inputs: dict[str, tuple[str, dict[str, bytes]]], root: Path) -> dict[str, Path]:
    """Write the shipped files under ``root`` (each in its own folder, its base name kept:
    manifests record data files by name). Returns key -> path."""
    out: dict[str, Path] = {}
    for key, (name, contents) in inputs.items():
        folder = root / key
        folder.mkdir(parents=True)
        dest = folder / name
        for rel, data in contents.items():
            target = dest if rel == "" else dest / rel
            if rel and (".." in Path(rel).parts or Path(rel).is_absolute()):
                raise ValueError(f"unsafe file name in a shipped folder: {rel!r}")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        if not contents:
            dest.mkdir()
        out[key] = dest
    return out


def _rebase_source(source: str, paths: dict[str, Path], where: dict[str, str]) -> str:
    f = _file_source(source)
    if f is None:
        return source
    new = paths[where[str(f)]]
    if source.endswith(".pt2"):
        return str(new)
    return f"{new}:{source.rpartition(':')[2]}"


def _rebase_plan(plan: Any, paths: dict[str, Path], where: dict[str, str]) -> Any:
    def moved(p: Any) -> Any:
        return None if p is None else paths[where[str(Path(p))]]

    label = plan.source_label
    if label is None and not plan.source.endswith(".pt2"):
        label = plan.source  # the manifest records the source as the driver spelled it
    changes: dict[str, Any] = {
        "source": _rebase_source(plan.source, paths, where),
        "source_label": label,
        "weights": moved(plan.weights),
        "calibration": moved(plan.calibration),
        "eval": moved(plan.eval),
    }
    if plan.distill is not None:
        changes["distill"] = dataclasses.replace(plan.distill, train=moved(plan.distill.train))
    return dataclasses.replace(plan, **changes)


# --------------------------------------------------------------------------- worker


def _node() -> str:
    import ray

    ctx = ray.get_runtime_context()
    # The address the node was started with (`ray start --node-ip-address`), else the IP of
    # this machine's default route: a name for progress lines only.
    try:
        ip = ray._private.worker.global_worker.node_ip_address
    except Exception:
        ip = None
    if not ip:
        try:
            ip = ray.util.get_node_ip_address()
        except Exception:
            ip = socket.gethostname()
    return f"{ip} {ctx.get_node_id()[:8]}"


def _ray_task(
    job: TargetJob,
    shared: Any,
    where: dict[str, str],
    pt2: bytes,
    inputs: dict[str, tuple[str, dict[str, bytes]]],
    queue: Any,
) -> dict[str, Any]:
    """One target on a Ray worker, in its own temporary folder; returns the build's result
    with the package's files as bytes (nothing is left on the node)."""
    from edgepack.release.matrix import Status, _build_target

    started_at = time.time()  # wall clock: the driver compares it with its own (timings)
    start = time.monotonic()
    node = _node()
    root = Path(tempfile.mkdtemp(prefix="edgepack-ray-"))
    out = root / "out"
    dest = out / job.dest.name

    def send(msg: str) -> None:
        msg = msg.replace(str(dest), str(job.dest))
        with contextlib.suppress(Exception):  # progress is best effort
            # Fire and forget: a blocking ray.get in a task lends its CPU to another task,
            # which would then run two builds on a node declared for one.
            queue.actor.put_nowait.remote((job.id, msg, node, time.monotonic() - start))

    try:
        send("started")
        paths = _materialize(inputs, root / "in")
        pt2_path = root / "export" / Path(shared.exported.path).name
        pt2_path.parent.mkdir()
        pt2_path.write_bytes(pt2)
        plan = _rebase_plan(job.plan, paths, where)
        here = dataclasses.replace(
            shared,
            source=_rebase_source(shared.source, paths, where),
            weights=None if shared.weights is None else paths[where[str(Path(shared.weights))]],
            exported=dataclasses.replace(shared.exported, path=pt2_path),
        )
        out.mkdir()
        built = time.monotonic()
        raw = _build_target(dataclasses.replace(job, plan=plan, dest=dest), here, send)
        build_s = time.monotonic() - built
        if raw["status"] == Status.OK.value:
            raw["files"] = {p.name: p.read_bytes() for p in sorted(dest.iterdir()) if p.is_file()}
        raw["ray"] = {
            "node": node,
            "started_at": started_at,
            "build_s": build_s,
            "task_s": time.monotonic() - start,
        }
        return raw
    finally:
        shutil.rmtree(root, ignore_errors=True)
        # A model file imported from this folder must not shadow the next task's copy.
        for name, mod in list(sys.modules.items()):
            if str(getattr(mod, "__file__", "") or "").startswith(str(root)):
                sys.modules.pop(name, None)
