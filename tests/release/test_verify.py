"""`edgepack verify` on a real package and on tampered copies of it."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from edgepack.manifest import sha256_file
from edgepack.targets import load_target
from tests.release.benchdocs import bench_package
from tests.release.conftest import Release, run_cli

pytestmark = pytest.mark.slow  # needs the session's real build


def verify(pkg: Path, *extra: str) -> tuple[int, dict, str]:
    code, out, err = run_cli(["verify", str(pkg), "--json", *extra], pkg.parent)
    return code, json.loads(out), err


def status(doc: dict) -> dict[str, str]:
    return {c["check"]: c["status"] for c in doc["checks"]}


def edit_manifest(pkg: Path, fn) -> None:  # type: ignore[no-untyped-def]
    p = pkg / "manifest.json"
    m = json.loads(p.read_text())
    fn(m)
    p.write_text(json.dumps(m, indent=2, sort_keys=True) + "\n")


def test_a_built_package_verifies(release: Release) -> None:
    code, out, err = run_cli(["verify", str(release.package("rpi4"))], release.project)
    assert code == 0, err
    assert out.splitlines()[0].split() == ["check", "status", "detail"]
    assert "model           PASS    loads and runs once (float32[1, 1, 32, 32] -> [[1, 10]])" in out
    assert "matches built-in profile 'rpi4'" in out
    assert out.rstrip().endswith("digits-rpi4: verified")


def test_json_lists_every_check(package_copy: Path) -> None:
    code, doc, _ = verify(package_copy)
    assert code == 0 and doc["ok"] is True
    assert status(doc) == {
        "manifest": "pass",
        "files": "pass",
        "unlisted files": "pass",
        "model": "pass",
        "recomputed": "pass",
        "profile": "pass",
    }
    (recomputed,) = [c for c in doc["checks"] if c["check"] == "recomputed"]
    assert (
        recomputed["detail"] == "12 manifest fields match the model (mode full-int8, I/O FLOAT32)"
    )


def test_bench_results_are_not_unlisted_files(package_copy: Path) -> None:
    saved = bench_package(package_copy, runs=3)
    code, doc, _ = verify(package_copy)
    assert code == 0 and status(doc)["unlisted files"] == "pass"
    assert saved.parent.name == "bench"


@pytest.mark.parametrize(
    ("rel", "content"),
    [
        ("bench/rpi4-ssh-pi-20250101T000000Z.json", "{}"),  # not a result
        ("bench/result.json", '{"schema": "edgepack.bench-result/1"}'),  # no harness data
        ("bench/run.sh", "touch /tmp/x"),
        ("bench/deeper/r.json", "{}"),
        ("analysis/layers.csv", "a,b\n1,2\n"),  # not the analyze table
        ("analysis/notes.txt", "added by hand"),
        ("models/extra.tflite", "TFL3"),
    ],
)
def test_unknown_files_anywhere_are_flagged(package_copy: Path, rel: str, content: str) -> None:
    (package_copy / rel).parent.mkdir(parents=True, exist_ok=True)
    (package_copy / rel).write_text(content)
    code, doc, err = verify(package_copy)
    assert code == 6 and status(doc)["unlisted files"] == "fail"
    assert f"unlisted files: not in the manifest: {rel}" in err


def test_analysis_table_is_known(package_copy: Path) -> None:
    from edgepack.accuracy.analyze import LayerError

    (package_copy / "analysis").mkdir()
    header = ",".join(LayerError.__dataclass_fields__)
    (package_copy / "analysis" / "layers.csv").write_text(header + "\n")
    code, doc, _ = verify(package_copy)
    assert code == 0 and status(doc)["unlisted files"] == "pass"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda m: m["quantization"].update(mode="float16"),
            "quantization.mode: manifest 'float16', the model is full-int8",
        ),
        (
            lambda m: m["quantization"].update(io_dtype="uint8"),
            "quantization.io_dtype: manifest 'uint8', model I/O FLOAT32",
        ),
        (
            lambda m: m["metrics"].update(size_bytes=1000),
            "metrics.size_bytes: manifest 1000, model ",
        ),
        (
            lambda m: m["model"].update(float_compute_ops=["CONV_2D"]),
            'model.float_compute_ops: manifest ["CONV_2D"], model []',
        ),
        (lambda m: m["model"]["ops"].update(CONV_2D=1), "model.ops: manifest {"),
        (lambda m: m["model"].update(op_count=3), "model.op_count: manifest 3, model "),
        (lambda m: m["model"].update(weight_bytes=5), "model.weight_bytes: manifest 5, model "),
    ],
)
def test_tampered_manifest_field_is_named(package_copy: Path, edit, message: str) -> None:  # type: ignore[no-untyped-def]
    edit_manifest(package_copy, edit)
    code, doc, err = verify(package_copy)
    assert code == 6 and status(doc)["recomputed"] == "fail"
    assert f"recomputed: {message}" in err
    assert "hint: do not ship it" in err


def test_tampered_model(package_copy: Path) -> None:
    model = package_copy / "model.tflite"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    code, doc, err = verify(package_copy)
    assert code == 6 and doc["ok"] is False
    assert status(doc)["files"] == "fail" and status(doc)["model"] == "fail"
    assert "model.tflite: sha256" in err and "!= manifest" in err
    assert "hint: do not ship it: rebuild with `edgepack build`" in err


def test_tampered_manifest_profile(package_copy: Path) -> None:
    edit_manifest(package_copy, lambda m: m["target"]["profile"]["runtime"].update(threads=1))
    code, doc, err = verify(package_copy)
    assert code == 6 and status(doc)["profile"] == "fail"
    assert "recorded profile of 'rpi4' hashes to" in err and "(edited manifest?)" in err


def test_tampered_manifest_file_entry(package_copy: Path) -> None:
    edit_manifest(package_copy, lambda m: m["files"]["summary.md"].update(bytes=1))
    code, _doc, err = verify(package_copy)
    assert code == 6 and "summary.md: " in err and "bytes != manifest 1" in err


def test_manifest_schema_problems(package_copy: Path) -> None:
    edit_manifest(package_copy, lambda m: m.pop("metrics"))
    code, doc, err = verify(package_copy)
    assert code == 6 and "manifest: missing key(s): metrics" in err
    assert [c["check"] for c in doc["checks"]] == ["manifest"]  # nothing else to trust
    edit_manifest(package_copy, lambda m: m.update(schema_version=2))
    code, _doc, err = verify(package_copy)
    assert code == 6 and "schema_version 2, this edgepack reads 1" in err
    (package_copy / "manifest.json").write_text("{not json")
    code, _doc, err = verify(package_copy)
    assert code == 6 and "manifest.json is not valid JSON" in err


def test_missing_and_unlisted_files(package_copy: Path) -> None:
    (package_copy / "summary.md").unlink()
    (package_copy / "notes.txt").write_text("added by hand")
    code, doc, err = verify(package_copy)
    assert code == 6
    assert status(doc)["files"] == "fail" and status(doc)["unlisted files"] == "fail"
    assert "summary.md: missing" in err and "not in the manifest: notes.txt" in err


def test_a_model_that_does_not_load(package_copy: Path) -> None:
    model = package_copy / "model.tflite"
    model.write_bytes(b"\x1c\x00\x00\x00TFL3" + b"\x00" * 64)  # a TFLite header, no model
    digest = sha256_file(model)

    def fix(m: dict) -> None:  # a consistent manifest: only the load check can fail
        m["files"]["model.tflite"] = {"sha256": digest, "bytes": model.stat().st_size}
        m["model"]["sha256"] = digest

    edit_manifest(package_copy, fix)
    code, doc, err = verify(package_copy)
    assert code == 6 and status(doc) == {
        "manifest": "pass",
        "files": "pass",
        "unlisted files": "pass",
        "model": "fail",
        "recomputed": "skip",
        "profile": "pass",
    }
    assert "model: model.tflite is not a readable TFLite model" in err


@pytest.mark.parametrize("name", ["../outside.tflite", "link.tflite"])
def test_a_model_file_outside_the_package_is_never_read(package_copy: Path, name: str) -> None:
    """The manifest lists the model, with its right hash, at a path outside the package
    (its parent folder, or a symlink out of it): verify fails without reading it."""
    outside = package_copy.parent / "outside.tflite"
    outside.write_bytes((package_copy / "model.tflite").read_bytes())
    if name == "link.tflite":
        (package_copy / name).symlink_to(outside)

    def move(m: dict) -> None:
        m["files"][name] = m["files"].pop("model.tflite")
        m["model_file"] = name

    (package_copy / "model.tflite").unlink()
    edit_manifest(package_copy, move)
    code, doc, err = verify(package_copy)
    assert code == 6 and status(doc)["files"] == "fail" and status(doc)["model"] == "fail"
    assert status(doc)["recomputed"] == "skip"
    assert f"{name}: path outside the package" in err
    assert f"model: model_file {name} is not a path inside the package" in err


def test_wrong_profile_hash(package_copy: Path, tmp_path: Path) -> None:
    # Built for a profile that is no longer the built-in rpi4 (an older version of it).
    old = dataclasses.replace(load_target("rpi4"), description="rpi4 as it was in 0.0.9")

    def rewrite(m: dict) -> None:
        m["target"]["profile"] = old.to_dict()
        m["target"]["sha256"] = old.sha256

    edit_manifest(package_copy, rewrite)
    code, doc, err = verify(package_copy)
    assert code == 6 and status(doc)["profile"] == "fail"
    assert "built-in profile 'rpi4' has sha256" in err
    assert f"the package was built for {old.sha256[:12]}" in err


def test_custom_profile(package_copy: Path, tmp_path: Path) -> None:
    board = dataclasses.replace(load_target("rpi4"), name="myboard")

    def rewrite(m: dict) -> None:
        m["target"] = {"name": "myboard", "sha256": board.sha256, "profile": board.to_dict()}

    edit_manifest(package_copy, rewrite)
    code, doc, _ = verify(package_copy)
    assert code == 0 and status(doc)["profile"] == "skip"
    assert "'myboard' is a custom profile" in doc["checks"][-1]["detail"]
    # Compared with the user's file when given.
    src = Path(__file__).resolve().parents[2] / "targets" / "rpi4.toml"
    mine = tmp_path / "myboard.toml"
    mine.write_text(src.read_text().replace('name = "rpi4"', 'name = "myboard"'))
    code, doc, _ = verify(package_copy, "--target", str(mine))
    assert code == 0 and status(doc)["profile"] == "pass"
    mine.write_text(
        src.read_text()
        .replace('name = "rpi4"', 'name = "myboard"')
        .replace("threads = 4", "threads = 2")
    )
    code, doc, err = verify(package_copy, "--target", str(mine))
    assert code == 6 and "the profile changed since the build" in err


def test_not_a_package(tmp_path: Path) -> None:
    code, _, err = run_cli(["verify", str(tmp_path / "nope")], tmp_path)
    assert code == 2 and "not a package folder" in err


def test_every_built_package_verifies_with_its_mode(release: Release) -> None:
    for target, mode in (("rpi4", "full-int8"), ("host", "dynamic-range")):
        code, doc, err = verify(release.package(target))
        assert code == 0, err
        (recomputed,) = [c for c in doc["checks"] if c["check"] == "recomputed"]
        assert f"(mode {mode}, I/O FLOAT32)" in recomputed["detail"]


def test_readback_mode_of_every_mode(float_tflite: Path, tmp_path: Path) -> None:
    """The mode read from the flatbuffer is the mode each quantization route wrote."""
    from edgepack.data import load_dataset
    from edgepack.release.verify import readback_mode
    from edgepack.stages import quantize
    from edgepack.stages.base import InputSpec, StageContext, TFLiteArtifact
    from edgepack.targets import IODtype, QuantMode
    from edgepack.tflite import read_model
    from tests.conftest import DIGITS

    spec = InputSpec("x", (1, 1, 32, 32), "float32")
    calib = load_dataset(DIGITS / "calib.npz", [spec], purpose="calibration", samples=16)
    art = TFLiteArtifact(path=float_tflite, kind="float32")
    assert readback_mode(read_model(float_tflite)) == "float32"
    for mode in (QuantMode.FLOAT16, QuantMode.DYNAMIC_RANGE, QuantMode.FULL_INT8):
        ctx = StageContext(workdir=tmp_path / mode.value)
        out = quantize.run(art, mode, IODtype.FLOAT32, calib, ctx)
        assert readback_mode(read_model(out.path)) == mode.value


def test_float_ops_in_full_int8_need_a_recorded_fallback(release: Release, tmp_path: Path) -> None:
    """A model with float compute is 'full-int8' only when the manifest records the fallback."""
    from tests.release.conftest import copy_package

    pkg = copy_package(release.package("host"), tmp_path / "digits-host")  # dynamic-range
    edit_manifest(pkg, lambda m: m["quantization"].update(mode="full-int8"))
    code, _doc, err = verify(pkg)
    assert code == 6
    assert "quantization.mode: manifest 'full-int8', the model is dynamic-range" in err
    fallback = {"precision": "float", "kept": ["FULLY_CONNECTED"]}
    edit_manifest(pkg, lambda m: m["quantization"].update(fallback=fallback))
    code, doc, err = verify(pkg, "--target", "host")
    assert status(doc)["recomputed"] == "pass", err
