"""The harness's external-delegate path (--delegate path/to/delegate.so) with a REAL delegate.

fixtures/edgepack_test_delegate.c is a tiny TFLite external delegate (the
tflite_plugin_create_delegate / tflite_plugin_destroy_delegate C ABI that load_delegate()
uses). It takes float32 ADD nodes without broadcasting and computes them itself; it declines
everything else. It is compiled with gcc at test time and loaded by the host's ai_edge_litert.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
HARNESS = REPO / "devices" / "edgepack_bench.py"
SOURCE = Path(__file__).parent / "fixtures" / "edgepack_test_delegate.c"


def _convert(path: Path, module: object, example: tuple[object, ...]) -> Path:
    import litert_torch

    if not path.is_file():
        path.parent.mkdir(exist_ok=True)
        litert_torch.convert(module, example).export(str(path))  # type: ignore[arg-type]
    return path


@pytest.fixture(scope="module")
def add_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One float ADD of two [1, 8] inputs (same file as the board test's, cached per session)."""
    import torch

    class Add(torch.nn.Module):
        def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return x + y

    path = tmp_path_factory.getbasetemp() / "edgepack-tiny-add" / "add.tflite"
    return _convert(path, Add().eval(), (torch.zeros(1, 8), torch.zeros(1, 8)))


@pytest.fixture(scope="module")
def add_mul_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ADD and MUL side by side: the test delegate takes the ADD only."""
    import torch

    class AddMul(torch.nn.Module):
        def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return x + y, x * y

    path = tmp_path_factory.mktemp("add-mul") / "add_mul.tflite"
    return _convert(path, AddMul().eval(), (torch.zeros(1, 8), torch.zeros(1, 8)))


@pytest.fixture(scope="module")
def delegate_so(tmp_path_factory: pytest.TempPathFactory) -> Path:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.fail("gcc is needed to build the test delegate (apt install gcc)", pytrace=False)
    out = tmp_path_factory.mktemp("delegate") / "libedgepack_test_delegate.so"
    subprocess.run(
        [
            gcc,
            "-shared",
            "-fPIC",
            "-O2",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-o",
            str(out),
            str(SOURCE),
        ],
        check=True,
        capture_output=True,
    )
    return out


def harness(model: Path, *flags: str) -> tuple[int, dict]:
    assert HARNESS.is_file(), f"{HARNESS} is missing (the device harness of this repo)"
    proc = subprocess.run(
        [
            sys.executable,
            str(HARNESS),
            f"--graph={model}",
            "--warmup_runs=1",
            "--num_runs=5",
            *flags,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return proc.returncode, json.loads(proc.stdout)


def test_the_delegate_computes_the_node_it_takes(add_model: Path, delegate_so: Path) -> None:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType, load_delegate

    interp = Interpreter(
        model_path=str(add_model),
        experimental_delegates=[load_delegate(str(delegate_so))],
        # No default XNNPACK: if our kernel did not compute the sum, nobody would.
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    interp.allocate_tensors()
    x = np.arange(8, dtype=np.float32).reshape(1, 8)
    y = np.linspace(-1, 1, 8, dtype=np.float32).reshape(1, 8)
    a, b = interp.get_input_details()
    interp.set_tensor(a["index"], x)
    interp.set_tensor(b["index"], y)
    interp.invoke()
    out = interp.get_tensor(interp.get_output_details()[0]["index"])
    np.testing.assert_array_equal(out, x + y)
    ops = [op["op_name"] for op in interp._get_ops_details()]
    assert ops == ["ADD", "DELEGATE"]


def test_harness_loads_the_delegate_and_reports_the_nodes_it_took(
    add_model: Path, delegate_so: Path
) -> None:
    code, doc = harness(add_model, f"--delegate={delegate_so}")
    assert code == 0, doc["errors"]
    assert doc["delegate"] == {
        "requested": str(delegate_so),
        "library": str(delegate_so),
        "applied": True,
        "delegated_nodes": 1,
        "total_nodes": 1,
        "partitions": 1,
        "executed": {"delegated_nodes": 1, "partitions": 1},
    }
    assert doc["stats"]["count"] == 5
    assert doc["config"]["delegate"] == str(delegate_so)


def test_harness_counts_only_the_requested_delegates_nodes(
    add_mul_model: Path, delegate_so: Path
) -> None:
    code, doc = harness(add_mul_model, f"--delegate={delegate_so}")
    assert code == 0, doc["errors"]
    d = doc["delegate"]
    # The delegate alone took the ADD (1 of 2 nodes); in the timed graph XNNPACK, the default
    # delegate, took the MUL next to it, which is reported apart.
    assert (d["applied"], d["delegated_nodes"], d["total_nodes"], d["partitions"]) == (
        True,
        1,
        2,
        1,
    )
    assert d["executed"] == {"delegated_nodes": 2, "partitions": 2}


def test_a_missing_delegate_library_is_a_clear_error(add_model: Path, tmp_path: Path) -> None:
    missing = tmp_path / "libnothing.so"
    code, doc = harness(add_model, f"--delegate={missing}")
    assert code == 1
    assert len(doc["errors"]) == 1
    assert doc["errors"][0].startswith(f"cannot load the {missing} delegate from {missing}")
    assert doc["stats"]["count"] == 0
