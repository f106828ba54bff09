"""The root of the CLI: --version, -h on every command, --verbose timings, -q is --quiet,
and the panels of `build --help`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer

import edgepack
from edgepack.cli import COMMANDS, make_app
from edgepack.cli.build import PANELS
from tests.conftest import digits_build_args

ROOT = Path(__file__).resolve().parents[2]


def _click_command(name: str) -> Any:
    group = typer.main.get_command(make_app(name))
    return group.commands[name]  # type: ignore[attr-defined]


def test_version(cli: Any) -> None:
    r = cli("--version")
    assert (r.code, r.out, r.err) == (0, f"edgepack {edgepack.__version__}\n", "")


@pytest.mark.parametrize(
    "argv",
    [[], ["targets", "list"], ["targets", "show"]]
    + [[c] for cmds in COMMANDS.values() for c in cmds],
)
def test_h_is_help_everywhere(cli: Any, argv: list[str]) -> None:
    short, long = cli(*argv, "-h"), cli(*argv, "--help")
    assert short.code == 0 and short.out == long.out
    assert re.search(rf"Usage: edgepack {' '.join(argv)}".rstrip(), short.out)


def test_q_means_quiet_not_quantization(cli: Any, tmp_path: Path) -> None:
    for name in ("build", "compress"):
        opts = {o.name: o.opts for o in _click_command(name).params}
        assert sorted(opts["quiet"]) == ["--quiet", "-q"]
    build_opts = {o.name: o.opts for o in _click_command("build").params}
    assert build_opts["quantization"] == ["--quantization"]
    # the old spelling `-q full-int8` is now a stray argument: a usage error, nothing built
    r = cli(*digits_build_args("host", "-q", "float16", "-o", tmp_path / "p"))
    assert r.code == 2 and "unexpected extra argument(s) (float16)" in r.err
    assert not (tmp_path / "p").exists()


def test_build_help_has_panels_in_order_and_an_example(cli: Any) -> None:
    out = cli("build", "--help").out
    titles = re.findall(r"^([A-Z][a-z]+):$", out, flags=re.M)
    assert titles == [
        "Arguments",
        "Model",
        "Data",
        "Quantization",
        "Gates",
        "Compression",
        "Output",
        "Options",  # -h/--help alone
    ]
    assert "Example: edgepack build" in out
    # every option is in a panel (a new option must be placed in PANELS)
    for param in _click_command("build").params:
        if isinstance(param, typer.core.TyperOption) and param.name != "help":
            assert param.rich_help_panel in PANELS, param.name


def test_help_does_not_import_rich_or_torch() -> None:
    code = (
        "import sys; from edgepack.cli import main; main(['build', '--help']); "
        "print(sorted(m for m in ('rich', 'torch', 'numpy') if m in sys.modules))"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    ).stdout
    assert out.splitlines()[-1] == "[]"


@pytest.mark.slow
def test_verbose_prints_stage_timings_of_the_build(cli: Any, tmp_path: Path) -> None:
    args = digits_build_args("host", "--latency-runs", "0", "-o", tmp_path / "p", "--json")
    r = cli("--verbose", *args)
    assert r.code == 0, r.err
    seconds = json.loads(r.out)["build"]["stage_seconds"]  # (--json sorts the keys)
    m = re.search(r"^timings host: (.*) \(total (\S+) s\)$", r.err, flags=re.M)
    assert m is not None, r.err
    shown = dict(p.rsplit(" ", 2)[:2] for p in m.group(1).split(", "))
    assert shown == {k: f"{v:.2f}" for k, v in seconds.items()}
    assert m.group(2) == f"{sum(seconds.values()):.2f}"
    assert {"load", "export", "convert", "quantize", "validate"} <= set(seconds)
    plain = cli(*digits_build_args("host", "--latency-runs", "0", "-o", tmp_path / "q", "-q"))
    assert plain.code == 0 and "timings" not in plain.err
