"""Stage "validate": float parity relative to the output's magnitude; fidelity over the
positions the consumer uses, and which data the metrics were computed on."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgepack.accuracy.metrics import fidelity
from edgepack.runtime import Runner, cast_inputs
from edgepack.source import load_source
from edgepack.stages import convert, export, validate
from edgepack.stages.base import StageContext
from edgepack.stages.validate import float_parity, parity_samples, torch_outputs
from edgepack.targets import IOLayout
from edgepack.tflite import read_model
from tests import token_encoder

ROUTE_MODELS = Path(__file__).resolve().parent / "route_models.py"


def test_relative_parity_of_known_arrays() -> None:
    ref = np.array([[1e-9, -2e-9], [4e-9, 0.0]], dtype=np.float32)
    out = ref + np.float32(2e-12)
    p = float_parity([ref], [out])
    assert p["max_abs_diff"] == pytest.approx(2e-12, rel=1e-3)  # not rounded away to 0
    assert p["max_rel_diff"] == pytest.approx(2e-12 / 4e-9, rel=1e-3)
    assert p["ref_max_abs"] == pytest.approx(4e-9, rel=1e-3)
    assert p["samples"] == 2
    zero = float_parity([np.zeros((1, 3), np.float32)], [np.zeros((1, 3), np.float32)])
    assert zero["max_rel_diff"] == 0.0  # all-zero reference: no division by zero


@pytest.mark.slow
def test_relative_parity_at_output_scale_1e_9(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A real conversion of a model with ~1e-9 outputs: the absolute figure is below 1e-6 for
    the right model and for a wrong one alike; the relative one tells them apart."""
    model = load_source(f"{ROUTE_MODELS}:build_scaled", None, ["1x8"])
    ctx = StageContext(workdir=tmp_path)
    tfl = convert.run(export.run(model, ctx), IOLayout.NCHW, ctx)
    x = np.random.default_rng(3).standard_normal((32, 8)).astype(np.float32)
    ref = torch_outputs(model, (x,))
    converted = Runner(tfl.path).run([x])
    assert 1e-10 < float(np.max(np.abs(ref[0]))) < 1e-7

    right = float_parity(ref, converted)
    assert right["samples"] == 32
    assert right["max_rel_diff"] < 1e-4
    assert right["max_abs_diff"] < 1e-6

    from tests.stages import route_models

    other = load_source(f"{ROUTE_MODELS}:build_scaled", None, ["1x8"])
    other.module = route_models.build_scaled(seed=1)  # same architecture, other weights
    wrong = float_parity(ref, torch_outputs(other, (x,)))
    assert wrong["max_abs_diff"] < 1e-6  # the absolute figure cannot tell
    assert wrong["max_rel_diff"] > 0.1
    assert wrong["max_rel_diff"] > 1000 * max(right["max_rel_diff"], 1e-9)


@pytest.mark.slow
def test_token_fidelity_excludes_padding(encoder_package) -> None:  # type: ignore[no-untyped-def]
    import torch

    m = json.loads((encoder_package.path / "manifest.json").read_text())
    fid = m["metrics"]["fidelity"]
    ev = np.load(encoder_package.files["eval"])
    ids, mask = ev["input_ids"], ev["attention_mask"]
    model = token_encoder.build_encoder()
    model.load_state_dict(torch.load(encoder_package.files["weights"]))
    with torch.no_grad():
        ref = model(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
    path = encoder_package.path / "model.tflite"
    got = Runner(path).run(cast_inputs(read_model(path), [ids, mask]))[0]
    used = fidelity(ref, got, mask)
    everything = fidelity(ref, got)
    assert fid["mean_abs_diff"] == pytest.approx(used["mean_abs_diff"], abs=2e-6)
    assert fid["cosine"] == pytest.approx(used["cosine"], abs=2e-6)
    assert abs(everything["mean_abs_diff"] - used["mean_abs_diff"]) > 1e-5  # padding counted
    assert fid["positions"] == (
        f"{int(mask.sum())} of {mask.size} token positions (attention_mask == 1; padding excluded)"
    )
    assert fid["data"] == "eval" and m["metrics"]["data"] == "unlabelled"


def test_parity_samples_shrink_with_the_models_compute(digits_package, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """All samples (up to 64) for a small model; fewer, never below 4, as the float model's
    MACs grow; the same answer every time (no clock)."""
    from edgepack.compat.macs import op_macs

    path = digits_package / "model_float32.tflite"
    info = read_model(path)
    macs = sum(op_macs(info, op) for op in info.operators)
    assert macs > 0
    assert parity_samples(path, 1000) == 64 and parity_samples(path, 10) == 10
    monkeypatch.setattr(validate, "PARITY_MACS", 10 * macs)  # a 10-sample budget
    assert parity_samples(path, 1000) == 10 and parity_samples(path, 3) == 3
    monkeypatch.setattr(validate, "PARITY_MACS", macs / 2)  # less than one sample's worth
    assert parity_samples(path, 1000) == 4
    m = json.loads((digits_package / "manifest.json").read_text())
    assert m["metrics"]["float_parity"]["samples"] == min(64, m["metrics"]["samples"])
