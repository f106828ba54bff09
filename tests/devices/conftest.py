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


@pytest.fixture(scope="session")
def two_input_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model with named inputs of different shapes: input_ids int64 [1, 4] and
    attention_mask int64 [1, 6] (a swapped feed fails on shape)."""
    import litert_torch
    import torch

    class Two(torch.nn.Module):
        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return input_ids.float().sum(-1, keepdim=True) + attention_mask.float().mean(
                -1, keepdim=True
            )

    path = tmp_path_factory.mktemp("harness-two") / "two.tflite"
    ids, mask = torch.ones(1, 4, dtype=torch.int64), torch.ones(1, 6, dtype=torch.int64)
    kwargs = {"input_ids": ids, "attention_mask": mask}
    litert_torch.convert(Two().eval(), (), sample_kwargs=kwargs).export(str(path))
    return path
