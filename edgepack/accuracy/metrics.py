"""Accuracy and fidelity metrics shared by validation, per-layer analysis and fallback.

- with labels: top-1 / top-5 of the float and the quantized model, drop in points;
- without labels: output fidelity against the float model (cosine similarity, SNR, max /
  mean abs error), and nearest-neighbour agreement for embedding models: the fraction of
  samples whose nearest neighbour among the evaluated set is the same under the float and
  the quantized embeddings.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgepack.errors import DataError

SNR_CAP_DB = 100.0  # identical tensors: report a finite, comparable number


def _flat(x: np.ndarray) -> np.ndarray:
    return x.reshape(x.shape[0], -1).astype(np.float64)


def snr_db(ref: np.ndarray, got: np.ndarray) -> float:
    """Signal-to-noise ratio of ``got`` against ``ref`` in dB, capped at SNR_CAP_DB."""
    a = np.asarray(ref, dtype=np.float64)
    noise = float(np.mean((a - np.asarray(got, dtype=np.float64)) ** 2))
    signal = float(np.mean(a**2))
    return snr_from_sums(signal, noise)


def snr_from_sums(signal: float, noise: float) -> float:
    """SNR in dB from summed squares, clamped to +-SNR_CAP_DB (inf / NaN noise: -cap)."""
    if not np.isfinite(noise) or not np.isfinite(signal):
        return -SNR_CAP_DB
    if noise <= 0:
        return SNR_CAP_DB
    if signal <= 0:
        return -SNR_CAP_DB
    return float(np.clip(10 * np.log10(signal / noise), -SNR_CAP_DB, SNR_CAP_DB))


def snr_from_sums_array(signal: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """:func:`snr_from_sums` of every position at once (the same rules, vectorized)."""
    s = np.asarray(signal, dtype=np.float64)
    n = np.asarray(noise, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        db = np.clip(10 * np.log10(s / n), -SNR_CAP_DB, SNR_CAP_DB)
    db = np.where(s <= 0, -SNR_CAP_DB, db)
    db = np.where(n <= 0, SNR_CAP_DB, db)
    return np.where(np.isfinite(n) & np.isfinite(s), db, -SNR_CAP_DB)


def cosine_per_sample(ref: np.ndarray, got: np.ndarray) -> np.ndarray:
    """Cosine similarity of each sample (axis 0) of ``got`` with the same sample of ``ref``.
    Two all-zero samples count as identical (1.0), one all-zero sample as orthogonal (0.0)."""
    a, b = _flat(ref), _flat(got)
    num = np.sum(a * b, axis=1)
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    den = na * nb
    both_zero = (na == 0) & (nb == 0)
    with np.errstate(invalid="ignore", over="ignore"):
        cos = np.where(den > 0, num / np.maximum(den, 1e-300), 0.0)
    cos = np.where(np.isfinite(cos), cos, 0.0)
    return np.where(both_zero, 1.0, cos)


def masked(x: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Per-token outputs [N, T, ...] with the positions where ``mask`` [N, T] is 0 zeroed: they
    add nothing to a dot product, a norm, an error sum or a mean pool."""
    if mask is None:
        return x
    keep = (mask != 0).reshape(mask.shape + (1,) * (x.ndim - mask.ndim))
    return np.where(keep, x, 0)


