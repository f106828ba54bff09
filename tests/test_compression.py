from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from edgepack.compression import CompressPlan, compress
from edgepack.errors import CompressionError, PackageError, UsageError
from edgepack.manifest import sha256_file
from edgepack.stages.distill import DistillSpec
from edgepack.stages.prune import parse_prune_spec
from tests.stages.compress_models import DIGITS, CustomLayerNet, ResidualConcatNet, tiny


def test_writes_exported_program_and_sidecar(tmp_path: Path) -> None:
    model = tiny(ResidualConcatNet)
    out = tmp_path / "sub" / "pruned.pt2"
    messages: list[str] = []
    plan = CompressPlan(prune=parse_prune_spec("channels:0.5"), output=out)
    result = compress(model, plan, progress=messages.append)
    assert result.output == out and result.sidecar == tmp_path / "sub" / "pruned.json"
    assert sorted(p.name for p in out.parent.iterdir()) == ["pruned.json", "pruned.pt2"]
    assert messages == ["prune: channels 0.5", "export: torch.export"]

    ep = torch.export.load(str(out))
    x = torch.randn(1, 3, 8, 8)
    assert ep.module()(x).shape == (1, 5)
    assert ep.state_dict["pw.weight"].shape[0] == 12  # the channels really are gone

    doc = json.loads(result.sidecar.read_text())
    assert doc["schema_version"] == 1
    assert doc["output"] == {"file": "pruned.pt2", "sha256": sha256_file(out)}
    assert [s["name"] for s in doc["stages"]] == ["prune", "export"]
    assert doc["stages"][0]["params"] == {"method": "channels", "sparsity": 0.5, "round_to": 1}
    assert (
        doc["stages"][0]["metrics"]["params_after"] < doc["stages"][0]["metrics"]["params_before"]
    )
    assert doc["inputs"] == [{"name": "x", "shape": [1, 3, 8, 8], "dtype": "float32"}]
    assert "torch" in doc["versions"]


def test_existing_output_needs_force(tmp_path: Path) -> None:
    out = tmp_path / "m.pt2"
    out.write_bytes(b"old")
    plan = CompressPlan(prune=parse_prune_spec("magnitude:0.5"), output=out)
    with pytest.raises(PackageError, match=r"m\.pt2 already exists") as e:
        compress(tiny(ResidualConcatNet), plan)
    assert "--force" in e.value.hint
    assert out.read_bytes() == b"old"
    plan = CompressPlan(prune=parse_prune_spec("magnitude:0.5"), output=out, force=True)
    compress(tiny(ResidualConcatNet), plan)
    assert torch.export.load(str(out)) is not None


def test_failure_leaves_nothing_behind(tmp_path: Path) -> None:
    out = tmp_path / "m.pt2"
    plan = CompressPlan(prune=parse_prune_spec("channels:0.5"), output=out)
    with pytest.raises(CompressionError, match="cannot analyse layer 'mixer'"):
        compress(tiny(CustomLayerNet), plan)
    assert list(tmp_path.iterdir()) == []


def test_output_must_be_pt2(tmp_path: Path) -> None:
    plan = CompressPlan(prune=parse_prune_spec("channels:0.5"), output=tmp_path / "m.tflite")
    with pytest.raises(UsageError, match=r"must end in \.pt2"):
        compress(tiny(ResidualConcatNet), plan)


def test_distillation_data_is_checked_before_pruning(tmp_path: Path) -> None:
    import numpy as np

    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.zeros((4, 3, 9, 9), np.float32))
    plan = CompressPlan(
        prune=parse_prune_spec("channels:0.5"),
        output=tmp_path / "m.pt2",
        distill=DistillSpec(train=bad),
    )
    msgs: list[str] = []
    with pytest.raises(Exception, match=r"training data .* does not fit the model"):
        compress(tiny(ResidualConcatNet), plan, progress=msgs.append)
    assert msgs == []  # failed before the prune stage started
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.npz"]
    assert DIGITS.is_dir()


@pytest.mark.slow
def test_magnitude_pruned_full_int8_compresses_to_half(tmp_path: Path) -> None:
    """magnitude:0.8 + full-int8 through the build pipeline: the gzip-compressed .tflite is at
    most half of the unpruned full-int8 model's (the int8 zeros survive quantization)."""
    import gzip

    from edgepack.compression import run_compression
    from edgepack.data import load_dataset
    from edgepack.pipeline import BuildPlan, build_from_model
    from edgepack.stages.base import StageContext
    from edgepack.targets import QuantMode, load_target
    from tests.stages.compress_models import digits_model

    model = digits_model()
    calib = load_dataset(DIGITS / "calib.npz", model.inputs, purpose="calibration", samples=64)
    plan = BuildPlan(
        source="digits",
        target=load_target("host"),
        quantization=QuantMode.FULL_INT8,
        calibration=DIGITS / "calib.npz",
        latency_runs=0,
    )
    sizes = {}
    ctx = StageContext(tmp_path / "work")
    for name, spec in (("dense", None), ("sparse", parse_prune_spec("magnitude:0.8"))):
        m = run_compression(model, spec, None, ctx)
        dest = tmp_path / name
        result = build_from_model(plan, m, name, dest, calib, None, ctx)
        assert result.manifest["model"]["float_compute_ops"] == []
        sizes[name] = len(gzip.compress((dest / "model.tflite").read_bytes(), 9, mtime=0))
    assert sizes["sparse"] <= 0.5 * sizes["dense"], sizes
    assert ctx.records[0].name == "export"  # no prune record for the dense model
    prune_rec = next(r for r in ctx.records if r.name == "prune")
    assert prune_rec.metrics["sparsity_after"] == pytest.approx(0.8, abs=0.001)
