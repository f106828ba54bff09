"""The device-side harness, run as a real subprocess with a real interpreter."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

HARNESS = Path(__file__).resolve().parents[2] / "devices" / "edgepack_bench.py"


def run(*args: str, python: list[str] | None = None) -> tuple[int, dict, str]:
    proc = subprocess.run(
        [*(python or [sys.executable]), str(HARNESS), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert lines, (proc.returncode, proc.stdout, proc.stderr)
    return proc.returncode, json.loads(lines[-1]), proc.stderr


def test_document_has_every_fact_and_consistent_stats(tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "doc.json"
    code, doc, _ = run(
        f"--graph={tiny_model}", "--num_runs=25", "--warmup_runs=3", f"--output_json={out}"
    )
    assert code == 0 and doc["errors"] == []
    assert json.loads(out.read_text()) == doc
    assert doc["schema"] == "edgepack.bench/1"
    assert doc["tool"]["name"] == "edgepack_bench"
    assert doc["runtime"]["name"] == "ai_edge_litert" and doc["runtime"]["version"]
    assert doc["model"]["sha256"] == hashlib.sha256(tiny_model.read_bytes()).hexdigest()
    assert doc["config"] == {
        "threads": 1,
        "warmup_runs": 3,
        "runs": 25,
        "min_seconds": 0.0,
        "max_seconds": 60.0,
        "delegate": "xnnpack",
        "input": "random",
        "pin_cores": [],
    }
    lat = doc["latencies_ms"]
    s = doc["stats"]
    assert len(lat) == s["count"] == 25
    assert s["min_ms"] == pytest.approx(min(lat), abs=2e-6)
    assert s["max_ms"] == pytest.approx(max(lat), abs=2e-6)
    assert s["min_ms"] <= s["p50_ms"] <= s["p90_ms"] <= s["p99_ms"] <= s["max_ms"]
    assert s["p50_ms"] == pytest.approx(float(np.percentile(lat, 50)), rel=1e-4, abs=2e-6)
    assert s["p90_ms"] == pytest.approx(float(np.percentile(lat, 90)), rel=1e-4, abs=2e-6)
    assert s["mean_ms"] == pytest.approx(float(np.mean(lat)), rel=1e-4, abs=2e-6)
    assert s["std_ms"] == pytest.approx(float(np.std(lat)), rel=1e-3, abs=1e-6)
    assert s["throughput_ips"] == pytest.approx(1000.0 / s["mean_ms"], rel=1e-3)
    assert doc["init_ms"] > 0 and doc["first_inference_ms"] > 0
    assert doc["memory"]["peak_rss_mb"] > 10
    assert doc["delegate"] == {
        "requested": "xnnpack",
        "applied": True,
        "delegated_nodes": 6,
        "total_nodes": 6,
        "partitions": 1,
        "library": None,
        "executed": {"delegated_nodes": 6, "partitions": 1},
    }
    dev = doc["device"]
    assert dev["cores"] >= 1 and dev["machine"] and dev["python"] and dev["numpy"]
    assert set(doc["thermal"]) == {"before", "after", "throttled"}


def test_delegate_none_runs_the_plain_interpreter(tiny_model: Path) -> None:
    code, doc, _ = run(f"--graph={tiny_model}", "--num_runs=3", "--delegate=none")
    assert code == 0
    assert doc["delegate"]["applied"] is False
    assert doc["delegate"]["delegated_nodes"] == 0 and doc["delegate"]["partitions"] == 0
    assert doc["delegate"]["total_nodes"] == 6


def test_min_secs_extends_and_max_secs_cuts_the_runs(tiny_model: Path) -> None:
    _, doc, _ = run(f"--graph={tiny_model}", "--num_runs=1", "--min_secs=0.3")
    assert doc["stats"]["count"] > 1 and doc["wall_s"] >= 0.3
    _, doc, _ = run(
        f"--graph={tiny_model}", "--num_runs=1000000000", "--max_secs=0.2", "--warmup_runs=0"
    )
    assert 1 < doc["stats"]["count"] < 1000000000
    assert 0.2 <= doc["wall_s"] < 5
    assert any("stopped after" in w for w in doc["warnings"])


def test_input_data_files(tiny_model: Path, tmp_path: Path) -> None:
    good = tmp_path / "x.npz"
    np.savez(good, np.ones((1, 3, 16, 16), np.float32))
    code, doc, _ = run(f"--graph={tiny_model}", "--num_runs=2", f"--input_data={good}")
    assert code == 0 and doc["config"]["input"] == "file"

    bad = tmp_path / "bad.npy"
    np.save(bad, np.ones((1, 3, 8, 8), np.float32))
    code, doc, err = run(f"--graph={tiny_model}", "--num_runs=2", f"--input_data={bad}")
    assert code == 2
    assert doc["errors"] == [
        "input data for input 0 has shape [1, 3, 8, 8], the model wants [1, 3, 16, 16]"
    ]
    assert "edgepack_bench: error: input data for input 0" in err


def test_npz_arrays_by_signature_name_in_any_order(two_input_model: Path, tmp_path: Path) -> None:
    """An .npz names arrays after the model's arguments (the package's signature names), not
    after the converter's tensor names; any order; a half-named or unnamed-but-labelled file
    is refused rather than fed by position."""
    ids, mask = np.ones((1, 4), np.int64), np.ones((1, 6), np.int64)
    named = tmp_path / "named.npz"
    np.savez(named, attention_mask=mask, input_ids=ids)  # not the model's input order
    code, doc, err = run(f"--graph={two_input_model}", "--num_runs=1", f"--input_data={named}")
    assert code == 0 and doc["config"]["input"] == "file", err

    unnamed = tmp_path / "unnamed.npz"
    np.savez(unnamed, ids, mask)  # arr_0, arr_1: the model's input order
    code, _, err = run(f"--graph={two_input_model}", "--num_runs=1", f"--input_data={unnamed}")
    assert code == 0, err

    half = tmp_path / "half.npz"
    np.savez(half, input_ids=ids, mask=mask)
    code, doc, err = run(f"--graph={two_input_model}", "--num_runs=1", f"--input_data={half}")
    assert code == 2
    assert doc["errors"] == [
        "input data has no array named attention_mask (input 1); its arrays: input_ids, mask"
    ]
    assert (
        "hint: name one array per model input: np.savez(f, input_ids=..., attention_mask=...)"
        in err
    )

    other = tmp_path / "other.npz"
    np.savez(other, mask=mask, ids=ids)
    code, doc, err = run(f"--graph={two_input_model}", "--num_runs=1", f"--input_data={other}")
    assert code == 2
    assert doc["errors"] == [
        "input data arrays (mask, ids) name none of the model's 2 inputs (input_ids, attention_mask)"
    ]


def test_missing_model_and_broken_model(tiny_model: Path, tmp_path: Path) -> None:
    code, doc, _ = run(f"--graph={tmp_path / 'nope.tflite'}")
    assert code == 2 and doc["errors"][0].startswith("model file not found")
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(b"\x00" * 64)
    code, doc, _ = run(f"--graph={broken}")
    assert code == 1 and "cannot load broken.tflite" in doc["errors"][0]
    assert doc["model"]["sha256"] == hashlib.sha256(broken.read_bytes()).hexdigest()


def test_missing_numpy_says_what_to_pip_install(tiny_model: Path) -> None:
    # -S: no site-packages, so neither numpy nor any runtime can be imported.
    code, doc, err = run(f"--graph={tiny_model}", python=[sys.executable, "-S"])
    assert code == 3
    assert doc["errors"][0].startswith("numpy is not installed for ")
    # ai-edge-litert runs these tests, so it has wheels for this machine and this Python.
    assert doc["hint"] == "pip install ai-edge-litert"
    assert "edgepack_bench: hint: pip install ai-edge-litert" in err
    assert doc["device"]["numpy"] is None and doc["stats"]["count"] == 0


def test_missing_runtime_says_what_to_pip_install(tiny_model: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    for p in Path(np.__file__).parent.parent.iterdir():
        if p.name == "numpy" or p.name.startswith("numpy.libs"):
            (site / p.name).symlink_to(p)
    code, doc, _ = run(
        f"--graph={tiny_model}", python=["env", f"PYTHONPATH={site}", sys.executable, "-S"]
    )
    assert code == 3
    assert doc["errors"][0].startswith("no TFLite runtime for ")
    assert doc["hint"] == "pip install ai-edge-litert"
    assert doc["device"]["numpy"] == np.__version__


def test_unloadable_delegates_are_errors(tiny_model: Path, tmp_path: Path) -> None:
    code, doc, _ = run(f"--graph={tiny_model}", "--delegate=edgetpu")
    assert code == 1
    assert doc["errors"][0].startswith("cannot load the edgetpu delegate from libedgetpu.so.1")
    assert "libedgetpu1-std" in doc["hint"]
    fake = tmp_path / "not_a_delegate.so"
    fake.write_bytes(b"nope")
    code, doc, _ = run(f"--graph={tiny_model}", f"--delegate={fake}")
    assert code == 1 and f"from {fake}" in doc["errors"][0]
    code, doc, _ = run(f"--graph={tiny_model}", "--delegate=nnapi")
    assert code == 2 and "NNAPI" in doc["errors"][0] and "--serial" in doc["hint"]


def test_bad_flags_exit_2() -> None:
    proc = subprocess.run(
        [sys.executable, str(HARNESS), "--graph=x.tflite", "--num_runs=0"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2 and "--num_runs must be >= 1" in proc.stderr


def test_delegation_facts_walks_partitions() -> None:
    sys.path.insert(0, str(HARNESS.parent))
    try:
        import edgepack_bench as h
    finally:
        sys.path.pop(0)
    # t0 -A-> t1 -B-> t2 -C-> t3 ; a delegate took A and B (inputs t0 + weight t9, output t2)
    ops = [
        {"index": 0, "op_name": "CONV_2D", "inputs": [0, 9], "outputs": [1]},
        {"index": 1, "op_name": "RELU", "inputs": [1], "outputs": [2]},
        {"index": 2, "op_name": "CUSTOM", "inputs": [2], "outputs": [3]},
        {"index": 3, "op_name": "DELEGATE", "inputs": [0, 9], "outputs": [2]},
    ]
    assert h.delegation_facts(ops) == (3, 2, 1)
    assert h.delegation_facts(ops[:3]) == (3, 0, 0)
    assert h.delegation_facts(None) == (None, None, None)


def test_external_delegate_library_takes_and_runs_its_nodes(
    tiny_model: Path, passthrough_delegate: Path
) -> None:
    code, doc, _ = run(
        f"--graph={tiny_model}", "--num_runs=4", f"--delegate={passthrough_delegate}"
    )
    assert code == 0, doc["errors"]
    d = doc["delegate"]
    # The delegate alone took the one SOFTMAX node of 6; the timed graph runs it next to
    # XNNPACK (default delegate) which took the other 5.
    assert (d["applied"], d["delegated_nodes"], d["total_nodes"], d["partitions"]) == (
        True,
        1,
        6,
        1,
    )
    assert d["executed"] == {"delegated_nodes": 6, "partitions": 2}
    assert d["library"] == str(passthrough_delegate)
    assert doc["stats"]["count"] == 4


def test_passthrough_delegate_computes_the_same_outputs(
    tiny_model: Path, passthrough_delegate: Path
) -> None:
    from ai_edge_litert.interpreter import Interpreter, load_delegate

    x = np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype(np.float32)
    outs = []
    for delegates in ([], [load_delegate(str(passthrough_delegate))]):
        it = Interpreter(model_path=str(tiny_model), experimental_delegates=delegates)
        it.allocate_tensors()
        it.set_tensor(it.get_input_details()[0]["index"], x)
        it.invoke()
        outs.append(it.get_tensor(it.get_output_details()[0]["index"]).copy())
    np.testing.assert_allclose(outs[0], outs[1], rtol=1e-6)
    assert outs[1].sum() == pytest.approx(1.0, abs=1e-5)  # softmax really ran
