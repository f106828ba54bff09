"""`edgepack check MODEL.tflite --target coral-usb`: device compatibility pre-flight.

Exit codes: 0 when the model is compatible (or the target does not require full delegation),
3 when the target requires full delegation (compat.require_full_delegation) and some op falls
back to the CPU, 2 for input errors (missing file, not a .tflite, unknown target or rules).
"""

from __future__ import annotations

from pathlib import Path

import typer

from edgepack.cli.output import echo_json, echo_table


def _share(value: float | None) -> str:
    return "n/a (no MAC ops)" if value is None else f"{100 * value:.1f}%"


def register(app: typer.Typer) -> None:
    @app.command("check")
    def check_cmd(
        model: Path = typer.Argument(..., help="The .tflite model (or a package folder)."),
        target: str = typer.Option(..., "--target", "-t", help="Target name or profile .toml."),
        rules: str = typer.Option(
            "", "--rules", help="Comma-separated rule tables instead of the target's."
        ),
        json_: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    ) -> None:
        """Predict which ops run on the target's accelerator and where the graph splits.

        Exit codes: 0 printed, 3 full delegation required but not met, 2 bad input.
        """
        from edgepack.compat import available_rules, check, require_full_delegation
        from edgepack.errors import UsageError
        from edgepack.targets import load_target

        profile = load_target(target)  # validate the target before reading the model
        names = [r.strip() for r in rules.split(",") if r.strip()] or list(profile.compat.rules)
        if not names:
            raise UsageError(
                f"target '{profile.name}' declares no compatibility rules",
                "pass --rules with one of: " + ", ".join(available_rules()),
            )
        path = model / "model.tflite" if model.is_dir() else model
        report = check(path, names)
        if json_:
            echo_json(report.to_dict())
        else:
            for r in report.results:
                typer.echo(
                    f"{r.accelerator} pre-flight ({r.rules} rules v{r.version}, "
                    f"{r.applies_to}) for {report.model}"
                )
                rows = [
                    (
                        o.index,
                        o.op,
                        o.dtypes,
                        o.placement.value,
                        f"{o.reason.value}: {o.detail}" if o.reason else "",
                    )
                    for o in r.ops
                ]
                echo_table(["#", "op", "dtypes", "placement", "reason"], rows)
                split = (
                    f"op {r.split_index} ({r.ops[r.split_index].op})"
                    if r.split_index is not None
                    else "none"
                )
                typer.echo(
                    f"ops on accelerator: {len(r.ops) - len(r.cpu_ops)}/{len(r.ops)}  "
                    f"partitions: {r.partitions}  first split: {split}  "
                    f"MACs on accelerator: {_share(r.mac_share)} "
                    f"({r.macs_on_accelerator}/{r.macs_total})"
                )
                for w in r.warnings:
                    typer.echo(f"warning: {w}")
                verdict = (
                    "fully delegated"
                    if r.fully_delegated
                    else ("compute delegated, some ops on CPU" if r.ok else "NOT delegated")
                )
                typer.echo(f"result: {verdict}\n")
        if profile.compat.require_full_delegation and not rules:
            require_full_delegation(report, profile.name)
