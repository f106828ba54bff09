"""Shared fixtures: the bundled digits example, a CLI runner, one real package per session."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

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
