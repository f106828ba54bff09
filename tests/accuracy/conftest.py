"""Fixtures of the accuracy tests: tiny models made sensitive to int8 (checked-in weights)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
MODELS = HERE / "sensitive_models.py"
sys.path.insert(0, str(HERE))


@pytest.fixture(scope="session")
def digits_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import sensitive_models

    return sensitive_models.write_digits_files(tmp_path_factory.mktemp("digits"))


@pytest.fixture(scope="session")
def encoder_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import sensitive_models

    return sensitive_models.write_encoder_files(tmp_path_factory.mktemp("encoder"))


@pytest.fixture(scope="session")
def plain_package(digits_files, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The digits CNN built full-int8 without a gate: the core route's numbers, measured in
    this run, that the gated and fallback builds are checked against."""
    from edgepack.cli import main

    out = tmp_path_factory.mktemp("plain") / "pkg"
    # full-int8 as it comes out (~40 points lost): explicitly ungated
    assert main(digits_args(digits_files, out, "--no-accuracy-gate")) == 0
    return out


def digits_args(files: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return [
        "build",
        f"{MODELS}:build_digits",
        "--weights",
        str(files["weights"]),
        "--input-shape",
        "1x1x8x8",
        "--target",
        "rpi4",
        "--calibration",
        str(files["calib"]),
        "--eval",
        str(files["eval"]),
        "-o",
        str(out),
        "--latency-runs",
        "0",
        "--quiet",
        *extra,
    ]


def encoder_args(files: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return [
        "build",
        f"{MODELS}:build_encoder",
        "--weights",
        str(files["weights"]),
        "--input-shape",
        "ids=1x16:int64",
        "--target",
        "rpi4",
        "--calibration",
        str(files["calib"]),
        "-o",
        str(out),
        "--latency-runs",
        "0",
        "--quiet",
        *extra,
    ]
