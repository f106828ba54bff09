"""Fixtures of the device-side harness tests: a tiny model converted with litert-torch."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import litert_torch
    import torch

    torch.manual_seed(0)

    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 3)
            self.fc = torch.nn.Linear(8, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = torch.relu(self.conv(x)).mean(dim=(2, 3))
            return torch.softmax(self.fc(y), -1)

    path = tmp_path_factory.mktemp("harness-model") / "tiny.tflite"
    litert_torch.convert(Tiny().eval(), (torch.randn(1, 3, 16, 16),)).export(str(path))
    return path


DELEGATE_SOURCE = Path(__file__).with_name("passthrough_delegate.c")


def build_passthrough_delegate(out_dir: Path) -> Path:
    """Compile tests/devices/passthrough_delegate.c (a real TFLite external delegate that
    claims every SOFTMAX node) with the system C compiler."""
    import shutil
    import subprocess

    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.fail("no C compiler: install gcc (scripts/install-system-deps.sh)", pytrace=False)
    lib = out_dir / "libpassthrough_delegate.so"
    subprocess.run(
        [cc, "-O2", "-shared", "-fPIC", "-Wall", "-Werror", "-o", str(lib), str(DELEGATE_SOURCE)],
        check=True,
        capture_output=True,
    )
    return lib


@pytest.fixture(scope="session")
def passthrough_delegate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_passthrough_delegate(tmp_path_factory.mktemp("delegate"))