def fidelity(ref: np.ndarray, got: np.ndarray, mask: np.ndarray | None = None) -> dict[str, float]:
    """Output fidelity of ``got`` (quantized) against ``ref`` (float), samples on axis 0.

    ``mask`` [N, T] (an attention mask, per-token outputs [N, T, ...]): only the positions the
    consumer uses (mask 1) count; padding is excluded from every number."""
    a, b = _flat(masked(ref, mask)), _flat(masked(got, mask))
    diff = a - b
    used = diff.size if mask is None else int(np.count_nonzero(mask)) * (diff.size // mask.size)
    return {
        "max_abs_diff": round(float(np.max(np.abs(diff))), 6),
        "mean_abs_diff": round(float(np.sum(np.abs(diff)) / max(used, 1)), 6),
        "cosine": round(float(np.mean(cosine_per_sample(a, b))), 6),
        "snr_db": round(snr_db(a, b), 3),
    }


def topk(logits: np.ndarray, labels: np.ndarray, k: int = 1) -> float:
    """Top-k accuracy in percent."""
    scores = logits.reshape(len(labels), -1)
    if k == 1:
        hit = scores.argmax(1) == labels
    else:
        k = min(k, scores.shape[1])
        best = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        hit = (best == labels[:, None]).any(axis=1)
    return round(float(hit.mean() * 100), 4)


def top1(logits: np.ndarray, labels: np.ndarray) -> float:
    return topk(logits, labels, 1)


LABEL_HINT = (
    "labels are class indices 0..C-1 of a classifier with outputs [N, C]; for another kind "
    "of model drop the labels (an .npz without 'y') and gate on --min-fidelity"
)


def check_labels(logits: np.ndarray, labels: np.ndarray) -> None:
    """Refuse labels that make top-1 meaningless (raise DataError): a model output that is not
    a classifier's [N, C] scores, non-integer labels, labels outside 0..C-1."""
    shape = tuple(logits.shape)
    if len(shape) > 2 and all(d == 1 for d in shape[1:-1]):  # [N, 1, C]: scores per sample
        shape = (shape[0], shape[-1])
    if len(shape) != 2 or shape[1] < 2:
        raise DataError(
            f"the eval data has labels, but the model's output {list(shape)} is not a "
            "classifier's [N, C] scores (C >= 2): top-1 against these labels means nothing",
            LABEL_HINT,
        )
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise DataError(
            f"labels must be 1-D integer class indices, got {labels.dtype}{list(labels.shape)}",
            LABEL_HINT,
        )
    bad = (labels < 0) | (labels >= shape[1])
    if bad.any():
        raise DataError(
            f"{int(bad.sum())} of {len(labels)} labels lie outside 0..{shape[1] - 1} "
            f"(the model has {shape[1]} classes; labels span {int(labels.min())}.."
            f"{int(labels.max())})",
            LABEL_HINT,
        )


def accuracy(float_out: np.ndarray, quant_out: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Top-1 (and top-5 when there are more than 5 classes) of both models, drop in points.

    Raises DataError for labels that do not fit a classifier's output (:func:`check_labels`)."""
    check_labels(float_out, labels)
    f1, q1 = top1(float_out, labels), top1(quant_out, labels)
    out: dict[str, Any] = {
        "metric": "top1",
        "float": f1,
        "quantized": q1,
        "drop_points": round(f1 - q1, 4),
    }
    if float_out.reshape(len(labels), -1).shape[1] > 5:
        f5, q5 = topk(float_out, labels, 5), topk(quant_out, labels, 5)
        out["top5"] = {"float": f5, "quantized": q5, "drop_points": round(f5 - q5, 4)}
    return out


def nearest_neighbours(emb: np.ndarray) -> np.ndarray:
    """Index of each sample's nearest neighbour (cosine) among the other samples."""
    x = _flat(emb)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    x = x / np.maximum(norms, 1e-300)
    sim = x @ x.T
    np.fill_diagonal(sim, -np.inf)
    return np.asarray(sim.argmax(axis=1))


def nn_agreement(ref: np.ndarray, got: np.ndarray) -> float:
    """Fraction of samples whose nearest neighbour (cosine, among the evaluated samples) is the
    same under the float embeddings ``ref`` and the quantized ones ``got``."""
    if ref.shape[0] < 3:
        raise ValueError("nearest-neighbour agreement needs at least 3 samples")
    return round(float(np.mean(nearest_neighbours(ref) == nearest_neighbours(got))), 6)


def output_metrics(ref: np.ndarray, got: np.ndarray, labels: np.ndarray | None) -> dict[str, Any]:
    """Everything the gates look at: fidelity always, accuracy with labels, nearest-neighbour
    agreement without labels (embedding-style outputs of 2+ values per sample)."""
    out: dict[str, Any] = {"fidelity": fidelity(ref, got)}
    if labels is not None:
        out["accuracy"] = accuracy(ref, got, labels)
    elif ref.shape[0] >= 3 and _flat(ref).shape[1] > 1:
        out["fidelity"]["nn_agreement"] = nn_agreement(ref, got)
    return out


class Accumulator:
    """Streaming SNR / cosine / max abs error of one tensor over many samples, plus the SNR of
    each position of the tensor (summed over samples), whose median is the "typical" SNR.

    The whole-tensor SNR is energy-weighted: a tensor with one outlier channel (or token)
    100x larger than the rest looks fine even when int8 wiped out everything else. The median
    per-position SNR does not hide that, so it is what layers are ranked by. Tensors larger
    than POSITION_LIMIT values use per-channel (last axis) sums instead, to bound memory.
    """

    POSITION_LIMIT = 1 << 16

    def __init__(self) -> None:
        self.signal = 0.0
        self.noise = 0.0
        self.cos_sum = 0.0
        self.count = 0
        self.max_abs = 0.0
        self.pos_signal: np.ndarray | None = None
        self.pos_noise: np.ndarray | None = None

    def add(self, ref: np.ndarray, got: np.ndarray) -> None:
        a = np.asarray(ref, dtype=np.float64)
        b = np.asarray(got, dtype=np.float64)
        with np.errstate(invalid="ignore", over="ignore"):
            d = a - b
            d = np.where(np.isfinite(d), d, np.inf)
            sq = d**2
        self.signal += float(np.mean(a**2))
        self.noise += float(np.mean(sq))
        self.cos_sum += float(cosine_per_sample(a.reshape(1, -1), b.reshape(1, -1))[0])
        self.max_abs = max(self.max_abs, float(np.max(np.abs(d))) if d.size else 0.0)
        if a.size > self.POSITION_LIMIT and a.ndim >= 2:
            ps = np.mean((a**2).reshape(-1, a.shape[-1]), axis=0)
            pn = np.mean(sq.reshape(-1, a.shape[-1]), axis=0)
        else:
            ps, pn = (a**2).reshape(-1), sq.reshape(-1)
        self.pos_signal = ps if self.pos_signal is None else self.pos_signal + ps
        self.pos_noise = pn if self.pos_noise is None else self.pos_noise + pn
        self.count += 1

    @property
    def snr_db(self) -> float:
        return snr_from_sums(self.signal, self.noise)

    @property
    def median_snr_db(self) -> float:
        """Median over tensor positions of each position's SNR across the samples."""
        if self.pos_signal is None or self.pos_noise is None or self.pos_signal.size <= 1:
            return self.snr_db
        return float(np.median(snr_from_sums_array(self.pos_signal, self.pos_noise)))

    @property
    def cosine(self) -> float:
        return self.cos_sum / self.count if self.count else 1.0
