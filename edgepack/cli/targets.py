"""`edgepack targets list|show`."""

from __future__ import annotations

from pathlib import Path

import typer

from edgepack.cli.output import echo_json, echo_table


def register(app: typer.Typer) -> None:
    sub = typer.Typer(help="List and show target device profiles.", no_args_is_help=True)

    @sub.command("list")
    def list_(json_: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
        """List the built-in target profiles."""
        from edgepack.targets import list_targets

        profiles = list_targets()
        if json_:
            echo_json([p.to_dict() for p in profiles])
            return
        rows = [
            (
                p.name,
                p.device.arch,
                ", ".join(m.value for m in p.quantization.modes),
                p.quantization.io_dtype.value,
                p.runtime.delegate.value,
                p.bench.transport.value,
                p.description,
            )
            for p in profiles
        ]
        echo_table(
            ["target", "arch", "quantization", "io", "delegate", "bench", "description"], rows
        )

    @sub.command("show")
    def show(
        name: str = typer.Argument(..., help="Target name or path to a .toml profile."),
        json_: bool = typer.Option(False, "--json", help="Print JSON instead of TOML."),
    ) -> None:
        """Show one target profile (validated), with its content hash."""
        from edgepack.targets import load_target, targets_dir

        profile = load_target(name)
        if json_:
            echo_json({**profile.to_dict(), "sha256": profile.sha256})
            return
        path = targets_dir() / f"{name}.toml"
        src = path if path.is_file() else Path(name)
        text = src.read_text(encoding="utf-8")
        typer.echo(text.rstrip())
        typer.echo(f"# sha256 of the resolved profile: {profile.sha256}")

    app.add_typer(sub, name="targets")
