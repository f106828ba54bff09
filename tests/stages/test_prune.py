from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from edgepack.errors import CompressionError
from edgepack.stages import prune
from edgepack.stages.base import StageContext
from edgepack.stages.prune import PruneMethod, PruneSpec, parse_prune_spec
from tests.stages.compress_models import (
    CustomLayerNet,
    FixedReshapeNet,
    HandFlattenNet,
    HardCodedSplitNet,
    ResidualConcatNet,
    digits_model,
    tiny,
)


@pytest.fixture
def ctx(tmp_path: Path) -> StageContext:
    return StageContext(tmp_path)


# ---- parsing ------------------------------------------------------------------------------


def test_parse_prune_spec() -> None:
    assert parse_prune_spec("magnitude:0.7") == PruneSpec(PruneMethod.MAGNITUDE, 0.7)
    spec = parse_prune_spec(" Channels:0.5 ", round_to=8)
    assert spec == PruneSpec(PruneMethod.CHANNELS, 0.5, "global", 8)
    assert parse_prune_spec("magnitude:0.3", scope="layer").scope == "layer"


@pytest.mark.parametrize("text", ["magnitude:0", "magnitude:1", "channels:1.5", "channels:-0.2"])
def test_sparsity_outside_0_1(text: str) -> None:
    with pytest.raises(CompressionError, match="between 0 and 1") as e:
        parse_prune_spec(text)
    assert e.value.hint


def test_unknown_method() -> None:
    with pytest.raises(CompressionError, match="unknown pruning method 'filters'") as e:
        parse_prune_spec("filters:0.5")
    assert "magnitude, channels" in e.value.message
    assert "magnitude:0.7" in e.value.hint


@pytest.mark.parametrize(
    ("text", "kwargs", "match"),
    [
        ("magnitude", {}, "gives no sparsity"),
        ("magnitude:lots", {}, "'lots' is not a number"),
        ("magnitude:0.5", {"scope": "model"}, "unknown pruning scope 'model'"),
        ("channels:0.5", {"round_to": 0}, "round_to must be a positive integer"),
    ],
)
def test_bad_spec_text(text: str, kwargs: dict, match: str) -> None:
    with pytest.raises(CompressionError, match=match):
        parse_prune_spec(text, **kwargs)


# ---- magnitude ----------------------------------------------------------------------------


def _no_pruning_leftovers(module: torch.nn.Module) -> None:
    names = set(module.state_dict())
    assert not any(n.endswith(("_orig", "_mask")) for n in names), names
    for m in module.modules():
        assert not m._forward_pre_hooks, m
        assert not hasattr(m, "parametrizations"), m


def test_magnitude_global_is_permanent_and_reports_real_sparsity(ctx: StageContext) -> None:
    model = tiny(ResidualConcatNet)
    original = copy.deepcopy(model.module.state_dict())
    out = prune.run(model, parse_prune_spec("magnitude:0.6"), ctx)

    # input untouched, output a new module
    assert out.module is not model.module
    for k, v in model.module.state_dict().items():
        assert torch.equal(v, original[k]), k
    _no_pruning_leftovers(out.module)

    rec = ctx.records[-1]
    assert rec.name == "prune"
    assert rec.params == {"method": "magnitude", "sparsity": 0.6, "scope": "global"}
    m = rec.metrics
    assert m["sparsity_before"] == 0.0
    assert m["sparsity_after"] == pytest.approx(0.6, abs=0.002)
    # per-layer sparsity is measured on the weights, and differs between layers (global)
    real = {
        n: float((mod.weight == 0).float().mean())
        for n, mod in out.module.named_modules()
        if isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear))
    }
    assert m["sparsity_per_layer"] == pytest.approx(real, abs=1e-4)
    assert max(real.values()) - min(real.values()) > 0.05
    assert m["params_before"] == m["params_after"]  # shapes unchanged
    assert m["nonzero_params_after"] < 0.5 * m["nonzero_params_before"]
    assert m["macs_before"] == m["macs_after"] > 0

    # torch.export sees plain weights holding the zeros
    ep = torch.export.export(out.module, out.example_inputs)
    w = ep.state_dict["res1.weight"]
    assert float((w == 0).float().mean()) == pytest.approx(real["res1"], abs=1e-6)


def test_magnitude_per_layer(ctx: StageContext) -> None:
    out = prune.run(tiny(ResidualConcatNet), parse_prune_spec("magnitude:0.5", scope="layer"), ctx)
    per_layer = ctx.records[-1].metrics["sparsity_per_layer"]
    assert len(per_layer) == 7
    for name, s in per_layer.items():
        assert s == pytest.approx(0.5, abs=0.05), name
    _no_pruning_leftovers(out.module)


# ---- channels -----------------------------------------------------------------------------


