"""`edgepack build`: a PyTorch model to a quantized, validated package for a target."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from edgepack.cli.output import echo_json, echo_pairs


def register(app: typer.Typer) -> None:
    @app.command("build")
    def build(
        source: str = typer.Argument(
            ..., help="module.path:factory, path/to/model.py:factory, or an exported .pt2"
        ),
        target: str = typer.Option(
            ..., "--target", "-t", help="Target name or path to a .toml profile."
        ),
        weights: Path | None = typer.Option(
            None, "--weights", help="state_dict file (loaded with weights_only=True)."
        ),
        input_shape: list[str] = typer.Option(
            [], "--input-shape", help="Input shape like 1x3x224x224 (repeat for several inputs)."
        ),
        quantization: str | None = typer.Option(
            None,
            "--quantization",
            "-q",
            help="float32 | float16 | dynamic-range | full-int8 (default: the target's).",
        ),
        io_dtype: str | None = typer.Option(
            None, "--io-dtype", help="float32 | int8 | uint8 (full-int8 only)."
        ),
        io_layout: str | None = typer.Option(
            None, "--io-layout", help="nchw | nhwc (channels-last at the boundary)."
        ),
        calibration: Path | None = typer.Option(
            None, "--calibration", help=".npz / .npy / folder of .npy files."
        ),
        calibration_samples: int | None = typer.Option(
            None, "--calibration-samples", help="Samples used (default: the target's, 200)."
        ),
        eval_data: Path | None = typer.Option(
            None, "--eval", help="Labelled evaluation data (.npz with x and y)."
        ),
        eval_samples: int | None = typer.Option(
            None, "--eval-samples", help="Use only the first N eval samples."
        ),
        max_accuracy_drop: float | None = typer.Option(
            None,
            "--max-accuracy-drop",
            help="Fail the build if top-1 drops by more points than this.",
        ),
        min_fidelity: float | None = typer.Option(
            None,
            "--min-fidelity",
            help="Fail the build if the output cosine vs the float model is below this (e.g. 0.99).",
        ),
        auto_fallback: bool = typer.Option(
            False,
            "--auto-fallback",
            help="If full-int8 misses a gate, keep the most sensitive ops out of int8 until it passes.",
        ),
        fallback_budget: int | None = typer.Option(
            None,
            "--fallback-budget",
            help="Most ops --auto-fallback may keep out of int8 (default: half the ops).",
        ),
        fallback_precision: str = typer.Option(
            "float",
            "--fallback-precision",
            help="float | int16: what --auto-fallback raises sensitive ops to.",
        ),
        output: Path | None = typer.Option(
            None, "--output", "-o", help="Package folder (default dist/<name>-<target>)."
        ),
        name: str | None = typer.Option(
            None, "--name", help="Package name (default: from the source)."
        ),
        force: bool = typer.Option(False, "--force", help="Replace an existing package."),
        latency_runs: int = typer.Option(
            50, "--latency-runs", help="Host latency runs (0 to skip)."
        ),
        json_: bool = typer.Option(False, "--json", help="Print the manifest as JSON."),
        quiet: bool = typer.Option(False, "--quiet", help="No progress lines."),
    ) -> None:
        """Compress, convert, quantize, validate and package a model for a target."""
        from edgepack.pipeline import BuildPlan
        from edgepack.pipeline import build as run_build
        from edgepack.targets import load_target

        plan = BuildPlan(
            source=source,
            target=load_target(target),
            weights=weights,
            input_shapes=tuple(input_shape),
            quantization=parse_enum("--quantization", quantization, "QuantMode"),
            io_dtype=parse_enum("--io-dtype", io_dtype, "IODtype"),
            io_layout=parse_enum("--io-layout", io_layout, "IOLayout"),
            calibration=calibration,
            calibration_samples=calibration_samples,
            eval=eval_data,
            eval_samples=eval_samples,
            max_accuracy_drop=max_accuracy_drop,
            min_fidelity=min_fidelity,
            auto_fallback=auto_fallback,
            fallback_budget=fallback_budget,
            fallback_precision=_fallback_precision(fallback_precision),
            output=output,
            force=force,
            name=name,
            latency_runs=latency_runs,
        )
        show = (lambda m: None) if (quiet or json_) else (lambda m: typer.echo(f"  {m}", err=True))
        result = run_build(plan, progress=show)
        if json_:
            echo_json(result.manifest)
            return
        echo_pairs(result.rows)
        files = ", ".join([*result.manifest["files"], "manifest.json"])
        typer.echo(f"\nwrote {result.package}/ ({files})")


def _fallback_precision(value: str) -> Any:
    from edgepack.accuracy.fallback import FallbackPrecision
    from edgepack.errors import UsageError

    values = [e.value for e in FallbackPrecision]
    if value not in values:
        raise UsageError(
            f"unknown --fallback-precision '{value}'", f"accepted: {', '.join(values)}"
        )
    return FallbackPrecision(value)


def parse_enum(flag: str, value: str | None, enum_name: str) -> Any:
    """The user's spelling -> enum; an unknown value lists the accepted ones."""
    import difflib

    from edgepack import targets
    from edgepack.errors import UsageError

    if value is None:
        return None
    enum = getattr(targets, enum_name)
    values = [e.value for e in enum]
    if value in values:
        return enum(value)
    close = difflib.get_close_matches(value, values, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise UsageError(f"unknown {flag} '{value}'", f"{hint}accepted: {', '.join(values)}")
