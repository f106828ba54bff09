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
