"""`edgepack verify` and `edgepack bench` on a token model (int64 ids + attention mask).

Random integers are not token ids: the package records the valid input ranges (the embedding
table found in the graph; the mask's range in the build data) and samples of the build data;
verify and bench feed those, so a valid package passes and a tampered one still fails.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests import token_encoder

pytestmark = pytest.mark.slow


def copy(encoder_package, tmp_path: Path) -> Path:  # type: ignore[no-untyped-def]
    return Path(shutil.copytree(encoder_package.path, tmp_path / "pkg"))


def test_default_inputs_are_recorded(encoder_package) -> None:  # type: ignore[no-untyped-def]
    m = json.loads((encoder_package.path / "manifest.json").read_text())
    d = m["default_inputs"]
    ids, mask = d["ranges"]
    assert (ids["name"], ids["min"], ids["max"], ids["source"]) == (
        "input_ids", 0, token_encoder.VOCAB - 1, "lookup table rows"
    )  # fmt: skip
    assert (mask["name"], mask["min"], mask["max"], mask["source"]) == (
        "attention_mask", 0, 1, "evaluation data"
    )  # fmt: skip
    assert d["file"] == "sample_inputs.npz" and d["source"] == "evaluation data"
    assert "sample_inputs.npz" in m["files"]  # hashed like every file
    ev = np.load(encoder_package.files["eval"])
    with np.load(encoder_package.path / "sample_inputs.npz") as z:
        arrays = [z[k] for k in z.files]
    assert len(arrays) == 2 and all(len(a) == d["samples"] == 4 for a in arrays)
    got = sorted(arrays, key=lambda a: int(a.max()))  # mask (max 1) first, then the ids
    np.testing.assert_array_equal(got[0], ev["attention_mask"][:4])
    np.testing.assert_array_equal(got[1], ev["input_ids"][:4])


def test_verify_passes_on_the_build_samples(encoder_package, cli) -> None:  # type: ignore[no-untyped-def]
    r = cli("verify", encoder_package.path)
    assert r.code == 0, r.out + r.err
    assert "loads and runs once on sample_inputs.npz (evaluation data)" in r.out


def test_verify_without_samples_draws_within_the_ranges(encoder_package, cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    pkg = copy(encoder_package, tmp_path)
    (pkg / "sample_inputs.npz").unlink()
    m = json.loads((pkg / "manifest.json").read_text())
    del m["files"]["sample_inputs.npz"], m["default_inputs"]["file"]
    (pkg / "manifest.json").write_text(json.dumps(m))
    r = cli("verify", pkg)
    assert r.code == 0, r.out + r.err
    assert "runs once on random data within the recorded input ranges" in r.out


def test_a_tampered_model_still_fails_verify(encoder_package, cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    pkg = copy(encoder_package, tmp_path)
    data = bytearray((pkg / "model.tflite").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (pkg / "model.tflite").write_bytes(bytes(data))
    r = cli("verify", pkg)
    assert r.code == 6
    assert "model.tflite: sha256" in r.err
    assert "model: model.tflite sha256 differs from manifest['model']['sha256']" in r.err


def test_tampered_samples_fail_verify_and_bench(encoder_package, cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    pkg = copy(encoder_package, tmp_path)
    ids = np.full((4, token_encoder.SEQ), 10_000, dtype=np.int32)  # outside the vocabulary
    with np.load(pkg / "sample_inputs.npz") as z:
        arrays = {k: (ids if int(z[k].max()) > 1 else z[k]) for k in z.files}
    np.savez(pkg / "sample_inputs.npz", **arrays)
    r = cli("verify", pkg)
    assert r.code == 6 and "sample_inputs.npz: sha256" in r.err
    r = cli("bench", pkg, "--runs", "2", "--no-save")
    assert r.code == 2
    assert "sample_inputs.npz is missing or does not match the sha256 in its manifest" in r.err


def test_bench_with_default_inputs_runs_locally(encoder_package, cli) -> None:  # type: ignore[no-untyped-def]
    r = cli("bench", encoder_package.path, "--runs", "3", "--warmup-runs", "1", "--no-save",
            "--json")  # fmt: skip
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert doc["transport"] == "local"
    assert doc["harness"]["config"]["input"] == "file"
    assert doc["harness"]["stats"]["count"] == 3
