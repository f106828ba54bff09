"""The documented pieces exist and say what the code does: the CI example, exit codes,
completion (fast)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from edgepack.errors import GateError
from edgepack.release.verify import VerifyError
from tests.release.conftest import REPO, run_cli


def test_ci_example_builds_verifies_benchmarks_and_uploads_the_report() -> None:
    wf = yaml.safe_load((REPO / "docs" / "ci-example.yml").read_text())
    steps = [s for job in wf["jobs"].values() for s in job["steps"]]
    runs = "\n".join(s.get("run", "") for s in steps)
    assert "edgepack build --dry-run" in runs
    assert "edgepack build --force" in runs
    assert "edgepack verify" in runs
    assert "--baseline" in runs and "--max-regression 10%" in runs
    assert "edgepack report dist/ -o report.html" in runs
    uploads = [s for s in steps if str(s.get("uses", "")).startswith("actions/upload-artifact")]
    assert any("report.html" in u["with"]["path"] for u in uploads)
    assert wf["jobs"]["merge"]["needs"] == "build"
    assert wf["jobs"]["benchmark"]["needs"] == "merge"


def test_ci_example_runs_every_shard_and_merges_them() -> None:
    import re

    wf = yaml.safe_load((REPO / "docs" / "ci-example.yml").read_text())
    build = wf["jobs"]["build"]
    shards = build["strategy"]["matrix"]["shard"]
    build_runs = "\n".join(s.get("run", "") for s in build["steps"])
    counts = {int(n) for n in re.findall(r"--shard \$\{\{ matrix\.shard \}\}/(\d+)", build_runs)}
    assert len(counts) == 1, counts  # one N for the dry run and the build
    (n,) = counts
    assert sorted(shards) == list(range(1, n + 1))  # every I in 1..N, once
    assert "edgepack build --force --shard" in build_runs
    (upload,) = [s for s in build["steps"] if "upload-artifact" in str(s.get("uses", ""))]
    assert upload["with"]["path"] == "dist/" and "matrix.shard" in upload["with"]["name"]
    assert upload["if"] == "always()"
    merge = wf["jobs"]["merge"]
    (download,) = [s for s in merge["steps"] if "download-artifact" in str(s.get("uses", ""))]
    folder = download["with"]["path"]
    merge_runs = "\n".join(s.get("run", "") for s in merge["steps"])
    assert f"edgepack verify {folder}/" in merge_runs
    assert f"edgepack report {folder}/" in merge_runs
    # edgepack is installed from the checkout (it is not published on a package index).
    for job in wf["jobs"].values():
        installs = [s["run"] for s in job["steps"] if "install" in s.get("run", "")]
        assert installs, job
        for run in installs:
            assert "make install" in run or "-c constraints.txt -e ." in run, run
            assert "pip install edgepack" not in run
        assert job["steps"][0]["uses"].startswith("actions/checkout")


def test_readme_documents_the_exit_codes() -> None:
    readme = (REPO / "README.md").read_text()
    table = readme[readme.index("## Errors and exit codes") :]
    for code, err in ((GateError.exit_code, "a gate failed"), (VerifyError.exit_code, "verify")):
        line = next(ln for ln in table.splitlines() if ln.startswith(f"| {code} |"))
        assert err in line
    assert "--install-completion" in readme and "docs/ci-example.yml" in readme


def test_shell_completion() -> None:
    # typer's completion options exit the process themselves: run the real CLI.
    shown = subprocess.run(
        [sys.executable, "-m", "edgepack", "--show-completion", "bash"],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert "_edgepack_completion" in shown.stdout and "complete " in shown.stdout
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "_EDGEPACK_COMPLETE": "complete_bash",
        "COMP_WORDS": "edgepack build --dry",
        "COMP_CWORD": "2",
    }
    done = subprocess.run(
        [sys.executable, "-m", "edgepack"], env=env, capture_output=True, text=True, check=True
    )
    assert done.stdout.split() == ["--dry-run"]


def test_every_release_command_has_json() -> None:
    for cmd in (["build"], ["init"], ["verify"], ["report"], ["inspect"], ["targets", "list"]):
        code, out, _ = run_cli([*cmd, "--help"], REPO)
        assert code == 0 and "--json" in out, cmd


def test_the_chromium_setup_script_is_run_by_the_test_setup() -> None:
    script = REPO / "scripts" / "setup.d" / "40-chromium.sh"
    assert os.access(script, os.X_OK)
    text = script.read_text()
    assert "apt-get install" in text and "chromium" in text and "/usr/bin/chromium" in text
    assert (
        "for step in scripts/setup.d/*.sh" in (REPO / "scripts" / "setup-test-env.sh").read_text()
    )
    # No mirror or URL is written into the script: apt uses the machine's own sources.
    assert "http://" not in text and "https://" not in text
    for host in _apt_hosts():
        assert host not in text


def _apt_hosts() -> set[str]:
    """Host names of this machine's apt sources, read at run time (never written here)."""
    import re

    hosts: set[str] = set()
    for src in [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").glob("*")]:
        if src.is_file():
            hosts.update(re.findall(r"https?://([^/\s]+)", src.read_text(errors="replace")))
    return hosts
