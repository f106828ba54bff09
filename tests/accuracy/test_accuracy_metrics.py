"""Metrics: values on arrays whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from edgepack.accuracy import metrics
from edgepack.errors import DataError
from edgepack.stages import validate


def test_fidelity_of_identical_and_scaled_outputs() -> None:
    ref = np.arange(1, 13, dtype=np.float32).reshape(3, 4)
    same = metrics.fidelity(ref, ref.copy())
    assert same == {"max_abs_diff": 0.0, "mean_abs_diff": 0.0, "cosine": 1.0, "snr_db": 100.0}
    half = metrics.fidelity(ref, ref * 0.5)
    assert half["cosine"] == pytest.approx(1.0)  # cosine ignores scale
    assert half["snr_db"] == pytest.approx(10 * np.log10(4), abs=1e-3)  # noise = signal / 4
    assert half["max_abs_diff"] == pytest.approx(6.0)


def test_fidelity_orthogonal_and_zero_samples() -> None:
    ref = np.array([[1.0, 0.0], [0.0, 0.0]])
    got = np.array([[0.0, 1.0], [0.0, 0.0]])
    f = metrics.fidelity(ref, got)
    assert f["cosine"] == pytest.approx(0.5)  # orthogonal (0) and both-zero (1)


def test_topk_and_accuracy() -> None:
    logits = np.array(
        [
            [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],  # label 0: top-1 hit
            [0, 9, 8, 7, 6, 5, 4, 3, 2, 1],  # label 5: top-5 hit, not top-1
            [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],  # label 0: miss
        ],
        dtype=np.float32,
    )
    labels = np.array([0, 5, 0])
    assert metrics.top1(logits, labels) == pytest.approx(100 / 3, abs=1e-3)
    assert metrics.topk(logits, labels, 5) == pytest.approx(200 / 3, abs=1e-3)
    acc = metrics.accuracy(logits, logits[[0, 0, 0]], labels)
    assert acc["float"] == pytest.approx(33.3333, abs=1e-3)
    assert acc["quantized"] == pytest.approx(66.6667, abs=1e-3)
    assert acc["drop_points"] == pytest.approx(-33.3333, abs=1e-3)
    assert acc["top5"]["float"] == pytest.approx(66.6667, abs=1e-3)


def test_nn_agreement_counts_changed_neighbours() -> None:
    # Four directions: nearest neighbours 0<->1 and 2<->3.
    angles = np.array([0.0, 0.1, 1.5, 1.6])
    ref = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    assert metrics.nn_agreement(ref, ref * 3.0) == 1.0
    moved = ref.copy()
    moved[1] = [np.cos(1.45), np.sin(1.45)]  # point 1 now sits next to 2
    # Nearest neighbours become 0->1 (same), 1->2 (was 0), 2->1 (was 3), 3->2 (same).
    assert metrics.nn_agreement(ref, moved) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        metrics.nn_agreement(ref[:2], ref[:2])


def test_output_metrics_without_labels_adds_nn_agreement() -> None:
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((20, 8))
    m = metrics.output_metrics(emb, emb + 1e-3 * rng.standard_normal((20, 8)), None)
    assert m["fidelity"]["nn_agreement"] == 1.0
    assert "accuracy" not in m
    labelled = metrics.output_metrics(emb, emb, np.zeros(20, dtype=np.int64))
    assert labelled["accuracy"]["drop_points"] == 0.0
    assert "nn_agreement" not in labelled["fidelity"]


def test_median_snr_sees_what_an_outlier_channel_hides() -> None:
    rng = np.random.default_rng(0)
    acc = metrics.Accumulator()
    for _ in range(8):
        ref = rng.standard_normal((1, 4, 16))
        ref[..., 0] *= 1000.0  # one outlier channel carries the energy
        got = ref.copy()
        got[..., 1:] = 0.0  # int8 with one scale for the tensor wipes out the rest
        acc.add(ref, got)
    assert acc.snr_db > 25  # the energy-weighted SNR looks healthy
    assert acc.median_snr_db == pytest.approx(0.0, abs=1e-9)  # typical value: signal == noise
    assert acc.cosine > 0.999


def test_non_finite_outputs_score_as_worst() -> None:
    acc = metrics.Accumulator()
    acc.add(np.ones((1, 3)), np.array([[1.0, np.inf, np.nan]]))
    assert acc.snr_db == -metrics.SNR_CAP_DB
    assert acc.cosine == 0.0


def test_validate_uses_the_shared_implementation() -> None:
    assert validate.fidelity is metrics.fidelity
    assert validate.top1 is metrics.top1


@pytest.mark.parametrize(
    ("logits_shape", "labels", "message"),
    [
        ((4, 10), np.array([0, 3, 10, 2]), "1 of 4 labels lie outside 0..9 (the model has 10"),
        ((4, 10), np.array([0, -1, 2, 2]), "1 of 4 labels lie outside 0..9"),
        ((4, 10), np.array([0.0, 1.0, 2.0, 3.0]), "labels must be 1-D integer class indices"),
        ((4, 1), np.array([0, 0, 0, 0]), "output [4, 1] is not a classifier's [N, C] scores"),
        ((4, 3, 8, 8), np.array([0, 1, 2, 0]), "output [4, 3, 8, 8] is not a classifier's"),
    ],
)
def test_accuracy_refuses_meaningless_labels(logits_shape, labels, message) -> None:
    """Never "0% -> 0%: pass": top-1 against labels that cannot be class indices is an error."""
    logits = np.random.default_rng(0).standard_normal(logits_shape).astype(np.float32)
    with pytest.raises(DataError) as exc:
        metrics.accuracy(logits, logits, labels)
    assert message in exc.value.message
    assert "labels are class indices 0..C-1" in exc.value.hint


def test_fidelity_leaves_out_padding_positions() -> None:
    """Per-token outputs [N, T, D]: padding positions (mask 0) carry garbage in the quantized
    output; the consumer drops them, so the masked fidelity is exact while the unmasked is not."""
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((4, 6, 8))
    mask = np.array([[1] * k + [0] * (6 - k) for k in (2, 3, 6, 4)])
    got = ref.copy()
    got[mask == 0] = rng.standard_normal((int((mask == 0).sum()), 8)) * 5
    plain = metrics.fidelity(ref, got)
    used = metrics.fidelity(ref, got, mask)
    assert plain["cosine"] < 0.9
    assert used == {"max_abs_diff": 0.0, "mean_abs_diff": 0.0, "cosine": 1.0, "snr_db": 100.0}
    got[0, 1, 0] += 0.5  # an error at a used position counts, averaged over used values only
    assert metrics.fidelity(ref, got, mask)["mean_abs_diff"] == pytest.approx(
        0.5 / (mask.sum() * 8), abs=1e-6
    )


def test_the_attention_mask_is_found_for_per_token_outputs() -> None:
    from edgepack.stages.base import InputSpec

    ids = np.array([[5, 7, 0], [3, 0, 0]])
    mask = (ids != 0).astype(np.int64)
    specs = (InputSpec("input_ids", (1, 3), "int64"), InputSpec("attention_mask", (1, 3), "int64"))
    m, name = validate.attention_mask(specs, (ids, mask), np.zeros((2, 3, 4)))
    assert name == "attention_mask" and m is mask
    # pooled output [N, D]: nothing to mask
    assert validate.attention_mask(specs, (ids, mask), np.zeros((2, 4))) == (None, None)
