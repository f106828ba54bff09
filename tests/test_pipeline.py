"""The manifest's record of the data a build used (no model needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgepack.data import arrays_sha256, load_dataset
from edgepack.manifest import sha256_file
from edgepack.pipeline import BuildPlan, _load_data, data_record
from edgepack.stages.base import InputSpec, TorchModel
from edgepack.targets import load_target

SPEC = (InputSpec("x", (1, 1, 32, 32)),)


def _files(tmp_path: Path) -> tuple[Path, Path, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.random((40, 1, 32, 32), dtype=np.float32)
    y = np.repeat(np.arange(4), 10).astype(np.int64)
    np.savez(tmp_path / "calib.npz", x=x)
    np.savez(tmp_path / "eval.npz", x=x, y=y)
    return tmp_path / "calib.npz", tmp_path / "eval.npz", y


def test_plan_samples_and_seed_select_the_data_and_are_recorded(tmp_path: Path) -> None:
    calib_f, eval_f, _ = _files(tmp_path)
    model = TorchModel(None, (), SPEC, {})
    plan = BuildPlan(
        source="m.py:f",
        target=load_target("host"),
        calibration=calib_f,
        calibration_samples=12,
        eval=eval_f,
        eval_samples=8,
        seed=7,
    )
    calib, ev = _load_data(plan, model)
    assert calib is not None and ev is not None
    want_ev = load_dataset(eval_f, SPEC, purpose="evaluation", samples=8, seed=7)
    assert np.array_equal(ev.inputs[0], want_ev.inputs[0])
    assert ev.labels is not None and np.bincount(ev.labels).tolist() == [2, 2, 2, 2]
    rec = data_record(plan, calib, ev)
    assert rec["calibration"]["sha256"] == sha256_file(calib_f)
    assert (rec["calibration"]["samples"], rec["calibration"]["seed"]) == (12, 7)
    assert rec["calibration"]["selection"] == "shuffled"
    assert rec["evaluation"]["file"] == "eval.npz"
    assert rec["evaluation"]["sha256"] == sha256_file(eval_f)
    assert rec["evaluation"] == {**want_ev.record()}


def test_memory_data_is_named_by_its_arrays_not_its_temp_file(tmp_path: Path) -> None:
    calib_f, _, _ = _files(tmp_path)
    with np.load(calib_f) as z:
        digest = arrays_sha256({k: z[k] for k in z.files})
    plan = BuildPlan(
        source="memory:Net",
        target=load_target("host"),
        calibration=calib_f,
        memory_data=(("calibration", digest),),
    )
    calib, _ = _load_data(plan, TorchModel(None, (), SPEC, {}))
    rec = data_record(plan, calib, None)
    assert rec == {
        "calibration": {
            "file": None,
            "from": "memory",
            "sha256": digest,
            "samples": 40,
            "of": 40,
            "selection": "all",
            "seed": None,
            "indices_sha256": rec["calibration"]["indices_sha256"],
        }
    }


@pytest.mark.slow
def test_a_drawn_calibration_subset_rebuilds_byte_identical(tmp_path: Path) -> None:
    """Two builds from the same inputs with a calibration subset (a seeded, stratified draw,
    not the whole file): the same model bytes and the same data record."""
    from edgepack.pipeline import build
    from tests.conftest import DIGITS

    def once(out: Path) -> tuple[bytes, dict[str, object]]:
        plan = BuildPlan(
            source=f"{DIGITS}/model.py:build_model",
            weights=DIGITS / "weights.pt",
            input_shapes=("1x1x32x32",),
            target=load_target("rpi4"),
            calibration=DIGITS / "calib.npz",
            calibration_samples=48,
            output=out,
            latency_runs=0,
            cache=False,
        )
        result = build(plan)
        return (out / "model.tflite").read_bytes(), result.manifest["data"]

    a_bytes, a_data = once(tmp_path / "a")
    b_bytes, b_data = once(tmp_path / "b")
    assert a_bytes == b_bytes
    assert a_data == b_data
    calib = a_data["calibration"]
    assert isinstance(calib, dict)
    assert (calib["samples"], calib["selection"], calib["seed"]) == (48, "stratified", 0)
    with np.load(DIGITS / "calib.npz") as z:
        from edgepack.data import indices_sha256, sample_indices

        assert calib["indices_sha256"] == indices_sha256(sample_indices(len(z["y"]), 48, 0, z["y"]))


# ------------------------------------------------------------------ image data, app facts

IMAGE = (InputSpec("image", (1, 3, 32, 32)),)


def test_the_source_preprocessing_is_used_under_the_users(tmp_path: Path) -> None:
    from edgepack.pipeline import app_facts
    from tests import image_data

    imgs = image_data.write_folder(tmp_path / "imgs", per_class=2)
    source = {"resize": 36, "crop": 32, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}
    model = TorchModel(None, (), IMAGE, {}, preprocess=source)
    plan = BuildPlan(source="m.py:f", target=load_target("rpi4"), calibration=imgs, eval=imgs)
    calib, ev = _load_data(plan, model)
    assert calib is not None and calib.preprocess is not None
    assert calib.preprocess["resize"] == 36 and calib.preprocess["mean"] == [0.5] * 3
    facts = app_facts(plan, model, calib, ev)
    assert facts.spec_from == ["model source"] and facts.labels == image_data.CLASSES
    assert facts.labels_from == "evaluation folder's class subfolders"
    # the user's keys replace the source's, key by key
    plan = BuildPlan(
        source="m.py:f",
        target=load_target("rpi4"),
        calibration=imgs,
        preprocess="resize=40",
        preprocess_config={"std": [0.25, 0.25, 0.25]},
    )
    calib, _ = _load_data(plan, model)
    assert calib is not None and calib.preprocess is not None
    assert calib.preprocess["resize"] == 40 and calib.preprocess["std"] == [0.25] * 3
    assert calib.preprocess["mean"] == [0.5] * 3
    facts = app_facts(plan, model, calib, None)
    assert facts.spec_from == ["model source", "edgepack.toml", "--preprocess"]


def test_calibration_and_eval_folders_must_share_their_classes(tmp_path: Path) -> None:
    from edgepack.errors import DataError
    from tests import image_data

    a = image_data.write_folder(tmp_path / "a", per_class=1)
    b = image_data.write_folder(tmp_path / "b", per_class=1)
    (b / "c_blue").rename(b / "d_blue")
    model = TorchModel(None, (), IMAGE, {})
    plan = BuildPlan(
        source="m.py:f",
        target=load_target("rpi4"),
        calibration=a,
        eval=b,
        preprocess="unit",
    )
    with pytest.raises(DataError) as err:
        _load_data(plan, model)
    assert err.value.message.startswith(
        "the calibration folder's classes (a_red, b_green, c_blue) differ from the evaluation "
        "folder's (a_red, b_green, d_blue)"
    )
