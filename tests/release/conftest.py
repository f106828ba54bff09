"""A real release: the bundled digits model built from an edgepack.toml for three targets.

Built once per test session (about 20 s on 2 cores): rpi4 (full-int8) and host
(dynamic-range) succeed; "tiny" is a custom profile whose 10 KB model budget makes its build
fail, so the matrix must keep the other two packages and exit 3.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from edgepack.cli import main

REPO = Path(__file__).resolve().parents[2]
DIGITS = REPO / "examples" / "digits"

TINY_PROFILE = """\
schema = 1
name = "tiny"
description = "A board with a 10 KB model budget (the digits CNN cannot fit)"

[device]
arch = "aarch64"
cores = 1
ram_mb = 64

[runtime]
name = "tflite-runtime"
threads = 1

[quantization]
mode = "full-int8"

[budgets]
max_model_kb = 10

[bench]
transport = "ssh"
"""

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
latency_runs = 20

[[targets]]
target = "rpi4"
[targets.gates]
max_model_kb = 200
max_latency_ms = 1000

[[targets]]
target = "host"

[[targets]]
target = "boards/tiny.toml"
"""


def make_project(root: Path, config: str = CONFIG) -> Path:
    """A user's repository: the model code, weights, data and an edgepack.toml."""
    root.mkdir(parents=True, exist_ok=True)
    for f in ("model.py", "weights.pt", "calib.npz", "eval.npz"):
        shutil.copyfile(DIGITS / f, root / f)
    (root / "boards").mkdir(exist_ok=True)
    (root / "boards" / "tiny.toml").write_text(TINY_PROFILE)
    (root / "edgepack.toml").write_text(config)
    return root


@contextlib.contextmanager
def chdir(path: Path) -> Iterator[None]:
    old = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def run_cli(argv: list[str], cwd: Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with chdir(cwd), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


@dataclass(frozen=True)
class Release:
    project: Path
    dist: Path
    code: int
    stdout: str
    stderr: str

    def package(self, target: str) -> Path:
        return self.dist / f"digits-{target}"


@pytest.fixture(scope="session")
def release(tmp_path_factory: pytest.TempPathFactory) -> Release:
    project = make_project(tmp_path_factory.mktemp("repo"))
    code, out, err = run_cli(["build", "--quiet"], project)
    return Release(project, project / "dist", code, out, err)


@pytest.fixture
def package_copy(release: Release, tmp_path: Path) -> Path:
    """A copy of the rpi4 package that a test may tamper with."""
    dest = tmp_path / "digits-rpi4"
    copy_package(release.package("rpi4"), dest)
    return dest


def copy_package(src: Path, dest: Path) -> Path:
    """The package as built (bench/ results that other tests added are left out)."""
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("bench"))
    return dest
