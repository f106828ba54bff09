"""The Ray executor on a real local Ray cluster: a head and a second worker node on 127.0.0.1
(one CPU each, separate temporary folders), started and stopped by the ``cluster`` fixture.

The digits matrix built on it must give the local executor's packages byte for byte; a worker
node killed mid-build must leave either every package (the task reran on the head) or a clean
failure naming the target, never a partial package. Connection errors are one line, fast.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.release.conftest import REPO, make_project, run_cli

CONFIG = """\
schema = 1

[model]
source = "model.py:build_model"
weights = "weights.pt"
input_shapes = ["1x1x32x32"]
name = "digits"

[data]
calibration = "calib.npz"
eval = "eval.npz"

[gates]
max_accuracy_drop = 1.0

[build]
jobs = 2
latency_runs = 5

[build.ray]
memory_mb = 256

[[targets]]
target = "rpi4"

[[targets]]
target = "host"

[[targets]]
target = "android-arm64"
"""
TARGETS = ("rpi4", "host", "android-arm64")
BUILD_TIMEOUT_S = 900


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    env["RAY_AUTH_MODE"] = "disabled"  # a token left in ~/.ray by another Ray must not apply
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO), *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])]
    )
    env.pop("RAY_ADDRESS", None)
    return env


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _ppid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def _pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def _ours(folder: str) -> set[int]:
    """Every process of the Ray nodes started in ``folder`` (and their children)."""
    found = {pid for pid in _pids() if any(folder in a for a in _cmdline(pid))}
    grew = True
    while grew:
        kids = {pid for pid in _pids() if _ppid(pid) in found} - found
        grew = bool(kids)
        found |= kids
    found.discard(os.getpid())
    return found


def _raylet(folder: str) -> tuple[int, str]:
    """pid and node id of the raylet of the node whose --temp-dir is ``folder``."""
    for pid in _pids():
        args = _cmdline(pid)
        if args and args[0].endswith("/raylet") and f"--temp_dir={folder}" in args:
            node = next(a.split("=", 1)[1] for a in args if a.startswith("--node_id="))
            return pid, node
    raise AssertionError(f"no raylet for {folder}")


@dataclass(frozen=True)
class Cluster:
    address: str
    head_dir: str
    worker_dir: str

    @property
    def head_node(self) -> str:
        return _raylet(self.head_dir)[1][:8]

    @property
    def worker_node(self) -> str:
        return _raylet(self.worker_dir)[1][:8]


def _ray(*args: str, attempts: int = 1) -> None:
    cmd = [sys.executable, "-m", "ray.scripts.scripts", "start", *args]
    for attempt in range(attempts):
        out = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=180)
        if out.returncode == 0:
            return
        time.sleep(2 * (attempt + 1))  # a busy machine: the head's GCS may answer late
    raise AssertionError(out.stdout[-2000:] + out.stderr[-2000:])


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    pytest.importorskip("ray")
    # A short folder: Ray's socket paths under it must stay below the 107-byte limit.
    root = tempfile.mkdtemp(prefix="epray-")
    head, worker = f"{root}/h", f"{root}/w"
    port = _free_port()
    common = ["--num-cpus=1", "--object-store-memory=100000000", "--node-ip-address=127.0.0.1"]
    try:
        _ray(
            "--head",
            f"--port={port}",
            "--include-dashboard=false",
            "--disable-usage-stats",
            f"--temp-dir={head}",
            *common,
        )
        _ray(f"--address=127.0.0.1:{port}", f"--temp-dir={worker}", *common, attempts=3)
        yield Cluster(f"127.0.0.1:{port}", head, worker)
    finally:
        # Only this cluster's processes: never `ray stop` (it ends every Ray on the machine).
        pids = _ours(root)
        for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 0.0)):
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in pids):
                time.sleep(0.2)
        subprocess.run(["rm", "-rf", root], check=False)


def _edgepack(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgepack", *args],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
    )


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _comparable(manifest: dict) -> dict:
    """A manifest without what differs between two builds of the same bytes: timings and the
    build machine (the ``build`` section)."""
    return {k: v for k, v in manifest.items() if k != "build"}


def _no_partial(dist: Path) -> None:
    """Nothing half-written: no hidden staging folder, every package complete and hashed."""
    assert [p.name for p in dist.iterdir() if p.name.startswith(".")] == []
    for pkg in (p for p in dist.iterdir() if p.is_dir()):
        manifest = json.loads((pkg / "manifest.json").read_text())
        for name, entry in manifest["files"].items():
            assert _sha(pkg / name) == entry["sha256"], f"{pkg.name}/{name}"


@pytest.mark.slow
@pytest.mark.integration
def test_ray_matrix_is_byte_identical_to_the_local_one(cluster: Cluster, tmp_path: Path) -> None:
    project = make_project(tmp_path / "repo", CONFIG)
    # Both as a user runs them: one `edgepack build` process each (an export inside this
    # long-lived test process follows the history of the tests before it).
    built = _edgepack(["build", "--quiet", "--output-dir", "dist-local"], project)
    assert built.returncode == 0, built.stderr[-3000:]
    ray = _edgepack(["build", "--executor", "ray", "--address", cluster.address, "--json"], project)
    assert ray.returncode == 0, ray.stderr[-3000:]
    summary = json.loads(ray.stdout)
    assert [t["id"] for t in summary["targets"]] == list(TARGETS)
    assert {t["status"] for t in summary["targets"]} == {"ok"}
    nodes = {cluster.head_node, cluster.worker_node}
    ran_on = {t["ray"]["node"].split()[-1] for t in summary["targets"]}
    assert ran_on <= nodes, (ran_on, nodes)  # each target records the node that built it
    for t in summary["targets"]:  # and where its time went
        assert t["ray"]["build_s"] > 0 and t["ray"]["wait_s"] >= 0 and t["ray"]["overhead_s"] >= 0
    # One CPU per node, one CPU per task: a node never ran two builds at once (every task
    # was submitted within the same moment, so its start is its wait).
    spans = sorted(
        (t["ray"]["node"], t["ray"]["wait_s"], t["ray"]["wait_s"] + t["ray"]["build_s"])
        for t in summary["targets"]
    )
    for (n1, _, end), (n2, start, _) in itertools.pairwise(spans):
        assert n1 != n2 or start >= end - 1.0, spans
    for t in TARGETS:
        local = project / "dist-local" / f"digits-{t}"
        remote = project / "dist" / f"digits-{t}"
        assert sorted(p.name for p in remote.iterdir()) == sorted(p.name for p in local.iterdir())
        assert (remote / "model.tflite").read_bytes() == (local / "model.tflite").read_bytes()
        m_remote = json.loads((remote / "manifest.json").read_text())
        m_local = json.loads((local / "manifest.json").read_text())
        assert _comparable(m_remote) == _comparable(m_local)
        gates = json.loads((project / "dist" / f"digits-{t}.gates.json").read_text())
        assert gates["model_sha256"] == m_local["model"]["sha256"]
    _no_partial(project / "dist")


def _ray_build(project: Path, cluster: Cluster) -> subprocess.Popen[str]:
    """`edgepack build --executor ray` of ``project`` on ``cluster``, output piped."""
    return subprocess.Popen(
        [sys.executable, "-m", "edgepack", "build", "--executor", "ray"],
        cwd=project,
        env={**_env(), "RAY_ADDRESS": cluster.address},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
@pytest.mark.integration
def test_a_worker_node_killed_mid_build_loses_no_target(cluster: Cluster, tmp_path: Path) -> None:
    project = make_project(tmp_path / "repo", CONFIG)
    raylet, worker_id = _raylet(cluster.worker_dir)
    worker, head = worker_id[:8], cluster.head_node
    proc = _ray_build(project, cluster)
    killed: str | None = None
    lines: list[str] = []
    deadline = time.monotonic() + BUILD_TIMEOUT_S
    watchdog = threading.Timer(BUILD_TIMEOUT_S, proc.kill)  # a silent hang ends too
    watchdog.start()
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            m = re.match(r"\s*\[([\w-]+) @ \S+ (\w+), [\d.]+ s\] (\w+)\b", line)
            # Mid-build: the target has loaded its model on the worker node and converts.
            if killed is None and m and m.group(3) == "convert" and m.group(2) == worker:
                os.kill(raylet, signal.SIGKILL)
                killed = m.group(1)
            assert time.monotonic() < deadline, "the build did not finish"
        stdout = proc.stdout.read() if proc.stdout else ""
        code = proc.wait(timeout=60)
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = "".join(lines)
    assert killed is not None, f"no target was built on the worker node:\n{err}"
    dist = project / "dist"
    assert dist.is_dir(), f"exit {code}\n{stdout}\n{err}"
    _no_partial(dist)
    rows = {ln.split()[0]: ln for ln in stdout.splitlines() if ln.split()[:1] == [killed]}
    assert killed in rows, stdout  # the summary table names every target
    if code == 0:  # rerun on the head: every package was written
        assert sorted(p.name for p in dist.iterdir() if p.is_dir()) == sorted(
            f"digits-{t}" for t in TARGETS
        )
        # The task ran again on the head: Ray says so (the rerun's own progress lines are best
        # effort: the queue may drop them while the cluster recovers from the lost node).
        after = err[re.search(rf"\[{killed} @ \S+ {worker}, [\d.]+ s\] convert", err).start() :]
        rerun = re.search(rf"\[{killed} @ \S+ {head}, [\d.]+ s\] started", after)
        assert rerun or "the task will be retried" in after, err
        assert rows[killed].split()[-1] == "ok"
    else:  # or it failed cleanly: exit 2, named, no package for it
        assert code == 2, err
        assert f"{killed}: failed: the Ray task for {killed} failed" in err
        assert not (dist / f"digits-{killed}").exists()


def _running_tasks(folder: str) -> list[int]:
    """Worker processes of the cluster in ``folder`` running a target's build task."""
    return [p for p in _ours(folder) if any("_ray_task" in a for a in _cmdline(p))]


