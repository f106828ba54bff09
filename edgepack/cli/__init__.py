"""The thin command-line layer: parse options, call the library, print.

Each command lives in its own module (build.py, bench.py, ...) and is registered here.
The library never prints or exits; :func:`main` turns an :class:`EdgepackError` into
``error: ...`` / ``hint: ...`` on stderr and the error's exit code, without a traceback.
"""

from __future__ import annotations

import sys

import typer

from edgepack.errors import EdgepackError

app = typer.Typer(
    name="edgepack",
    help="Take a PyTorch model to an edge device: compress, convert, quantize, validate, "
    "package, benchmark.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # SSH settings and paths must never leak
    add_completion=True,
    rich_markup_mode=None,  # plain help: importing rich would double start-up time
)


def _register() -> None:
    # Imports are cheap: command modules import heavy libraries inside their functions.
    for name in ("targets", "build", "inspect", "bench", "check", "compress", "analyze", "release"):
        try:
            mod = __import__(f"edgepack.cli.{name}", fromlist=["register"])
        except ModuleNotFoundError as exc:
            if exc.name != f"edgepack.cli.{name}":
                raise
            continue
        mod.register(app)


_register()


def print_error(err: EdgepackError) -> None:
    typer.echo(f"error: {err.message}", err=True)
    if err.hint:
        typer.echo(f"hint: {err.hint}", err=True)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `edgepack` console script. Returns the exit code."""
    try:
        app(args=argv, prog_name="edgepack")
    except EdgepackError as err:
        print_error(err)
        return err.exit_code
    except SystemExit as exc:  # typer's standalone mode: usage errors, --help, success
        code = exc.code
        if code is None:
            return 0
        return code if isinstance(code, int) else 1
    return 0


def console_main() -> None:  # pragma: no cover - thin wrapper
    sys.exit(main())
