from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgepack.errors import PackageError
from edgepack.stages.package import check_destination, write_package


def _write(dest: Path, src: Path, force: bool = False) -> Path:
    return write_package(
        dest, {"model.tflite": src}, {"summary.md": "hi\n"}, {"schema_version": 1}, force
    )


def test_writes_files_and_hashes(tmp_path: Path) -> None:
    src = tmp_path / "m.bin"
    src.write_bytes(b"abc")
    dest = _write(tmp_path / "out" / "pkg", src)
    m = json.loads((dest / "manifest.json").read_text())
    assert m["files"]["model.tflite"] == {
        "sha256": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        "bytes": 3,
    }
    assert sorted(p.name for p in dest.iterdir()) == ["manifest.json", "model.tflite", "summary.md"]
    assert [p.name for p in dest.parent.iterdir()] == ["pkg"]  # no staging leftovers


def test_existing_needs_force_and_force_replaces(tmp_path: Path) -> None:
    src = tmp_path / "m.bin"
    src.write_bytes(b"v1")
    dest = _write(tmp_path / "pkg", src)
    src.write_bytes(b"v2")
    with pytest.raises(PackageError, match="already exists"):
        _write(dest, src)
    assert (dest / "model.tflite").read_bytes() == b"v1"
    _write(dest, src, force=True)
    assert (dest / "model.tflite").read_bytes() == b"v2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.bin", "pkg"]


def test_force_refuses_to_replace_a_non_package(tmp_path: Path) -> None:
    d = tmp_path / "important"
    d.mkdir()
    (d / "thesis.tex").write_text("...")
    with pytest.raises(PackageError, match="not an edgepack package"):
        check_destination(d, force=True)


def test_failure_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        _write(tmp_path / "pkg", tmp_path / "missing.bin")
    assert list(tmp_path.iterdir()) == []


def test_package_folder_honours_umask(tmp_path: Path) -> None:
    import os

    src = tmp_path / "m.bin"
    src.write_bytes(b"x")
    old = os.umask(0o022)
    try:
        dest = _write(tmp_path / "pkg", src)
    finally:
        os.umask(old)
    assert (dest.stat().st_mode & 0o777) == 0o755


def test_destination_that_is_a_file(tmp_path: Path) -> None:
    f = tmp_path / "pkg"
    f.write_text("not a folder")
    with pytest.raises(PackageError, match="exists and is not a folder"):
        check_destination(f, force=True)


def test_force_keeps_bench_and_analysis_results(tmp_path: Path) -> None:
    src = tmp_path / "m.bin"
    src.write_bytes(b"v1")
    dest = _write(tmp_path / "pkg", src)
    (dest / "bench").mkdir()
    (dest / "bench" / "rpi4-ssh-pi-1.json").write_text('{"schema": "x"}')
    (dest / "analysis").mkdir()
    (dest / "analysis" / "layers.csv").write_text("rank,op\n")
    src.write_bytes(b"v2")
    _write(dest, src, force=True)
    assert (dest / "model.tflite").read_bytes() == b"v2"
    assert (dest / "bench" / "rpi4-ssh-pi-1.json").read_text() == '{"schema": "x"}'
    assert (dest / "analysis" / "layers.csv").read_text() == "rank,op\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.bin", "pkg"]  # nothing aside


def test_failed_replace_puts_the_old_package_back_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    src = tmp_path / "m.bin"
    src.write_bytes(b"v1")
    dest = _write(tmp_path / "pkg", src)
    (dest / "bench").mkdir()
    (dest / "bench" / "r.json").write_text("{}")
    real_rename = os.rename

    def rename(a: str | Path, b: str | Path) -> None:
        if Path(b) == dest and ".tmp-" in Path(a).name:  # the final move into place
            raise OSError(28, "No space left on device")
        real_rename(a, b)

    monkeypatch.setattr(os, "rename", rename)
    src.write_bytes(b"v2")
    with pytest.raises(PackageError, match="no space left"):
        _write(dest, src, force=True)
    monkeypatch.undo()
    assert (dest / "model.tflite").read_bytes() == b"v1"
    assert (dest / "bench" / "r.json").read_text() == "{}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.bin", "pkg"]