def test_channels_with_residual_concat_depthwise_bn(ctx: StageContext) -> None:
    model = tiny(ResidualConcatNet)
    x = torch.randn(2, 3, 8, 8)
    out = prune.run(model, parse_prune_spec("channels:0.5"), ctx)
    pm = out.module
    assert pm(x).shape == (2, 5)
    assert model.module(x).shape == (2, 5)
    # the residual pair and the depthwise conv stay consistent with their inputs
    assert pm.stem[0].out_channels == pm.res1.out_channels == pm.res_bn.num_features
    assert pm.dw.in_channels == pm.dw.out_channels == pm.dw.groups == pm.res1.out_channels == 8
    # concat feeds the head: head inputs = both branches
    assert pm.head.in_features == pm.branch_a.out_channels + pm.branch_b.out_channels
    assert pm.head.out_features == 5  # the classifier's outputs are never pruned
    assert model.module.stem[0].out_channels == 16  # the input model is untouched

    m = ctx.records[-1].metrics
    assert m["kept_layers"] == ["head"]
    assert m["channels_per_layer"]["pw"] == [24, 12]
    assert m["channels_per_layer"]["head"] == [5, 5]
    assert m["params_after"] < 0.45 * m["params_before"]
    assert m["macs_after"] < 0.45 * m["macs_before"]
    torch.export.export(pm, out.example_inputs)


def test_channels_round_to(ctx: StageContext) -> None:
    out = prune.run(digits_model(), parse_prune_spec("channels:0.4", round_to=8), ctx)
    chans = ctx.records[-1].metrics["channels_per_layer"]
    for name in ("features.0", "features.4", "features.8"):
        before, after = chans[name]
        assert after % 8 == 0 and 0 < after < before, (name, before, after)
    assert chans["classifier"] == [10, 10]
    assert out.module(torch.zeros(3, 1, 32, 32)).shape == (3, 10)


def test_channels_records_accuracy_with_eval_data(ctx: StageContext) -> None:
    from edgepack.data import load_dataset

    model = digits_model()
    ev = load_dataset(
        Path(__file__).resolve().parents[2] / "examples/digits/eval.npz",
        model.inputs,
        purpose="evaluation",
        samples=200,
    )
    prune.run(model, parse_prune_spec("channels:0.5"), ctx, eval_data=ev)
    m = ctx.records[-1].metrics
    assert m["top1_before"] > 97
    assert m["top1_after"] < m["top1_before"]
    assert m["params_before"] == 94186
    assert m["params_after"] <= 0.3 * 94186
    assert m["macs_before"] == 9733376


def test_channels_names_a_layer_it_cannot_analyse(ctx: StageContext) -> None:
    with pytest.raises(CompressionError) as e:
        prune.run(tiny(CustomLayerNet), parse_prune_spec("channels:0.5"), ctx)
    assert e.value.message.startswith(
        "channel pruning cannot analyse layer 'mixer' (HandWrittenConv)"
    )
    assert "'weight' (shape 8x8x3x3)" in e.value.message
    assert "magnitude" in e.value.hint
    assert ctx.records == []


def test_channels_names_the_layer_whose_channels_it_cannot_map(ctx: StageContext) -> None:
    with pytest.raises(CompressionError) as e:
        prune.run(tiny(HandFlattenNet), parse_prune_spec("channels:0.5"), ctx)
    msg = e.value.message
    assert msg.startswith("channel pruning cannot analyse layer 'conv' (Conv2d)")
    assert "which feed 'fc'" in msg
    assert "hard-codes channel counts" in e.value.hint


def test_channels_names_the_line_that_hard_codes_channels(ctx: StageContext) -> None:
    model = tiny(FixedReshapeNet)
    with pytest.raises(CompressionError) as e:
        prune.run(model, parse_prune_spec("channels:0.5"), ctx)
    msg = e.value.message
    assert "cannot analyse forward() at compress_models.py:" in msg
    assert "(x = x.reshape(x.shape[0], 8, 64).mean(-1))" in msg
    assert "fails after pruning: shape '[1, 8, 64]' is invalid" in msg
    assert model.module.conv.out_channels == 8  # the input model is untouched


def test_channels_that_remove_nothing_fail(ctx: StageContext) -> None:
    with pytest.raises(CompressionError, match=r"removed no channel \(kept: conv 8, fc 4\)"):
        prune.run(tiny(HardCodedSplitNet), parse_prune_spec("channels:0.5"), ctx)


def test_magnitude_works_where_channels_cannot(ctx: StageContext) -> None:
    out = prune.run(tiny(CustomLayerNet), parse_prune_spec("magnitude:0.5", scope="layer"), ctx)
    # the hand-written conv is not a Conv/Linear module: only real layers are pruned
    assert set(ctx.records[-1].metrics["sparsity_per_layer"]) == {"conv", "fc"}
    assert out.module(torch.zeros(1, 3, 8, 8)).shape == (1, 4)
