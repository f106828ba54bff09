"""`edgepack compress`: prune (and distill) a model into a torch.export .pt2."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from edgepack.cli.output import echo_table


def register(app: typer.Typer) -> None:
    @app.command("compress")
    def compress(
        source: str = typer.Argument(
            ..., help="Model source: module.path:factory or path/to/file.py:factory."
        ),
        weights: Path | None = typer.Option(None, "--weights", help="state_dict (.pt) to load."),
        input_shape: list[str] = typer.Option(
            [], "--input-shape", help="Input shape like 1x1x32x32 (repeat for several inputs)."
        ),
        prune: str | None = typer.Option(
            None, "--prune", help="METHOD:SPARSITY, e.g. magnitude:0.7 or channels:0.5."
        ),
        scope: str = typer.Option(
            "global", "--scope", help="Magnitude pruning: global (one threshold) or layer."
        ),
        round_to: int = typer.Option(
            1, "--round-to", help="Channel pruning: keep channel counts multiples of this."
        ),
        distill: bool = typer.Option(
            False, "--distill", help="Recover accuracy by distilling from the unpruned model."
        ),
        train: Path | None = typer.Option(
            None, "--train", help="Training data (.npz) for --distill."
        ),
        epochs: int = typer.Option(5, "--epochs"),
        lr: float = typer.Option(1e-3, "--lr"),
        batch_size: int = typer.Option(64, "--batch-size"),
        temperature: float = typer.Option(4.0, "--temperature"),
        alpha: float = typer.Option(
            0.0, "--alpha", help="Weight of the hard-label loss (needs labels; 0 = pure KD)."
        ),
        device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
        samples: int | None = typer.Option(None, "--samples", help="Use only N training samples."),
        eval_: Path | None = typer.Option(
            None, "--eval", help="Labelled data: report top-1 before/after each stage."
        ),
        seed: int = typer.Option(0, "--seed"),
        output: Path = typer.Option(..., "-o", "--output", help="Output .pt2 file."),
        force: bool = typer.Option(False, "--force", help="Overwrite an existing output."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress lines."),
    ) -> None:
        """Prune (and distill) a PyTorch model; write a torch.export .pt2 and a JSON record."""
        from edgepack.compression import CompressPlan, check_output
        from edgepack.compression import compress as run
        from edgepack.errors import UsageError
        from edgepack.stages.distill import DistillSpec
        from edgepack.stages.prune import parse_prune_spec

        if prune is None:
            raise UsageError(
                "nothing to do: compress needs --prune METHOD:SPARSITY",
                "e.g. --prune channels:0.5 --distill --train train.npz",
            )
        prune_spec = parse_prune_spec(prune, round_to=round_to, scope=scope)
        distill_spec = None
        if distill:
            distill_spec = DistillSpec.from_options(
                train,
                epochs=epochs,
                lr=lr,
                batch_size=batch_size,
                temperature=temperature,
                alpha=alpha,
                device=device,
                samples=samples,
            )
        elif train is not None:
            raise UsageError(
                "--train is only used with --distill", "add --distill, or drop --train"
            )
        check_output(output, force)

        from edgepack.source import load_source

        model = load_source(source, weights, input_shape)
        plan = CompressPlan(
            prune=prune_spec,
            output=output,
            distill=distill_spec,
            eval=eval_,
            force=force,
            seed=seed,
        )
        show = (lambda m: None) if quiet else (lambda m: typer.echo(f"  {m}", err=True))
        result = run(model, plan, progress=show)
        rows = [_row(r.name, r.metrics) for r in result.records if "params_before" in r.metrics]
        echo_table(["stage", "params", "MACs", "sparsity", "top-1"], rows)
        typer.echo(f"wrote {result.output} and {result.sidecar}")


def _row(name: str, m: dict[str, Any]) -> list[str]:
    def pair(key: str, fmt: str = "{}") -> str:
        if f"{key}_before" not in m:
            return "-"
        return f"{fmt.format(m[f'{key}_before'])} -> {fmt.format(m[f'{key}_after'])}"

    return [name, pair("params"), pair("macs"), pair("sparsity", "{:.1%}"), pair("top1", "{}%")]
