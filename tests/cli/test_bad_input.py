"""Bad input never reaches the user as a traceback: one `error:` line, a hint, an exit code.

One test per case of issue 10 ("faults lose nothing and leave nothing"): undecodable or
absurdly nested TOML/JSON, 0-d arrays, absurd --input-shape, out-of-range indices in a
.tflite, a model returning a dict, a factory that exits, a port that does not speak SSH, a
disk that fills up. Each checks the exit code and the message.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import DIGITS, REPO, CliResult
from tests.release.conftest import make_project

TINY = REPO / "tests" / "fixtures" / "tiny_int8.tflite"
PROFILE = REPO / "targets" / "rpi4.toml"
DIGITS_BUILD = [
    "build",
    f"{DIGITS}/model.py:build_model",
    "--weights",
    DIGITS / "weights.pt",
    "--target",
    "host",
    "--quantization",
    "float32",
    "--latency-runs",
    "1",
]


def _clean(r: CliResult, code: int, *messages: str) -> None:
    """Exit ``code``; stderr ends with one `error:` line and one `hint:` line (progress lines
    may come before them); no traceback; each of ``messages`` in it."""
    assert r.code == code, r.err
    assert "Traceback" not in r.err, r.err
    lines = r.err.rstrip("\n").splitlines()
    assert lines[-2].startswith("error: ") and lines[-1].startswith("hint: "), r.err
    for m in messages:
        assert m in r.err, r.err


# --------------------------------------------------------------------------- TOML / JSON


def test_non_utf8_target_profile(cli: Callable[..., CliResult], tmp_path: Path) -> None:
    f = tmp_path / "board.toml"
    text = PROFILE.read_text().replace("description", "# café\ndescription", 1)
    f.write_bytes(text.encode("latin-1"))
    offset = text.encode("latin-1").index(b"\xe9")
    r = cli("targets", "show", f)
    _clean(
        r, 2, f"target profile {f} is not valid TOML: not UTF-8 text (byte 0xe9 at offset {offset})"
    )


@pytest.mark.parametrize(
    "value", ["[" * 5000 + "]" * 5000, "{a = " * 3000 + "1" + "}" * 3000], ids=["array", "table"]
)
def test_deeply_nested_target_profile(
    cli: Callable[..., CliResult], tmp_path: Path, value: str
) -> None:
    f = tmp_path / "board.toml"
    f.write_text(PROFILE.read_text() + f"\ndeep = {value}\n")
    _clean(cli("targets", "show", f), 2, f"target profile {f} is not valid TOML: nested too deeply")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            b'schema = 1\n[model]\nsource = "m\xff.py:f"\n',
            "not UTF-8 text (byte 0xff at offset 30)",
        ),
        (b"schema = 1\nx = " + b"[" * 5000 + b"]" * 5000 + b"\n", "nested too deeply"),
    ],
    ids=["non-utf8", "nested"],
)
def test_bad_edgepack_toml(
    cli: Callable[..., CliResult],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    raw: bytes,
    message: str,
) -> None:
    project = make_project(tmp_path / "p")
    (project / "edgepack.toml").write_bytes(raw)
    monkeypatch.chdir(project)
    _clean(cli("build", "--dry-run"), 2, f"edgepack.toml is not valid TOML: {message}")


def _package_with_manifest(tmp_path: Path, manifest: bytes) -> Path:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    shutil.copyfile(TINY, pkg / "model.tflite")
    (pkg / "manifest.json").write_bytes(manifest)
    return pkg


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"name": "caf\xe9"}', "not UTF-8 text (byte 0xe9 at offset 13)"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    ],
    ids=["non-utf8", "nested"],
)
def test_bad_manifest(
    cli: Callable[..., CliResult], tmp_path: Path, raw: bytes, message: str
) -> None:
    pkg = _package_with_manifest(tmp_path, raw)
    _clean(cli("inspect", pkg), 2, f"{pkg / 'manifest.json'} is not valid JSON: {message}")
    _clean(cli("bench", pkg), 2, f"is not valid JSON: {message}")
    r = cli("verify", pkg)
    _clean(r, 6, f"manifest: manifest.json is not valid JSON ({message})")


def test_bad_baseline_and_fleet_files(tmp_path: Path) -> None:
    from edgepack.bench.fleet import load_fleet
    from edgepack.bench.results import load_baseline
    from edgepack.errors import UsageError

    f = tmp_path / "base.json"
    f.write_bytes(b'{"p50_ms": "\xff"}')
    with pytest.raises(UsageError, match=r"cannot read baseline .*: not UTF-8 text \(byte 0xff"):
        load_baseline(f)
    g = tmp_path / "devices.toml"
    g.write_text("x = " + "[" * 5000 + "]" * 5000)
    with pytest.raises(UsageError, match=r"cannot read fleet file .*: nested too deeply"):
        load_fleet(g)


# --------------------------------------------------------------------------- .tflite


def _tflite_with(tmp_path: Path, edit: Callable[..., None]) -> Path:
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    obj = schema.ModelT.InitFromPackedBuf(TINY.read_bytes(), 0)
    edit(obj)
    b = flatbuffers.Builder(0)
    b.Finish(obj.Pack(b), file_identifier=b"TFL3")
    out = tmp_path / "bad.tflite"
    out.write_bytes(bytes(b.Output()))
    return out


def _set(values: object, i: int, v: int) -> object:
    import numpy as np

    arr = np.array(values, copy=True)  # the object API hands out read-only arrays
    arr[i] = v
    return arr


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda m: setattr(
                m.subgraphs[0].operators[0],
                "inputs",
                _set(m.subgraphs[0].operators[0].inputs, 0, 999),
            ),
            "tensor index 999",
        ),
        (
            lambda m: setattr(
                m.subgraphs[0].operators[1],
                "outputs",
                _set(m.subgraphs[0].operators[1].outputs, 0, -7),
            ),
            "tensor index -7",
        ),
        (
            lambda m: setattr(m.subgraphs[0], "inputs", _set(m.subgraphs[0].inputs, 0, 4096)),
            "input tensor index 4096",
        ),
        (
            lambda m: setattr(m.subgraphs[0].operators[0], "opcodeIndex", 77),
            "operator code index 77",
        ),
    ],
    ids=["op-input", "op-output", "graph-input", "opcode"],
)
def test_out_of_range_indices_in_a_tflite(
    cli: Callable[..., CliResult], tmp_path: Path, edit: Callable[..., None], message: str
) -> None:
    f = _tflite_with(tmp_path, edit)
    for args in (("inspect", f), ("check", f, "--target", "coral-usb")):
        r = cli(*args)
        _clean(r, 2, f"{f} is a corrupt TFLite model: {message} is out of range")


def test_the_unmodified_fixture_reads(cli: Callable[..., CliResult], tmp_path: Path) -> None:
    """The rewrite above is faithful: with no edit the model reads and checks."""
    f = _tflite_with(tmp_path, lambda m: None)
    assert cli("inspect", f).code == 0
    assert cli("check", f, "--target", "rpi4").code == 0


# --------------------------------------------------------------------------- model sources


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ("0x1x32x32", "invalid --input-shape '0x1x32x32': dimensions must be >= 1"),
        ("-1x1x32x32", "invalid --input-shape '-1x1x32x32'"),
        ("garbage", "invalid --input-shape 'garbage'"),
        ("1x1x32x32x", "invalid --input-shape '1x1x32x32x'"),
        ("x".join(["1"] * 9), "9 dimensions, at most 8"),
        ("1x3x100000x100000", "30,000,000,000 elements per input, at most 2,147,483,647"),
        ("99999999999999999999", "99,999,999,999,999,999,999 elements per input"),
    ],
)
def test_absurd_input_shape(
    cli: Callable[..., CliResult], tmp_path: Path, shape: str, message: str
) -> None:
    r = cli(*DIGITS_BUILD, "--input-shape", shape, "-o", tmp_path / "out")
    _clean(r, 2, message)
    assert not (tmp_path / "out").exists()


@pytest.mark.slow  # loads the model (torch)
@pytest.mark.parametrize(
    ("flag", "arrays", "message"),
    [
        ("--calibration", {"x": np.array(3.0)}, "input 'x' is a single number (a 0-d array)"),
        (
            "--eval",
            {"x": np.zeros((4, 1, 32, 32), np.float32), "y": np.array(1)},
            "labels must be a 1-D integer array, got int64()",
        ),
    ],
    ids=["0-d-input", "0-d-labels"],
)
def test_zero_d_arrays(
    cli: Callable[..., CliResult], tmp_path: Path, flag: str, arrays: dict, message: str
) -> None:
    data = tmp_path / "data.npz"
    np.savez(data, **arrays)
    extra = ["--max-accuracy-drop", "1"] if flag == "--eval" else []
    r = cli(*DIGITS_BUILD, "--input-shape", "1x1x32x32", flag, data, *extra, "-o", tmp_path / "o")
    _clean(r, 2, message)
    assert not (tmp_path / "o").exists()


DICT_MODEL = """
from torch import nn

