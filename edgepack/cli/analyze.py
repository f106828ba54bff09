"""`edgepack analyze`: per-layer quantization error of a package against its float model."""

from __future__ import annotations

from pathlib import Path

import typer

from edgepack.cli.output import echo_json, echo_table


def register(app: typer.Typer) -> None:
    @app.command("analyze")
    def analyze(
        package: Path = typer.Argument(..., help="A package folder written by `edgepack build`."),
        eval_data: Path = typer.Option(
            ..., "--eval", help="Samples to compare on (.npz / .npy / folder; labels unused)."
        ),
        top: int = typer.Option(10, "--top", help="How many of the worst layers to print."),
        samples: int | None = typer.Option(
            100, "--samples", help="Use the first N samples (default 100)."
        ),
        reference: Path | None = typer.Option(
            None, "--reference", help="Float .tflite to compare with (default: the package's)."
        ),
        output: Path | None = typer.Option(
            None,
            "--output",
            "-o",
            help="Full table, .csv or .json (default PACKAGE/analysis/layers.csv).",
        ),
        json_: bool = typer.Option(False, "--json", help="Print the full table as JSON."),
    ) -> None:
        """Rank layers by the quantization error they add (SNR, cosine vs the float model)."""
        from edgepack.accuracy.analyze import analyze_package
        from edgepack.errors import UsageError

        if output is not None and output.suffix not in (".csv", ".json"):
            raise UsageError(
                f"--output {output}: unknown table format '{output.suffix}'",
                "name the file .csv or .json",
            )
        if samples is not None and samples < 1:
            raise UsageError("--samples must be >= 1", "e.g. --samples 100")
        result = analyze_package(package, eval_data, samples=samples, reference=reference)
        dest = output or package / "analysis" / "layers.csv"
        dest.parent.mkdir(parents=True, exist_ok=True)
        result.save(dest)
        if json_:
            echo_json(result.to_dict())
            return
        typer.echo(
            f"per-layer error of {package}: {result.matched} op outputs compared on "
            f"{result.samples} samples; ranked by the median SNR lost at the op (added dB)"
        )
        rows = [
            (
                r.rank,
                r.op_index,
                r.op,
                r.layer[:48],
                r.dtype.lower(),
                f"{r.added_db:.1f}",
                f"{r.median_snr_db:.1f}",
                f"{r.snr_db:.1f}",
                f"{r.cosine:.4f}",
                f"{r.max_abs_error:.4g}",
            )
            for r in result.worst(top)
        ]
        echo_table(
            [
                "rank",
                "op#",
                "op",
                "layer",
                "dtype",
                "added dB",
                "median SNR dB",
                "SNR dB",
                "cosine",
                "max abs err",
            ],
            rows,
        )
        if result.unmatched:
            typer.echo(f"not compared (no float counterpart): {len(result.unmatched)} tensor(s)")
        typer.echo(f"\nfull table ({len(result.layers)} rows): {dest}")
