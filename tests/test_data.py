from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgepack.data import load_dataset
from edgepack.errors import DataError
from edgepack.stages.base import InputSpec
from tests.conftest import DIGITS

SPEC = (InputSpec("x", (1, 1, 32, 32)),)


def test_npz_with_labels_and_sample_count() -> None:
    ds = load_dataset(DIGITS / "eval.npz", SPEC, purpose="evaluation", samples=100)
    assert len(ds) == 100 and ds.labels is not None and ds.labels.shape == (100,)
    assert ds.inputs[0].dtype == np.float32


def test_npy_and_folder(tmp_path: Path) -> None:
    x = np.random.default_rng(0).random((5, 1, 32, 32), dtype=np.float32)
    np.save(tmp_path / "all.npy", x)
    assert len(load_dataset(tmp_path / "all.npy", SPEC, purpose="calibration")) == 5
    folder = tmp_path / "samples"
    folder.mkdir()
    for i in range(3):
        np.save(folder / f"{i:03d}.npy", x[i])  # without batch axis
    ds = load_dataset(folder, SPEC, purpose="calibration")
    assert len(ds) == 3 and np.array_equal(ds.inputs[0][2], x[2])


def test_all_problems_reported_at_once(tmp_path: Path) -> None:
    x = np.ones((4, 1, 28, 28), dtype=np.float32)
    x[0, 0, 0, 0] = np.nan
    p = tmp_path / "bad.npz"
    np.savez(p, x=x, y=np.zeros(3, dtype=np.int64))
    with pytest.raises(DataError) as e:
        load_dataset(p, SPEC, purpose="calibration")
    msg = e.value.message
    assert "samples of shape (1, 28, 28), the model takes (1, 32, 32)" in msg
    assert "1 NaN/inf values" in msg
    assert "3 labels for 4 samples" in msg


def test_wrong_dtype_and_missing_labels(tmp_path: Path) -> None:
    p = tmp_path / "s.npz"
    np.savez(p, x=np.array(["a"] * 4).reshape(4, 1, 1, 1))
    with pytest.raises(DataError, match="dtype <U1"):
        load_dataset(p, (InputSpec("x", (1, 1, 1, 1)),), purpose="calibration")
    q = tmp_path / "nolabels.npz"
    np.savez(q, x=np.zeros((2, 1, 32, 32), np.float32))
    with pytest.raises(DataError, match="no labels"):
        load_dataset(q, SPEC, purpose="evaluation", require_labels=True)


def test_unknown_names_and_formats(tmp_path: Path) -> None:
    p = tmp_path / "w.npz"
    np.savez(p, a=np.zeros((2, 1, 32, 32)), b=np.zeros((2, 1, 32, 32)))
    with pytest.raises(DataError, match=r"has arrays \[a, b\] but none named"):
        load_dataset(p, SPEC, purpose="calibration")
    t = tmp_path / "d.csv"
    t.write_text("1,2")
    with pytest.raises(DataError, match=r"unsupported format '\.csv'"):
        load_dataset(t, SPEC, purpose="calibration")
    with pytest.raises(DataError, match="calibration data not found"):
        load_dataset(tmp_path / "none.npz", SPEC, purpose="calibration")


def test_pickled_npy_refused(tmp_path: Path) -> None:
    p = tmp_path / "obj.npy"
    np.save(p, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match=r"not a readable \.npy"):
        load_dataset(p, SPEC, purpose="calibration")


def test_multi_input_npz(tmp_path: Path) -> None:
    specs = (InputSpec("a", (1, 4)), InputSpec("b", (1, 2)))
    p = tmp_path / "m.npz"
    np.savez(p, x0=np.zeros((3, 4), np.float32), x1=np.ones((3, 2), np.float32))
    ds = load_dataset(p, specs, purpose="calibration")
    assert [x.shape for x in ds.inputs] == [(3, 4), (3, 2)]
    np.savez(p, a=np.zeros((3, 4), np.float32), b=np.ones((2, 2), np.float32))
    with pytest.raises(DataError, match="input 'b' has 2 samples, the first has 3"):
        load_dataset(p, specs, purpose="calibration")