@pytest.mark.slow
@pytest.mark.integration
def test_sigterm_on_the_driver_cancels_its_tasks(cluster: Cluster, tmp_path: Path) -> None:
    project = make_project(tmp_path / "repo", CONFIG)
    root = str(Path(cluster.head_dir).parent)
    proc = _ray_build(project, cluster)
    watchdog = threading.Timer(BUILD_TIMEOUT_S, proc.kill)
    watchdog.start()
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            if re.search(r" s\] started  \(task ", line):
                break
        assert _running_tasks(root), "no build task was running"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "edgepack: stopped by SIGTERM; temporary files removed" in err
    dist = project / "dist"
    assert not dist.exists() or list(dist.iterdir()) == []  # nothing was finished yet
    deadline = time.monotonic() + 30
    while _running_tasks(root) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _running_tasks(root) == []  # cancelled, not left building for nobody


# --------------------------------------------------------------------------- errors (fast)


def test_an_unreachable_cluster_is_one_line_and_fast(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    project = make_project(tmp_path / "repo", CONFIG)
    closed = _free_port()  # nothing listens on it
    start = time.monotonic()
    code, out, err = run_cli(
        ["build", "--executor", "ray", "--address", f"127.0.0.1:{closed}"], project
    )
    assert code == 4
    assert err.splitlines()[0].startswith(
        f"error: cannot reach the Ray cluster at 127.0.0.1:{closed}"
    )
    assert err.splitlines()[1].startswith("hint: start it with `ray start --head`")
    assert len(err.splitlines()) == 2 and out == ""
    assert time.monotonic() - start < 30  # no export, no Ray retry loop
    assert not (project / "dist").exists()


def test_ray_missing_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = make_project(tmp_path / "repo", CONFIG)
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    code, _, err = run_cli(["build", "--executor", "ray", "--address", "127.0.0.1:1"], project)
    assert code == 2
    assert err.splitlines()[0].startswith("error: the ray executor needs the ray package")
    assert err.splitlines()[1] == "hint: pip install 'edgepack[ray]' (Ray is an optional extra)"


@pytest.mark.parametrize(
    ("args", "toml", "env", "message"),
    [
        (
            ["--executor", "ray"],
            "",
            {},
            "error: the ray executor needs the address of a Ray cluster",
        ),
        (
            [],
            'executor = "ray"\n',
            {},
            "error: the ray executor needs the address of a Ray cluster",
        ),
        (
            ["--executor", "ray", "--address", "nowhere"],
            "",
            {},
            "error: invalid Ray address 'nowhere'",
        ),
        (["--address", "10.0.0.5:6379"], "", {}, "error: --address is for the Ray executor"),
        (["--executor", "spark"], "", {}, "error: unknown executor 'spark'"),
        (
            ["--executor", "ray"],
            "",
            {"RAY_ADDRESS": "bad address"},
            "error: invalid Ray address 'bad address'",
        ),
    ],
)
def test_executor_input_errors(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    toml: str,
    env: dict[str, str],
    message: str,
) -> None:
    pytest.importorskip("ray")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    project = make_project(tmp_path / "repo", CONFIG.replace("[build]\n", "[build]\n" + toml))
    code, _, err = run_cli(["build", *args], project)
    assert code == 2
    assert err.splitlines()[0] == message or err.splitlines()[0].startswith(message)
    assert err.splitlines()[1].startswith("hint: ")


def test_the_dry_run_shows_the_ray_plan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    project = make_project(tmp_path / "repo", CONFIG)
    code, out, err = run_cli(
        ["build", "--dry-run", "--json", "--executor", "ray", "--address", "10.0.0.5:6379"],
        project,
    )
    assert code == 0, err
    assert json.loads(out)["executor"] == {
        "name": "ray",
        "address": "10.0.0.5:6379",
        "cpus": 1.0,
        "memory_mb": 256,
        "max_retries": 2,
    }


@pytest.mark.slow
@pytest.mark.integration
def test_a_task_no_node_can_hold_is_an_error_not_a_hang(cluster: Cluster, tmp_path: Path) -> None:
    project = make_project(
        tmp_path / "repo", CONFIG.replace("memory_mb = 256", "memory_mb = 100000000")
    )
    out = _edgepack(["build", "--executor", "ray", "--address", cluster.address], project)
    assert out.returncode == 4, out.stderr
    lines = out.stderr.strip().splitlines()
    assert lines[0].startswith(
        "error: no node of the Ray cluster can run a build task (needs 1 CPU and 100000000 MB; "
        "nodes: 1 CPU / "
    )
    assert lines[1] == (
        "hint: lower [build.ray] cpus / memory_mb, or add a bigger node to the cluster"
    )
    assert not (project / "dist").exists()


def test_a_malformed_package_from_a_worker_is_refused(tmp_path: Path) -> None:
    from edgepack.errors import PackageError
    from edgepack.release.config import Overrides, load_config, resolve
    from edgepack.release.ray_executor import install_package

    project = make_project(tmp_path / "repo", CONFIG)
    plan = resolve(load_config(project / "edgepack.toml"), project / "edgepack.toml", Overrides())
    job = plan.targets[0]
    for files, why in (
        ({"../evil": b"x", "manifest.json": b"{}"}, "file names '../evil'"),
        ({"model.tflite": b"x"}, "no manifest"),
    ):
        with pytest.raises(PackageError) as err:
            install_package(job, files)
        assert err.value.message == (
            f"the Ray worker returned a malformed package for rpi4 ({why})"
        )
    assert not job.dest.exists() and not (tmp_path / "evil").exists()
