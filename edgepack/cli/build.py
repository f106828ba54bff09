"""`edgepack build`: a PyTorch model to a quantized, validated package for a target."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from edgepack.cli.output import echo_json, echo_pairs, echo_table

# `build --help` groups its options in these panels (by parameter name); an option missing
# here shows under "Options" (tests/cli/test_cli_polish.py checks none is missing).
PANELS: dict[str, tuple[str, ...]] = {
    "Model": (
        "target",
        "config",
        "weights",
        "input_shape",
        "name",
        "factory_arg",
        "pretrained",
        "task",
        "sequence_length",
    ),
    "Data": (
        "calibration",
        "calibration_samples",
        "eval_data",
        "eval_samples",
        "preprocess",
        "labels",
        "train",
    ),
    "Quantization": (
        "quantization",
        "io_dtype",
        "io_layout",
        "int8_engine",
        "auto_fallback",
        "fallback_budget",
        "fallback_precision",
    ),
    "Gates": (
        "max_accuracy_drop",
        "min_fidelity",
        "no_accuracy_gate",
        "allow_missing_latency",
        "allow_cpu_fallback",
        "require_edgetpu_compiler",
        "latency_runs",
        "latency_budget",
        "no_host_latency",
    ),
    "Compression": (
        "prune",
        "prune_scope",
        "round_to",
        "distill",
        "epochs",
        "lr",
        "temperature",
        "alpha",
    ),
    "Output": (
        "output",
        "output_dir",
        "force",
        "jobs",
        "shard",
        "executor",
        "address",
        "no_cache",
        "dry_run",
        "json_",
        "quiet",
    ),
}
EPILOG = (
    "Example: edgepack build examples/digits/model.py:build_model --weights "
    "examples/digits/weights.pt --input-shape 1x1x32x32 --target rpi4 --calibration "
    "examples/digits/calib.npz --eval examples/digits/eval.npz --max-accuracy-drop 1.0"
)


def _set_panels(command: Any) -> None:
    """Put each option of ``command`` in its help panel (typer's rich_help_panel), the
    panels in the order of PANELS (typer shows them in the order of the parameters)."""
    import inspect

    panel_of = {name: panel for panel, names in PANELS.items() for name in names}
    order = list(PANELS)
    sig = inspect.signature(command, eval_str=True)
    for name, param in sig.parameters.items():
        if name in panel_of and hasattr(param.default, "rich_help_panel"):
            param.default.rich_help_panel = panel_of[name]
    params = sorted(
        sig.parameters.values(),
        key=lambda p: order.index(panel_of[p.name]) if p.name in panel_of else -1,
    )
    command.__signature__ = sig.replace(parameters=params)


# Options whose value may be omitted (`--pretrained` alone means the DEFAULT weights): the
# value is taken as omitted when the option ends the line, or the next word is an option or
# a source (holds ':'). typer's click has no optional values.
OPTIONAL_VALUES = {"--pretrained": "DEFAULT"}


def fill_optional_values(args: list[str]) -> list[str]:
    """``--pretrained --target x`` -> ``--pretrained=DEFAULT --target x``."""
    out = list(args)
    for i, arg in enumerate(out):
        if arg == "--":
            break
        if arg in OPTIONAL_VALUES:
            nxt = out[i + 1] if i + 1 < len(out) else None
            # a weights name never holds ':' - a source after the option does
            if nxt is None or (nxt.startswith("-") and len(nxt) > 1) or ":" in nxt:
                out[i] = f"{arg}={OPTIONAL_VALUES[arg]}"
    return out


class PanelCommand(typer.core.TyperCommand):
    """Plain-text help with the options grouped in their panels (``rich_help_panel``).

    typer draws panels only with rich, whose import doubles the start-up time; click's own
    formatter writes one section per panel instead."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, fill_optional_values(args))

    def format_options(self, ctx: Any, formatter: Any) -> None:
        sections: dict[str, list[tuple[str, str]]] = {}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            default = "Arguments" if param.param_type_name == "argument" else "Options"
            panel = getattr(param, "rich_help_panel", None) or default
            sections.setdefault(panel, []).append(record)
        for title, rows in sections.items():
            with formatter.section(title):
                formatter.write_dl(rows)


def register(app: typer.Typer) -> None:
    @app.command("build", epilog=EPILOG, cls=PanelCommand)
    def build(
        source: str | None = typer.Argument(
            None,
            help="module.path:factory, path/to/model.py:factory, an exported .pt2, or a model "
            "by name: torchvision:NAME, timm:NAME, hf:ORG/MODEL or hf:path/to/folder. "
            "Omitted: build every target of ./edgepack.toml (or --config).",
        ),
        target: list[str] = typer.Option(
            [],
            "--target",
            "-t",
            help="Target name or path to a .toml profile (repeat for a matrix; with a config: "
            "build only these of its targets).",
        ),
        config: Path | None = typer.Option(
            None, "--config", "-c", help="Release config (default ./edgepack.toml)."
        ),
        weights: Path | None = typer.Option(
            None, "--weights", help="state_dict file (loaded with weights_only=True)."
        ),
        input_shape: list[str] = typer.Option(
            [], "--input-shape", help="Input shape like 1x3x224x224 (repeat for several inputs)."
        ),
        factory_arg: list[str] = typer.Option(
            [],
            "--factory-arg",
            help="key=value passed to the factory (repeatable; int, float, true/false, none, "
            "JSON lists, else a string).",
        ),
        pretrained: str | None = typer.Option(
            None,
            "--pretrained",
            help="torchvision:/timm: sources: load the DEFAULT weights, or --pretrained NAME "
            "(e.g. IMAGENET1K_V1), from the library's cache (default: random init).",
        ),
        task: str | None = typer.Option(
            None,
            "--task",
            help="hf: sources: the head, e.g. sequence-classification, feature-extraction, "
            "image-classification, masked-lm (default: from the model's config).",
        ),
        sequence_length: int | None = typer.Option(
            None,
            "--sequence-length",
            help="hf: text sources: tokens per input (default: min(128, the tokenizer's max)).",
        ),
        quantization: str | None = typer.Option(
            None,
            "--quantization",
            help="float32 | float16 | dynamic-range | full-int8 (default: the target's).",
        ),
        io_dtype: str | None = typer.Option(
            None, "--io-dtype", help="float32 | int8 | uint8 (full-int8 only)."
        ),
        io_layout: str | None = typer.Option(
            None, "--io-layout", help="nchw | nhwc (channels-last at the boundary)."
        ),
        calibration: Path | None = typer.Option(
            None,
            "--calibration",
            help=".npz / .npy / folder of images (class subfolders or flat) / of .npy files.",
        ),
        calibration_samples: int | None = typer.Option(
            None, "--calibration-samples", help="Samples used (default: the target's, 200)."
        ),
        eval_data: Path | None = typer.Option(
            None,
            "--eval",
            help="Labelled evaluation data (.npz with x and y, or a folder of images in "
            "class subfolders).",
        ),
        eval_samples: int | None = typer.Option(
            None, "--eval-samples", help="Use N eval samples (seeded, stratified by label)."
        ),
        preprocess: str | None = typer.Option(
            None,
            "--preprocess",
            help="How images become the input: a preset (imagenet, inception, unit, none) "
            "and/or key=value pairs: resize, crop, mean, std, range, channel_order, layout, "
            "interpolation; e.g. imagenet,crop=192 or resize=36,crop=32,range=-1-1 "
            "(docs/data.md).",
        ),
        labels: Path | None = typer.Option(
            None,
            "--labels",
            help="Class names, one per line (default: the image folder's class subfolders).",
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
        no_accuracy_gate: bool = typer.Option(
            False,
            "--no-accuracy-gate",
            help="Do not enforce the target profile's default accuracy guard on --eval data "
            "(recorded in the manifest).",
        ),
        allow_missing_latency: bool = typer.Option(
            False,
            "--allow-missing-latency",
            help="Release even when no benchmark result from a device of the target exists "
            "for a max_latency_ms gate (default: exit 3).",
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
        fallback_precision: str | None = typer.Option(
            None,
            "--fallback-precision",
            help="float | int16: what --auto-fallback raises sensitive ops to.",
        ),
        int8_engine: str | None = typer.Option(
            None,
            "--int8-engine",
            help="auto | calibrator | aeq: who quantizes full-int8 (auto: the TFLite "
            "calibrator, then ai-edge-quantizer when it leaves ops in float).",
        ),
        output: Path | None = typer.Option(
            None, "--output", "-o", help="Package folder (default dist/<name>-<target>)."
        ),
        output_dir: Path | None = typer.Option(
            None, "--output-dir", help="Folder for every package (<dir>/<name>-<target>)."
        ),
        name: str | None = typer.Option(
            None,
            "--name",
            help="Package name: a-z 0-9 . _ -, at most 64 (default: from the source).",
        ),
        force: bool = typer.Option(False, "--force", help="Replace an existing package."),
        no_cache: bool = typer.Option(
            False, "--no-cache", help="Export and convert again; do not use or fill the cache."
        ),
        latency_runs: int | None = typer.Option(
            None,
            "--latency-runs",
            help="Host latency: at most this many invokes per model (0 to skip; default 50).",
        ),
        latency_budget: float | None = typer.Option(
            None,
            "--latency-budget",
            help="Host latency: stop after about this many seconds per model, 3 runs at "
            "least (default 2).",
        ),
        no_host_latency: bool = typer.Option(
            False, "--no-host-latency", help="Do not measure host latency (recorded)."
        ),
        jobs: int | None = typer.Option(
            None, "--jobs", "-j", min=1, help="Targets built in parallel (default min(2, n))."
        ),
        shard: str | None = typer.Option(
            None,
            "--shard",
            help="I/N: build only slice I of N of the matrix (the same slice on every run; "
            "one CI job per I; `edgepack report` merges the dist folders).",
        ),
        executor: str | None = typer.Option(
            None,
            "--executor",
            help="local (worker processes, the default) | ray (one task per target on a Ray "
            "cluster; [build] executor).",
        ),
        address: str | None = typer.Option(
            None,
            "--address",
            help="Ray cluster: HOST:PORT of the head, ray://HOST:PORT, auto, or local to start "
            "Ray in this process (default RAY_ADDRESS; required with --executor ray).",
        ),
        dry_run: bool = typer.Option(
            False, "--dry-run", help="Validate and print the resolved plan; build nothing."
        ),
        json_: bool = typer.Option(
            False, "--json", help="Print JSON (the manifest, or the matrix)."
        ),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
        prune: str | None = typer.Option(
            None, "--prune", help="Prune before export: magnitude:0.7 or channels:0.5."
        ),
        prune_scope: str | None = typer.Option(
            None, "--prune-scope", help="Magnitude pruning: global (default) or layer."
        ),
        round_to: int | None = typer.Option(
            None, "--round-to", help="Channel pruning: keep channel counts multiples of this."
        ),
        distill: bool = typer.Option(
            False, "--distill", help="Distill the pruned model from the unpruned one."
        ),
        train: Path | None = typer.Option(
            None, "--train", help="Training data for --distill (.npz; labels optional)."
        ),
        epochs: int | None = typer.Option(None, "--epochs", help="Distillation epochs (5)."),
        lr: float | None = typer.Option(None, "--lr", help="Distillation learning rate (1e-3)."),
        temperature: float | None = typer.Option(
            None, "--temperature", help="Distillation temperature (4.0)."
        ),
        alpha: float | None = typer.Option(
            None, "--alpha", help="Weight of the hard-label loss (0 = pure distillation)."
        ),
        allow_cpu_fallback: bool = typer.Option(
            False,
            "--allow-cpu-fallback",
            help="Package even if ops fall back to the CPU on a target requiring full delegation.",
        ),
        require_edgetpu_compiler: bool = typer.Option(
            False,
            "--require-edgetpu-compiler",
            help="Fail (Edge TPU targets) when edgetpu_compiler is not on PATH.",
        ),
    ) -> None:
        """Compress, convert, quantize, validate and package a model for one or more targets.

        Without SOURCE, builds every target listed in ./edgepack.toml: the model is exported
        once and the targets build in parallel. Exit 3 if a gate failed, 2 on bad input.
        """
        from edgepack.release.config import Overrides, find_config, load_config, resolve
        from edgepack.release.shard import parse_shard

        over = Overrides(
            shard=None if shard is None else parse_shard(shard),
            source=source,
            weights=weights,
            input_shapes=tuple(input_shape),
            factory_args=_factory_args(factory_arg),
            pretrained=pretrained,
            task=task,
            sequence_length=sequence_length,
            name=name,
            targets=tuple(target),
            quantization=parse_enum("--quantization", quantization, "QuantMode"),
            io_dtype=parse_enum("--io-dtype", io_dtype, "IODtype"),
            io_layout=parse_enum("--io-layout", io_layout, "IOLayout"),
            calibration=calibration,
            calibration_samples=calibration_samples,
            eval=eval_data,
            eval_samples=eval_samples,
            preprocess=preprocess,
            labels=labels,
            max_accuracy_drop=max_accuracy_drop,
            min_fidelity=min_fidelity,
            accuracy_gate=False if no_accuracy_gate else None,
            allow_missing_latency=allow_missing_latency,
            auto_fallback=auto_fallback or None,
            fallback_budget=fallback_budget,
            fallback_precision=_fallback_precision(fallback_precision),
            int8_engine=parse_enum("--int8-engine", int8_engine, "Int8Engine"),
            output=output,
            output_dir=output_dir,
            force=force,
            no_cache=no_cache,
            jobs=jobs,
            latency_runs=_latency_runs(latency_runs, no_host_latency),
            latency_budget_s=_latency_budget(latency_budget),
            prune=prune,
            prune_scope=prune_scope,
            round_to=round_to,
            distill=distill,
            train=train,
            distill_options=tuple(
                (k, v)
                for k, v in (
                    ("epochs", epochs),
                    ("lr", lr),
                    ("temperature", temperature),
                    ("alpha", alpha),
                )
                if v is not None
            ),
            allow_cpu_fallback=allow_cpu_fallback,
            require_edgetpu_compiler=require_edgetpu_compiler,
        )
        use_config = source is None or config is not None
        single = len(target) <= 1 and not dry_run and output_dir is None and shard is None
        single = single and not use_config
        if single and (executor == "ray" or address is not None):
            single = False  # the Ray executor builds even one target as a matrix
        if single:
            if not target:
                from edgepack.errors import UsageError

                raise UsageError("missing --target", "e.g. --target rpi4 (`edgepack targets list`)")
            _single(over, target[0], json_, quiet)
            return
        cfg_path = find_config(config) if use_config else None
        cfg = load_config(cfg_path) if cfg_path is not None else None
        plan = resolve(cfg, cfg_path, over)
        from edgepack.release.ray_executor import executor_options

        remote = executor_options(executor, address, cfg.build if cfg is not None else None)
        if dry_run:
            from edgepack.source import check_source

            # imports each factory's module / named source's library; builds nothing
            for m in plan.models:
                check_source(m.source, m.source_options)
            if json_:
                extra = {} if remote is None else {"executor": {"name": "ray", **vars(remote)}}
                echo_json({"dry_run": True, **plan.to_dict(), **extra})
            else:
                _print_plan(plan, remote)
            return
        code = _matrix(plan, json_, quiet, remote)
        if code:
            raise typer.Exit(code)  # 3: a gate failed, 2: a target could not be built

    _set_panels(build)


def echo_timings(target: str, manifest: dict[str, Any]) -> None:
    """`edgepack --verbose build`: each stage's seconds (the manifest's build.stage_seconds)."""
    from edgepack.cli import State

    if not State.verbose:
        return
    seconds = manifest.get("build", {}).get("stage_seconds", {})
    total = sum(seconds.values())
    parts = ", ".join(f"{name} {s:.2f} s" for name, s in seconds.items())
    typer.echo(f"timings {target}: {parts} (total {total:.2f} s)", err=True)


def _factory_args(items: list[str]) -> tuple[tuple[str, Any], ...] | None:
    from edgepack.source import parse_factory_args

    return parse_factory_args(items) if items else None


def _latency_runs(runs: int | None, off: bool) -> int | None:
    if off and runs:
        from edgepack.errors import UsageError

        raise UsageError(
            f"--no-host-latency and --latency-runs {runs} contradict each other",
            "pass one of them (--latency-runs 0 also skips host latency)",
        )
    return 0 if off else runs


def _latency_budget(seconds: float | None) -> float | None:
    if seconds is not None and not seconds > 0:
        from edgepack.errors import UsageError

        raise UsageError(
            f"--latency-budget must be > 0 seconds (got {seconds})",
            "e.g. --latency-budget 2; --no-host-latency skips host latency",
        )
    return seconds


def _single(over: Any, target: str, json_: bool, quiet: bool) -> int:
    """One target from the command line: the classic in-process build."""
    from edgepack.accuracy.fallback import FallbackPrecision
    from edgepack.cli.progress import build_progress
    from edgepack.pipeline import BuildPlan, choice_note
    from edgepack.pipeline import build as run_build
    from edgepack.release.config import compression_fields
    from edgepack.targets import Int8Engine, load_target

    plan = BuildPlan(
        source=over.source,
        target=load_target(target),
        weights=over.weights,
        input_shapes=over.input_shapes,
        factory_args=over.factory_args or (),
        pretrained=over.pretrained,
        task=over.task,
        sequence_length=over.sequence_length,
        quantization=over.quantization,
        io_dtype=over.io_dtype,
        io_layout=over.io_layout,
        calibration=over.calibration,
        calibration_samples=over.calibration_samples,
        eval=over.eval,
        eval_samples=over.eval_samples,
        preprocess=over.preprocess,
        labels=over.labels,
        max_accuracy_drop=over.max_accuracy_drop,
        min_fidelity=over.min_fidelity,
        accuracy_gate=over.accuracy_gate is not False,
        auto_fallback=bool(over.auto_fallback),
        fallback_budget=over.fallback_budget,
        fallback_precision=over.fallback_precision or FallbackPrecision.FLOAT,
        int8_engine=over.int8_engine or Int8Engine.AUTO,
        output=over.output,
        force=over.force,
        name=over.name,
        latency_runs=50 if over.latency_runs is None else over.latency_runs,
        cache=not over.no_cache,
        latency_budget_s=2.0 if over.latency_budget_s is None else over.latency_budget_s,
        **compression_fields(over, None, None),
    )
    with build_progress([target], enabled=not (quiet or json_)) as report:
        result = run_build(plan, progress=lambda m: report(target, m))
    for w in result.warnings:
        typer.echo(f"warning: {w}", err=True)
    note = choice_note(result.manifest)
    if note is not None:  # a better mode of the profile's list was refused: always said
        typer.echo(note, err=True)
    echo_timings(target, result.manifest)
    if json_:
        echo_json(result.manifest)
    else:
        echo_pairs(result.rows)
        files = ", ".join([*result.manifest["files"], "manifest.json"])
        typer.echo(f"\nwrote {result.package}/ ({files})")
    _latency_gate(plan, result, over.allow_missing_latency)
    return 0


def _latency_gate(plan: Any, result: Any, allow_missing: bool) -> None:
    """The profile's max_latency_ms on the written package: fails closed like the matrix's."""
    from edgepack.errors import GateError
    from edgepack.release.config import Gates
    from edgepack.release.matrix import GateStatus, evaluate_gates

    limit = plan.budgets.max_latency_ms
    if limit is None:
        return
    gates = Gates(max_latency_ms=limit, allow_missing_latency=allow_missing)
    (g,) = [
        g
        for g in evaluate_gates(gates, result.manifest, result.package, None)
        if g.gate.startswith("max_latency_ms")
    ]
    if g.status is GateStatus.SKIPPED:
        typer.echo(f"{g.gate}: skipped ({g.detail})", err=True)
    elif g.status is not GateStatus.PASS:
        raise GateError(
            f"latency gate failed: {g.gate}: "
            + (f"{g.value} > {g.limit}" if g.value is not None else g.detail),
            "the package was written (inspect it); the release gate fails the pipeline",
        )


def _print_plan(plan: Any, remote: Any = None) -> None:
    d = plan.to_dict()
    typer.echo(f"config: {d['config'] or '(command line)'}")
    for m in d["models"] if "models" in d else [{**d["model"], "data": d["data"]}]:
        typer.echo(
            f"model:  {m['source']} (name {m['name']}, weights {m['weights'] or '-'}, "
            f"inputs {' '.join(m['input_shapes']) or 'from the factory'})"
        )
        options = {
            k: m[k] for k in ("factory_args", "pretrained", "task", "sequence_length") if m.get(k)
        }
        if options:
            typer.echo("        " + ", ".join(f"{k} {v}" for k, v in options.items()))
        data = ", ".join(f"{k} {v}" for k, v in m["data"].items() if v is not None) or "-"
        typer.echo(f"data:   {data}")
    if d["compression"]:
        typer.echo(f"compression: {d['compression']}")
    exports = "one shared export" + (" per model" if len(plan.models) > 1 else "")
    if remote is None:
        typer.echo(f"jobs:   {d['jobs']} parallel build process(es); {exports}")
    else:
        typer.echo(
            f"executor: ray at {remote.address}: one task per target ({remote.cpus:g} CPU, "
            f"{remote.memory_mb} MB, {remote.max_retries} retries); {exports}"
        )
    _echo_shard(plan.shard, len(plan.targets), plan.skipped)
    typer.echo("")
    rows = []
    for t in d["targets"]:
        gates = ", ".join(
            f"{k.removeprefix('max_')}<={v}"
            for k, v in t["gates"].items()
            if k.startswith("max_") and v is not None
        )
        rows.append(
            (t["id"], t["quantization"], t["io_dtype"], t["io_layout"], t["output"], gates or "-")
        )
    echo_table(["target", "quantization", "io", "layout", "output", "gates"], rows)
    typer.echo("\nplan is valid (nothing built: --dry-run)")


def _matrix(plan: Any, json_: bool, quiet: bool, remote: Any = None) -> int:
    from edgepack.cli.progress import build_progress
    from edgepack.release.matrix import SUMMARY_HEADERS, run_matrix, summary_rows
    from edgepack.stages.preflight import disagreements

    ids = [t.id for t in plan.targets]
    if plan.shard is not None and not quiet and not json_:
        _echo_shard(plan.shard, len(plan.targets), plan.skipped, err=True)
    with build_progress(ids, enabled=not (quiet or json_)) as report:
        result = run_matrix(plan, progress=report, executor=remote)
    for o in result.outcomes:
        if o.manifest is not None:
            echo_timings(o.id, o.manifest)
    if json_:
        echo_json(result.to_dict())
        return result.exit_code
    if not quiet:
        typer.echo("", err=True)
    echo_table(SUMMARY_HEADERS, summary_rows(result))
    from edgepack.pipeline import choice_note

    for o in result.outcomes:
        note = choice_note(o.manifest) if o.manifest is not None else None
        if note is not None:
            typer.echo(f"{o.id}: {note}", err=True)
        if o.message:
            typer.echo(f"\n{o.id}: {o.status.value}: {o.message}", err=True)
            if o.hint:
                typer.echo(f"hint: {o.hint}", err=True)
        for w in disagreements((o.manifest or {}).get("compat") or {}):
            typer.echo(f"{o.id}: warning: {w}", err=True)
        for g in o.gates:
            if g.status.value == "skipped":
                typer.echo(f"{o.id}: {g.gate}: skipped ({g.detail})", err=True)
    built = [str(o.package) for o in result.outcomes if o.package is not None]
    if built:
        typer.echo(f"\nwrote {len(built)} package(s): {', '.join(built)}")
    if plan.shard is not None:
        typer.echo("")
        _echo_shard(plan.shard, len(plan.targets), plan.skipped)
        typer.echo(f"shard summary: {plan.output_dir / plan.shard.summary_name}")
    return result.exit_code


def _echo_shard(shard: Any, n_mine: int, skipped: Any, err: bool = False) -> None:
    """The slice this run builds and the jobs left to the other shards."""
    if shard is None:
        return
    typer.echo(
        f"shard {shard}: {n_mine} of {n_mine + len(skipped)} job(s) of the matrix here", err=err
    )
    if skipped:
        others = ", ".join(f"{t.id} ({t.shard}/{shard.count})" for t in skipped)
        typer.echo(f"skipped (other shards): {others}", err=err)


def _fallback_precision(value: str | None) -> Any:
    from edgepack.accuracy.fallback import FallbackPrecision
    from edgepack.errors import UsageError

    if value is None:
        return None
    values = [e.value for e in FallbackPrecision]
    if value not in values:
        raise UsageError(
            f"unknown --fallback-precision '{value}'", f"accepted: {', '.join(values)}"
        )
    return FallbackPrecision(value)


def parse_enum(flag: str, value: str | None, enum_name: str) -> Any:
    """The user's spelling -> enum (edgepack.targets.parse_enum, shared with the Python API)."""
    from edgepack.targets import parse_enum as parse

    return parse(flag, value, enum_name)
