"""The thin command-line layer: parse options, call the library, print.

Each command lives in its own module (build.py, bench.py, ...) and is registered here.
The library never prints or exits; :func:`main` turns an :class:`EdgepackError` into
``error: ...`` / ``hint: ...`` on stderr and the error's exit code, without a traceback.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import typer

from edgepack.errors import EdgepackError, storage_error

# Command modules and the commands each registers.
COMMANDS: dict[str, tuple[str, ...]] = {
    "targets": ("targets",),
    "build": ("build",),
    "inspect": ("inspect",),
    "bench": ("bench",),
    "check": ("check",),
    "compress": ("compress",),
    "analyze": ("analyze",),
    "release": ("init", "verify", "report"),
}


# Root options that come before the command (`edgepack --verbose build ...`).
ROOT_FLAGS = ("--verbose",)
HELP_FLAGS = ("-h", "--help")


class State:
    """Root options for the command that runs (set by the root callback on every run)."""

    verbose = False


def make_app(command: str | None = None) -> typer.Typer:
    """The CLI with every command, or only the module that defines ``command``.

    Building a click command for every option of every command costs more than typer's own
    import, so a run of one command registers only that command (help and completion, which
    need them all, register all). Command modules import heavy libraries inside functions.
    """
    app = typer.Typer(
        name="edgepack",
        help="Take a PyTorch model to an edge device: compress, convert, quantize, validate, "
        "package, benchmark.",
        no_args_is_help=True,
        pretty_exceptions_show_locals=False,  # SSH settings and paths must never leak
        add_completion=True,
        rich_markup_mode=None,  # plain help: importing rich would double start-up time
        context_settings={"help_option_names": list(HELP_FLAGS)},  # inherited by commands
    )

    @app.callback()
    def _root(
        version: bool = typer.Option(
            False,
            "--version",
            is_eager=True,
            expose_value=True,
            callback=_print_version,
            help="Print the version and exit.",
        ),
        verbose: bool = typer.Option(
            False, "--verbose", help="After a build, print each stage's time to stderr."
        ),
    ) -> None:
        """Take a PyTorch model to an edge device: compress, convert, quantize, validate,
        package, benchmark."""
        del version  # handled (and exited) by its callback
        State.verbose = verbose

    if command == "":  # --version
        return app
    modules = [m for m, cmds in COMMANDS.items() if command in cmds] or list(COMMANDS)
    for name in modules:
        mod = __import__(f"edgepack.cli.{name}", fromlist=["register"])
        mod.register(app)
    return app


def _print_version(value: bool) -> None:
    if not value:
        return
    from edgepack import __version__

    typer.echo(f"edgepack {__version__}")
    raise typer.Exit(0)


def _command_of(argv: list[str]) -> str | None:
    for arg in argv:
        if arg in ROOT_FLAGS:
            continue
        if not arg.startswith("-"):
            return arg
        return None  # a root option (--help, --install-completion): everything
    return None


def print_error(err: EdgepackError) -> None:
    typer.echo(f"error: {err.message}", err=True)
    if err.hint:
        typer.echo(f"hint: {err.hint}", err=True)


class Terminated(BaseException):
    """SIGTERM or SIGHUP: unwinds the stack like Ctrl-C, so every temporary folder and
    half-written package is removed on the way out (a BaseException: nothing swallows it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n))


@contextmanager
def stop_signals_unwind() -> Iterator[None]:
    """While the block runs, SIGTERM/SIGHUP raise :class:`Terminated` in the main thread
    (once: a second signal during the clean-up is ignored, SIGKILL still works)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: object) -> None:
        del frame
        for s in STOP_SIGNALS:
            signal.signal(s, signal.SIG_IGN)
        raise Terminated(signum)

    old = {s: signal.signal(s, stop) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `edgepack` console script. Returns the exit code."""
    args = sys.argv[1:] if argv is None else argv
    command = _command_of(args)
    if command is None and "--version" in args:
        args = ["--version"]  # nothing else is parsed: no command needs registering
        command = ""
    try:
        with stop_signals_unwind():
            make_app(command)(args=args, prog_name="edgepack")
    except Terminated as stop:
        name = signal.Signals(stop.signum).name
        typer.echo(f"edgepack: stopped by {name}; temporary files removed", err=True)
        return 128 + stop.signum
    except EdgepackError as err:
        print_error(err)
        return err.exit_code
    except OSError as exc:  # a full disk or an unwritable folder anywhere: not our bug
        storage = storage_error(exc)
        if storage is None:
            raise
        print_error(storage)
        return storage.exit_code
    except SystemExit as exc:  # typer's standalone mode: usage errors, --help, success
        code = exc.code
        if code is None:
            return 0
        return code if isinstance(code, int) else 1
    return 0


def console_main() -> None:  # pragma: no cover - thin wrapper
    sys.exit(main())
