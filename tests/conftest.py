"""Shared fixtures: the bundled digits example, a CLI runner, one real package per session."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
DIGITS = REPO / "examples" / "digits"

os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "n")


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The export/conversion cache of the whole session: never the user's real cache."""
    folder = tmp_path_factory.mktemp("edgepack-cache")
    old = os.environ.get("EDGEPACK_CACHE_DIR")
    os.environ["EDGEPACK_CACHE_DIR"] = str(folder)
    yield folder
    if old is None:
        os.environ.pop("EDGEPACK_CACHE_DIR", None)
    else:
        os.environ["EDGEPACK_CACHE_DIR"] = old


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliResult]:
    """Run `edgepack ARGS...` in-process through the real entry point."""
    from edgepack.cli import main

    def run(*args: str | Path) -> CliResult:
        capsys.readouterr()
        code = main([str(a) for a in args])
        cap = capsys.readouterr()
        return CliResult(code, cap.out, cap.err)

    return run


def digits_build_args(target: str = "rpi4", *extra: str | Path) -> list[str | Path]:
    return [
        "build",
        f"{DIGITS}/model.py:build_model",
        "--weights",
        DIGITS / "weights.pt",
        "--input-shape",
        "1x1x32x32",
        "--target",
        target,
        "--calibration",
        DIGITS / "calib.npz",
        "--eval",
        DIGITS / "eval.npz",
        "--latency-runs",
        "5",
        *extra,
    ]


@pytest.fixture(scope="session")
def digits_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real rpi4 package of the bundled example, built once per session."""
    from edgepack.pipeline import BuildPlan, build
    from edgepack.targets import load_target

    out = tmp_path_factory.mktemp("pkg") / "digits-rpi4"
    build(
        BuildPlan(
            source=f"{DIGITS}/model.py:build_model",
            target=load_target("rpi4"),
            weights=DIGITS / "weights.pt",
            input_shapes=("1x1x32x32",),
            calibration=DIGITS / "calib.npz",
            eval=DIGITS / "eval.npz",
            max_accuracy_drop=1.0,
            output=out,
            latency_runs=5,
        )
    )
    return out


@pytest.fixture(scope="session")
def float_tflite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The digits CNN converted to float32 with litert-torch (no quantization)."""
    from edgepack.source import load_source
    from edgepack.stages import convert, export
    from edgepack.stages.base import StageContext
    from edgepack.targets import IOLayout

    work = tmp_path_factory.mktemp("float")
    model = load_source(f"{DIGITS}/model.py:build_model", DIGITS / "weights.pt", ["1x1x32x32"])
    ctx = StageContext(workdir=work)
    return convert.run(export.run(model, ctx), IOLayout.NCHW, ctx).path


@dataclass
class EncoderPackage:
    path: Path
    err: str  # what the build printed on stderr
    files: dict[str, Path]  # weights, calib.npz, eval.npz


@pytest.fixture(scope="session")
def encoder_package(tmp_path_factory: pytest.TempPathFactory) -> EncoderPackage:
    """A dynamic-range host package of the token encoder (int64 ids + mask, per-token output),
    built once per session through the CLI (tests/token_encoder.py)."""
    import contextlib
    import io

    from edgepack.cli import main
    from tests import token_encoder

    root = tmp_path_factory.mktemp("encoder")
    files = token_encoder.write_files(root / "data")
    out = root / "pkg"
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(token_encoder.build_args(files, out, "--eval", str(files["eval"])))
    assert code == 0, err.getvalue()
    return EncoderPackage(out, err.getvalue(), files)


# tflite-support's MetadataDisplayer, run in its own venv (scripts/setup.d/50-tflite-support.sh)
_DISPLAYER = """
import json, sys
from tflite_support import metadata
d = metadata.MetadataDisplayer.with_model_file(sys.argv[1])
files = d.get_packed_associated_file_list()
print(json.dumps({
    "metadata": json.loads(d.get_metadata_json()),
    "packed": files,
    "contents": {f: d.get_associated_file_buffer(f).decode() for f in files},
}))
"""


@pytest.fixture(scope="session")
def tflite_support_reader() -> Callable[[Path], dict[str, Any]]:
    """An independent reader of TFLite metadata: tflite-support 0.4.4 (its own venv, made by
    `make system-deps`). Returns path -> {"metadata": the ModelMetadata as JSON, "packed":
    the associated files packed in the model, "contents": their text}. Absent: skipped, but
    under CI (CI set) it fails."""
    import json
    import subprocess

    venv = Path(
        os.environ.get("EDGEPACK_TFLITE_SUPPORT_DIR", REPO / ".ci" / "work" / "tflite-support")
    )
    python = venv / "bin" / "python"
    if not python.exists():
        msg = (
            f"tflite-support venv absent ({venv}): run `make system-deps` "
            "(scripts/setup.d/50-tflite-support.sh)"
        )
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)

    def read(path: Path) -> dict[str, Any]:
        done = subprocess.run(
            [str(python), "-c", _DISPLAYER, str(path)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        result: dict[str, Any] = json.loads(done.stdout)
        return result

    return read
