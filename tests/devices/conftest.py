"""Fixtures of the device-side harness tests: a tiny converted model and a real external
delegate. They are the bench tests' helpers (tests/bench/bench_helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bench.bench_helpers import build_passthrough_delegate, convert_tiny


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return convert_tiny(tmp_path_factory.mktemp("harness-model") / "tiny.tflite")


@pytest.fixture(scope="session")
def passthrough_delegate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_passthrough_delegate(tmp_path_factory.mktemp("delegate"))
