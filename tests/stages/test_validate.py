"""Stage "validate" on a token model: fidelity over the positions the consumer uses, and which
data the metrics were computed on."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgepack.accuracy.metrics import fidelity
from edgepack.runtime import Runner, cast_inputs
from edgepack.tflite import read_model
from tests import token_encoder

pytestmark = pytest.mark.slow


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
    assert fid["data"] == "eval" and m["metrics"]["data"] == "eval, unlabelled"
