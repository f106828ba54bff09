"""The bundled digits example (examples/digits) in its coral build layout: channels-last I/O,
full-int8 with uint8 I/O, calibrated on the example's own calib.npz. The Edge TPU pre-flight
must map it fully, with no TRANSPOSE at the graph boundary."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from edgepack.compat import check
from edgepack.tflite import read_model

from .conftest import convert, quantize_full_int8

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "digits"


@pytest.fixture(scope="module")
def coral_digits(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if not (EXAMPLE / "model.py").is_file():
        pytest.skip("examples/digits is not in this checkout")
    import torch

    spec = importlib.util.spec_from_file_location("digits_example", EXAMPLE / "model.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    model = mod.build_model().eval()
    model.load_state_dict(torch.load(EXAMPLE / "weights.pt", weights_only=True))
    calib = np.load(EXAMPLE / "calib.npz")["x"][:32]  # NCHW [N, 1, 32, 32]
    d = tmp_path_factory.mktemp("bundled")
    out = {}
    for layout in ("nhwc", "nchw"):
        f = convert(model, (1, 1, 32, 32), d / f"{layout}_float.tflite", nhwc=layout == "nhwc")
        xs = calib.transpose(0, 2, 3, 1) if layout == "nhwc" else calib
        samples = [x[None].astype(np.float32) for x in xs]
        out[layout] = quantize_full_int8(f, d / f"{layout}_uint8.tflite", "uint8", samples)
    return out


@pytest.mark.slow
def test_bundled_example_coral_build_maps_fully_without_transpose(coral_digits):
    info = read_model(coral_digits["nhwc"])
    assert "TRANSPOSE" not in info.op_counts()
    assert [t.dtype for t in info.input_tensors] == ["UINT8"]
    assert info.input_tensors[0].shape == (1, 32, 32, 1)
    r = check(coral_digits["nhwc"], ["edgetpu"]).result("edgetpu")
    assert r.fully_delegated and r.partitions == 1 and r.mac_share == 1.0
    # conv 1->32 (as depthwise, one input channel), 32->64, 64->128, linear 128->10
    assert r.macs_total == 32 * 32 * 32 * 9 + 16 * 16 * 64 * 288 + 8 * 8 * 128 * 576 + 1280


@pytest.mark.slow
def test_bundled_example_nchw_io_has_a_reshape_not_a_transpose(coral_digits):
    counts = read_model(coral_digits["nchw"]).op_counts()
    assert "TRANSPOSE" not in counts and counts["RESHAPE"] == 1
