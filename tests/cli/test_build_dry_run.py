"""`edgepack build --dry-run` imports the factory's module (the factory is not called) and
checks a .pt2 archive, so "plan is valid" means the build can load the source."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import CliResult, digits_build_args

VALID = "plan is valid (nothing built: --dry-run)"


def _dry(cli: Callable[..., CliResult], source: str) -> CliResult:
    args = digits_build_args("host", "--dry-run")
    args[1] = source
    del args[args.index("--weights") : args.index("--weights") + 2]
    return cli(*args)


def _error(r: CliResult, message: str) -> None:
    assert r.code == 2, r.err
    assert "Traceback" not in r.err, r.err
    assert f"error: {message}" in r.err, r.err
    assert VALID not in r.out


def test_dry_run_imports_the_module_but_does_not_call_the_factory(
    cli: Callable[..., CliResult], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    imported, called = tmp_path / "imported", tmp_path / "called"
    (tmp_path / "net.py").write_text(
        "from pathlib import Path\n"
        f"Path({str(imported)!r}).write_text('yes')\n"
        "def build():\n"
        f"    Path({str(called)!r}).write_text('yes')\n"
    )
    r = _dry(cli, f"{tmp_path}/net.py:build")
    assert r.code == 0, r.err
    assert VALID in r.out
    assert imported.exists()  # the module's top-level code ran: it imports
    assert not called.exists()  # the factory did not


def test_dry_run_of_the_digits_example_is_valid(
    cli: Callable[..., CliResult], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    r = cli(*digits_build_args("host", "--dry-run"))
    assert r.code == 0, r.err
    assert VALID in r.out


def test_dry_run_missing_model_file(
    cli: Callable[..., CliResult], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    _error(_dry(cli, f"{tmp_path}/absent.py:build"), "1 problem(s) in the command line: ")
    assert f"model file not found: {tmp_path}/absent.py" in _dry(cli, f"{tmp_path}/absent.py:f").err


def test_dry_run_syntax_error_names_file_and_line(
    cli: Callable[..., CliResult], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "broken.py").write_text("import os\n\ndef build(:\n    pass\n")
    r = _dry(cli, f"{tmp_path}/broken.py:build")
    _error(r, f"importing {tmp_path}/broken.py failed: SyntaxError: ")
    assert "(broken.py, line 3)" in r.err
    assert "hint: fix the error in the model file" in r.err


def test_dry_run_import_error_names_file_and_line(
    cli: Callable[..., CliResult], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "needs.py").write_text("import os\nimport no_such_module_xyz\ndef build(): pass\n")
    r = _dry(cli, f"{tmp_path}/needs.py:build")
    _error(
        r,
        f"importing {tmp_path}/needs.py failed at needs.py:2: ModuleNotFoundError: "
        "No module named 'no_such_module_xyz'",
    )


def test_dry_run_dotted_module_that_cannot_be_imported(
    cli: Callable[..., CliResult], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    r = _dry(cli, "no_such_pkg_xyz.models:build")
    _error(r, "cannot import module 'no_such_pkg_xyz.models' (ModuleNotFoundError: ")


@pytest.mark.parametrize(
    ("name", "available"), [("missing", "build, prepare"), ("CONSTANT", "build, prepare")]
)
def test_dry_run_missing_or_non_callable_factory(
    cli: Callable[..., CliResult],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    available: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "nets.py").write_text("CONSTANT = 3\ndef build(): pass\ndef prepare(): pass\n")
    r = _dry(cli, f"{tmp_path}/nets.py:{name}")
    _error(r, f"'{name}' is not a callable in {tmp_path}/nets.py")
    assert f"hint: callables defined there: {available}" in r.err


def test_dry_run_same_message_as_a_build(
    cli: Callable[..., CliResult], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "nets.py").write_text("def build(): pass\n")
    dry = _dry(cli, f"{tmp_path}/nets.py:nope")
    args = digits_build_args("host", "--quantization", "float32", "--latency-runs", "0")
    args[1] = f"{tmp_path}/nets.py:nope"
    del args[args.index("--weights") : args.index("--weights") + 2]
    real = cli(*args)
    assert real.code == dry.code == 2
    last = [ln for ln in dry.err.splitlines() if ln.startswith(("error:", "hint:"))]
    assert last == [ln for ln in real.err.splitlines() if ln.startswith(("error:", "hint:"))]


def test_dry_run_damaged_pt2(
    cli: Callable[..., CliResult], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "model.pt2"
    bad.write_bytes(b"not a zip archive")
    r = _dry(cli, str(bad))
    _error(r, f"{bad} is not a .pt2 archive (not a valid zip file)")