def _numbered(tmp_path: Path, labels: np.ndarray) -> Path:
    """An .npz whose sample i holds the value i (so a selection names its indices)."""
    n = labels.size
    x = np.broadcast_to(np.arange(n, dtype=np.float32)[:, None, None, None], (n, 1, 32, 32))
    f = tmp_path / "numbered.npz"
    np.savez(f, x=np.ascontiguousarray(x), y=labels)
    return f


def _indices(ds: object) -> np.ndarray:
    return ds.inputs[0][:, 0, 0, 0].astype(np.int64)  # type: ignore[attr-defined, no-any-return]


def test_calibration_subset_is_stratified_seeded_and_recorded(tmp_path: Path) -> None:
    from edgepack.data import indices_sha256
    from edgepack.manifest import sha256_file

    # sorted by class: the first 10 samples are all class 0
    labels = np.repeat(np.arange(3), [50, 31, 19]).astype(np.int64)
    f = _numbered(tmp_path, labels)
    n = 10
    ds = load_dataset(f, SPEC, purpose="calibration", samples=n, seed=0)
    idx = _indices(ds)
    assert len(ds) == n and np.array_equal(idx, np.sort(idx))  # kept in the file's order
    assert ds.labels is not None and np.array_equal(ds.labels, labels[idx])
    classes, counts = np.unique(labels, return_counts=True)
    got = {int(c): int((ds.labels == c).sum()) for c in classes}
    for c, count in zip(classes, counts, strict=True):
        share = n * count / labels.size
        assert abs(got[int(c)] - share) < 1, (got, share)  # every class, in proportion
    assert not np.array_equal(idx, np.arange(n))  # not the first n

    again = load_dataset(f, SPEC, purpose="calibration", samples=n, seed=0)
    assert np.array_equal(_indices(again), idx)
    other = load_dataset(f, SPEC, purpose="calibration", samples=n, seed=1)
    assert not np.array_equal(_indices(other), idx)

    assert ds.record() == {
        "file": "numbered.npz",
        "sha256": sha256_file(f),
        "samples": n,
        "of": labels.size,
        "selection": "stratified",
        "seed": 0,
        "indices_sha256": indices_sha256(idx),
    }
    assert other.record()["indices_sha256"] != ds.record()["indices_sha256"]


def test_unlabelled_subset_is_a_seeded_shuffle(tmp_path: Path) -> None:
    x = np.arange(40, dtype=np.float32)[:, None, None, None] * np.ones((1, 1, 32, 32), np.float32)
    f = tmp_path / "x.npy"
    np.save(f, x)
    a = load_dataset(f, SPEC, purpose="calibration", samples=8, seed=3)
    b = load_dataset(f, SPEC, purpose="calibration", samples=8, seed=3)
    idx = _indices(a)
    assert np.array_equal(idx, _indices(b)) and not np.array_equal(idx, np.arange(8))
    assert len(set(idx.tolist())) == 8 and np.array_equal(idx, np.sort(idx))
    assert a.record()["selection"] == "shuffled" and a.record()["seed"] == 3


@pytest.mark.parametrize("samples", [None, 30, 31])
def test_all_samples_in_file_order_when_asking_for_at_least_the_file(
    tmp_path: Path, samples: int | None
) -> None:
    labels = np.repeat(np.arange(2), [20, 10]).astype(np.int64)
    f = _numbered(tmp_path, labels)
    ds = load_dataset(f, SPEC, purpose="calibration", samples=samples, seed=5)
    assert np.array_equal(_indices(ds), np.arange(30))
    assert ds.labels is not None and np.array_equal(ds.labels, labels)
    rec = ds.record()
    assert (rec["selection"], rec["seed"], rec["samples"], rec["of"]) == ("all", None, 30, 30)


def test_folder_hash_covers_names_and_contents(tmp_path: Path) -> None:
    folder = tmp_path / "samples"
    folder.mkdir()
    x = np.zeros((1, 32, 32), np.float32)
    for i in range(3):
        np.save(folder / f"{i}.npy", x + i)
    first = load_dataset(folder, SPEC, purpose="calibration").record()["sha256"]
    np.save(folder / "2.npy", x + 7)
    assert load_dataset(folder, SPEC, purpose="calibration").record()["sha256"] != first
