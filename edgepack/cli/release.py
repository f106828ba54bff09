"""Release commands: `edgepack init`, `edgepack verify`, `edgepack report`."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from edgepack.cli.output import echo_json, echo_table


def _relative_to(folder: Path, value: str | None) -> str | None:
    """A path given on the command line, as the config (in ``folder``) must spell it."""
    if value is None:
        return None
    p = Path(value)
    if p.is_absolute():
        return value
    return Path(os.path.relpath(p.resolve(), folder.resolve())).as_posix()


def _holds_packages(folder: Path) -> bool:
    """A dist folder, or a folder of dist folders (not a package folder itself)."""
    from edgepack.manifest import MANIFEST_NAME
    from edgepack.release.shard import SUMMARY_GLOB

    if not folder.is_dir() or (folder / MANIFEST_NAME).is_file():
        return False
    if any(folder.glob(SUMMARY_GLOB)) or any(folder.glob(f"*/{MANIFEST_NAME}")):
        return True
    return any(folder.glob(f"*/{SUMMARY_GLOB}")) or any(folder.glob(f"*/*/{MANIFEST_NAME}"))


def register(app: typer.Typer) -> None:
    @app.command("init")
    def init(
        source: str | None = typer.Argument(
            None, help="Model source (module:factory, file.py:factory or .pt2)."
        ),
        weights: str | None = typer.Option(None, "--weights", help="state_dict file."),
        input_shape: list[str] = typer.Option(
            [], "--input-shape", help="Input shape like 1x3x224x224 (repeatable)."
        ),
        target: list[str] = typer.Option(
            [], "--target", "-t", help="Targets to list (repeatable; default host)."
        ),
        calibration: str | None = typer.Option(None, "--calibration", help="Calibration data."),
        eval_data: str | None = typer.Option(None, "--eval", help="Labelled evaluation data."),
        name: str | None = typer.Option(None, "--name", help="Package name."),
        output: Path = typer.Option(
            Path("edgepack.toml"), "--output", "-o", help="Where to write the config."
        ),
        force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
        dry_run: bool = typer.Option(
            False, "--dry-run", help="Print the file instead of writing it."
        ),
        json_: bool = typer.Option(False, "--json", help="Print JSON."),
    ) -> None:
        """Write a commented edgepack.toml for a model (refuses to overwrite without --force)."""
        from edgepack.errors import UsageError
        from edgepack.release.config import parse_config, render_template
        from edgepack.source import default_name
        from edgepack.targets import load_target

        for t in target:
            load_target(t)  # unknown target: the usual error with close names
        folder = output.parent
        src = source
        if source is not None:
            spec, sep, factory = source.rpartition(":")
            if sep and (spec.endswith(".py") or "/" in spec):
                src = f"{_relative_to(folder, spec)}:{factory}"
            elif source.endswith(".pt2"):
                src = _relative_to(folder, source)
        text = render_template(
            source=src,
            weights=_relative_to(folder, weights),
            input_shapes=tuple(input_shape),
            targets=tuple(target),
            calibration=_relative_to(folder, calibration),
            eval_data=_relative_to(folder, eval_data),
            name=name or (default_name(source) if source else None),
        )
        cfg = parse_config(text, str(output))  # never write a file `build` would refuse
        if dry_run:
            if json_:
                echo_json(
                    {"path": str(output), "content": text, "config": cfg.model_dump(by_alias=True)}
                )
            else:
                typer.echo(text, nl=False)
            return
        if output.exists() and not force:
            raise UsageError(
                f"{output} already exists", "pass --force to overwrite it, or -o another path"
            )
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="utf-8")
        if json_:
            echo_json({"path": str(output), "written": True})
            return
        typer.echo(
            f"wrote {output}: check it, then `edgepack build --dry-run` and `edgepack build`"
        )

    @app.command("verify")
    def verify(
        packages: list[Path] = typer.Argument(
            ...,
            help="Package folders written by `edgepack build`, or dist folders (every package "
            "inside; the dist folders of every --shard are merged).",
        ),
        target: str | None = typer.Option(
            None,
            "--target",
            "-t",
            help="Compare the profile with this target (name or .toml) instead of the built-in.",
        ),
        json_: bool = typer.Option(False, "--json", help="Print JSON."),
    ) -> None:
        """Check hashes, manifest schema, profile hash, and that the model loads and runs.

        Several dist folders (one per --shard) are checked as one release: a package in two
        of them must have the same bytes, every shard and every package must be there.
        Exit 6 if any check fails."""
        from edgepack.release.verify import verify_package, verify_release

        if len(packages) == 1 and not _holds_packages(packages[0]):
            package = packages[0]
            rep = verify_package(package, target)
            if json_:
                echo_json(rep.to_dict())
            else:
                echo_table(
                    ["check", "status", "detail"],
                    [(c.name, c.status.value.upper(), c.detail) for c in rep.checks],
                )
            if rep.ok and not json_:
                uncompiled = any(
                    c.name == "edgetpu" and c.status.value == "skip" for c in rep.checks
                )
                typer.echo(
                    f"\n{package}: verified"
                    + (" (NOT compiled for the Edge TPU: it runs on the CPU)" if uncompiled else "")
                )
            rep.raise_if_failed()  # VerifyError: printed by the CLI, exit code 6
            return
        release = verify_release(packages, target)
        if json_:
            echo_json(release.to_dict())
        else:
            echo_table(
                ["package", "check", "status", "detail"],
                [
                    (r.package.name, c.name, c.status.value.upper(), c.detail)
                    for r in release.reports
                    for c in r.checks
                ]
                + [("(release)", c.name, c.status.value.upper(), c.detail) for c in release.checks],
            )
            if release.ok:
                typer.echo(f"\n{len(release.reports)} package(s) verified")
        release.raise_if_failed()

    @app.command("report")
    def report(
        inputs: list[Path] = typer.Argument(
            ...,
            help="dist folders (every package inside), package folders, or a folder of dist "
            "folders (the artifacts of every --shard job): merged into one report.",
        ),
        output: Path = typer.Option(Path("report.html"), "--output", "-o", help="HTML file."),
        title: str = typer.Option("edgepack report", "--title", help="Report title."),
        allow_missing_shards: bool = typer.Option(
            False,
            "--allow-missing-shards",
            help="Report the shards that are there when a --shard build's shard is missing "
            "(default: exit 2).",
        ),
        json_: bool = typer.Option(False, "--json", help="Print the report's data as JSON."),
    ) -> None:
        """Write one self-contained HTML report (no network) with plots of every package."""
        from edgepack.release.report import collect, write_report

        data = collect(inputs, allow_missing_shards=allow_missing_shards)
        write_report(data, output, title=title)
        shards = data.get("shards") or {}
        for note in (*shards.get("missing", ()), *shards.get("not_built", ())):
            typer.echo(f"warning: {note}", err=True)
        if json_:
            echo_json({"output": str(output), **data})
            return
        n_bench = sum(len(p["bench"]) for p in data["packages"])
        merged = (
            f" from shard(s) {', '.join(str(i) for i in shards['found'])} of {shards['count']}"
            if shards
            else ""
        )
        typer.echo(
            f"wrote {output}: {len(data['packages'])} package(s){merged}, "
            f"{n_bench} benchmark result(s)"
        )