class M(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return {"logits": self.fc(x), "features": x}

def build_model():
    return M()
"""


@pytest.mark.slow  # loads torch
def test_model_returning_a_dict(cli: Callable[..., CliResult], tmp_path: Path) -> None:
    (tmp_path / "dictnet.py").write_text(DICT_MODEL)
    r = cli(
        "build",
        f"{tmp_path}/dictnet.py:build_model",
        "--input-shape",
        "1x4",
        "--target",
        "host",
        "--quantization",
        "float32",
        "-o",
        tmp_path / "o",
    )
    _clean(
        r,
        2,
        "the model's forward() returns a dict (keys [logits, features] (2)); edgepack needs a "
        "tensor or a tuple of tensors",
    )
    assert not (tmp_path / "o").exists()


@pytest.mark.slow  # loads torch
@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("    sys.exit(0)", "exitnet.py:5 called sys.exit(0)"),
        ("    sys.exit(3)", "exitnet.py:5 called sys.exit(3)"),
        ("    raise SystemExit", "exitnet.py:5 called sys.exit()"),
        ("    raise GeneratorExit('x')", "exitnet.py:5 raised GeneratorExit: x"),
    ],
)
def test_factory_that_exits(
    cli: Callable[..., CliResult], tmp_path: Path, code: str, message: str
) -> None:
    (tmp_path / "exitnet.py").write_text(f"import sys\n\n\ndef build_model():\n{code}\n")
    r = cli(
        "build",
        f"{tmp_path}/exitnet.py:build_model",
        "--input-shape",
        "1x4",
        "--target",
        "host",
        "--quantization",
        "float32",
        "-o",
        tmp_path / "o",
    )
    _clean(r, 2, f"factory {tmp_path}/exitnet.py:build_model at {message}")
    assert not (tmp_path / "o").exists()


def test_model_file_that_exits_on_import(cli: Callable[..., CliResult], tmp_path: Path) -> None:
    (tmp_path / "quitter.py").write_text("import sys\nsys.exit(0)\n")
    r = cli("build", f"{tmp_path}/quitter.py:f", "--input-shape", "1x4", "--target", "host")
    _clean(r, 2, f"importing {tmp_path}/quitter.py at quitter.py:2 called sys.exit(0)")


# --------------------------------------------------------------------------- devices


@pytest.fixture
def garbage_server() -> Iterator[int]:
    """A plain TCP server on loopback that answers every connection with non-SSH bytes."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)

    def serve() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            with conn:
                conn.sendall(b"HTTP/1.0 200 OK\r\n\r\n\x00\xff garbage\r\n" * 20)

    threading.Thread(target=serve, daemon=True).start()
    yield srv.getsockname()[1]
    srv.close()


def test_port_that_does_not_speak_ssh(cli: Callable[..., CliResult], garbage_server: int) -> None:
    r = cli("bench", TINY, "--target", "rpi4", "--host", "127.0.0.1", "--port", garbage_server)
    _clean(
        r,
        4,
        f"SSH to 127.0.0.1:{garbage_server} failed: the server on that port does not speak SSH",
        "hint: check that the device runs an SSH server on that port",
    )


# --------------------------------------------------------------------------- a full disk

LIMITED = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
{body}
"""


def _limited(tmp_path: Path, limit: int, body: str, *args: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "limited.py"
    script.write_text(LIMITED.format(body=body))
    tmp = tmp_path / "tmp"
    tmp.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "TMPDIR": str(tmp),
        "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor"),
        "LITERT_TORCH_SHOW_PROGRESS": "n",
    }
    return subprocess.run(
        [sys.executable, str(script), str(limit), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
def test_disk_full_in_tmpdir_is_a_clean_error(tmp_path: Path) -> None:
    """torch writes the exported .pt2 with a C++ zip writer that aborts the process (exit 134)
    when a write fails; edgepack writes it through Python, so the build fails cleanly."""
    body = "from edgepack.cli import main\nsys.exit(main(sys.argv[2:]))"
    args = [str(a) for a in DIGITS_BUILD] + ["--input-shape", "1x1x32x32"]
    r = _limited(tmp_path, 100_000, body, *args, "-o", str(tmp_path / "out"))
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith(("error:", "hint:"))]
    assert lines[0].startswith(f"error: cannot write {tmp_path / 'tmp'}/edgepack-build-")
    assert lines[0].endswith("/export/model.pt2: file too large (a file size limit, ulimit -f)")
    assert lines[1] == (
        "hint: free space or choose writable folders: temporary files go to TMPDIR "
        f"(now {tmp_path / 'tmp'}), the package to --output"
    )
    assert list((tmp_path / "tmp").iterdir()) == []  # the build's temp folder is gone
    assert not (tmp_path / "out").exists()


def test_disk_full_at_the_output_is_a_clean_error(tmp_path: Path) -> None:
    """The package is written into a staging folder next to the output: a failed write
    there is a StorageError and leaves neither the staging folder nor a package."""
    big = tmp_path / "model.bin"
    big.write_bytes(b"\0" * 50_000)
    out = tmp_path / "dist" / "pkg"
    body = f"""
from pathlib import Path
from edgepack.errors import StorageError
from edgepack.stages.package import write_package
try:
    write_package(Path({str(out)!r}), {{"model.tflite": Path({str(big)!r})}}, {{}}, {{}}, False)
except StorageError as err:
    print(err.message)
    sys.exit(err.exit_code)
"""
    r = _limited(tmp_path, 10_000, body)
    assert r.returncode == 2, r.stderr
    msg = r.stdout.strip()
    assert msg.startswith(f"cannot write {tmp_path / 'dist'}/.pkg.tmp-"), msg
    assert msg.endswith("/model.tflite: file too large (a file size limit, ulimit -f)"), msg
    assert list((tmp_path / "dist").iterdir()) == []


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--no-host-latency", "--latency-runs", "5"],
            "--no-host-latency and --latency-runs 5 contradict each other",
        ),
        (["--latency-budget", "0"], "--latency-budget must be > 0 seconds (got 0.0)"),
        (["--latency-budget", "-1"], "--latency-budget must be > 0 seconds (got -1.0)"),
    ],
)
def test_host_latency_options(
    cli: Callable[..., CliResult], flags: list[str], message: str
) -> None:
    _clean(cli(*DIGITS_BUILD[:-2], *flags), 2, message)
