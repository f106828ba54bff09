"""Fixtures of the bench tests: a tiny converted model, packages, and a REAL sshd on loopback.

The sshd fixture starts ``/usr/sbin/sshd -D`` on 127.0.0.1 with its own host key, config,
authorized_keys and a known_hosts file for the client. Without sshd the tests FAIL (they are
never skipped): run scripts/install-system-deps.sh first.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from bench_helpers import Sshd, SshdError, build_passthrough_delegate, convert_tiny, run_sshd


@pytest.fixture(scope="session")
def tiny_tflite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return convert_tiny(tmp_path_factory.mktemp("model") / "tiny.tflite")


@pytest.fixture(scope="session")
def passthrough_delegate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_passthrough_delegate(tmp_path_factory.mktemp("delegate"))


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    try:
        with run_sshd(tmp_path_factory.mktemp("sshd")) as server:
            yield server
    except SshdError as exc:
        pytest.fail(str(exc), pytrace=False)
