"""Fixtures of the accuracy tests: tiny models made sensitive to int8, trained once per session."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
MODELS = HERE / "sensitive_models.py"
sys.path.insert(0, str(HERE))

DIGITS_GAIN = 300.0  # conv1 channel 0 x300, conv2 reads it /300: same float function
ENCODER_SINK = 1000.0  # token 0 carries two residual channels of size 1000


@pytest.fixture(scope="session")
def digits_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import sensitive_models
    import torch

    torch.set_num_threads(1)
    return sensitive_models.write_digits_files(tmp_path_factory.mktemp("digits"), DIGITS_GAIN)


@pytest.fixture(scope="session")
def encoder_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import sensitive_models
    import torch

    torch.set_num_threads(1)
    return sensitive_models.write_encoder_files(tmp_path_factory.mktemp("encoder"), ENCODER_SINK)


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
