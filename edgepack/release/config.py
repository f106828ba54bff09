"""edgepack.toml: one release config in the repo, every target built from it.

The schema is strict (unknown keys are rejected with the closest valid name). Paths in the
file are relative to the file's folder. :func:`resolve` turns a config plus command-line
overrides into one :class:`TargetJob` per ``[[targets]]`` entry, each holding the
:class:`edgepack.pipeline.BuildPlan` the pipeline runs and the entry's release gates.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from edgepack.errors import UsageError, decode_problem
from edgepack.targets import Int8Engine, IODtype, IOLayout, QuantMode

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

CONFIG_NAME = "edgepack.toml"
CONFIG_SCHEMA_VERSION = 1
LATENCY_STATS = ("p50", "p90", "p99", "mean")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSection(_Strict):
    source: str = Field(min_length=1)
    weights: str | None = None
    input_shapes: list[str] = Field(default_factory=list)
    # Keyword arguments of the factory (or of a named source's builder), recorded and cached.
    factory_args: dict[str, Any] | None = None
    # Named sources (torchvision:, timm:): true = the DEFAULT weights, or a weights name.
    pretrained: bool | str | None = None
    task: str | None = None  # hf: sources: the head (sequence-classification, ...)
    sequence_length: int | None = Field(default=None, ge=1)  # hf: text sources
    name: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9._-]*$", max_length=64)


class DataSection(_Strict):
    calibration: str | None = None
    calibration_samples: int | None = Field(default=None, ge=1)
    eval: str | None = None
    eval_samples: int | None = Field(default=None, ge=1)
    train: str | None = None
    # How images become the model's input: a preset / key=value text, or a table of the keys
    # of edgepack.images.SPEC_KEYS (checked by the build plan); labels: one class per line.
    preprocess: str | dict[str, Any] | None = None
    labels: str | None = None


class CompressionSection(_Strict):
    # Spec strings and settings of the compression stages, passed through to them.
    prune: str | None = Field(default=None, pattern=r"^[a-z][a-z_-]*:[0-9]*\.?[0-9]+$")
    scope: str | None = None  # magnitude pruning: global | layer
    round_to: int | None = Field(default=None, ge=1)  # channel counts multiple of this
    # epochs, lr, batch_size, temperature, alpha, device, samples; training data: data.train
    distill: dict[str, str | int | float | bool] | None = None

    @property
    def enabled(self) -> bool:
        return self.prune is not None or self.distill is not None


class Gates(_Strict):
    max_accuracy_drop: float | None = Field(default=None, ge=0)
    min_fidelity: float | None = Field(default=None, gt=0, le=1)  # output cosine vs float
    max_model_kb: float | None = Field(default=None, gt=0)
    max_ram_mb: float | None = Field(default=None, gt=0)
    max_latency_ms: float | None = Field(default=None, gt=0)
    # Benchmark result (edgepack.bench-result/1) the latency gate reads; default: the newest
    # result in the package's bench/ folder for the same model bytes.
    latency_result: str | None = None
    latency_stat: Literal["p50", "p90", "p99", "mean"] = "p50"
    # Explicit opt-outs (recorded): release without a matching latency result; build without
    # the profile's default accuracy guard.
    allow_missing_latency: bool = False
    accuracy_gate: bool = True

    def merged(self, over: Gates) -> Gates:
        """``over``'s explicitly set values on top of these."""
        return Gates.model_validate({**self.model_dump(), **over.model_dump(exclude_unset=True)})


class TargetEntry(_Strict):
    target: str = Field(min_length=1)  # built-in name or path to a profile .toml
    variant: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9._-]*$", max_length=32)
    quantization: QuantMode | None = None
    io_dtype: IODtype | None = None
    io_layout: IOLayout | None = None
    calibration_samples: int | None = Field(default=None, ge=1)
    # full-int8 missing an accuracy gate: keep the most sensitive ops out of int8
    auto_fallback: bool | None = None
    fallback_budget: int | None = Field(default=None, ge=0)
    fallback_precision: Literal["float", "int16"] | None = None
    output: str | None = None
    gates: Gates = Gates()


class RaySection(_Strict):
    """[build.ray]: the cluster and what each target's task declares (edgepack.release.ray_executor)."""

    address: str | None = None  # host:port, ray://host:port, auto, or local; else RAY_ADDRESS
    cpus: float = Field(default=1.0, gt=0)
    memory_mb: int = Field(default=2048, ge=64)
    max_retries: int = Field(default=2, ge=0, le=10)


class BuildSection(_Strict):
    executor: Literal["local", "ray"] = "local"  # --executor
    ray: RaySection = RaySection()
    output_dir: str = "dist"
    jobs: int | None = Field(default=None, ge=1, le=64)
    seed: int = 0
    latency_runs: int = Field(default=50, ge=0)
    cache: bool = True  # the export/conversion cache (edgepack.cache); false: always rebuild
    latency_budget_s: float = Field(default=2.0, gt=0)


class ModelEntry(_Strict):
    """One model of a ``[[models]]`` list: its own source, inputs and data, and the
    ``[[targets]]`` entries it is built for (every entry when ``targets`` is left out)."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$", max_length=64)
    source: str = Field(min_length=1)
    weights: str | None = None
    input_shapes: list[str] = Field(default_factory=list)
    factory_args: dict[str, Any] | None = None  # as [model]'s
    pretrained: bool | str | None = None
    task: str | None = None
    sequence_length: int | None = Field(default=None, ge=1)
    data: DataSection | None = None  # keys set here replace the top-level [data]'s
    targets: list[str] | None = Field(default=None, min_length=1)  # entry ids or target names


class ReleaseConfig(_Strict):
    schema_: int = Field(alias="schema", default=CONFIG_SCHEMA_VERSION)
    model: ModelSection | None = None  # one model ...
    models: list[ModelEntry] | None = Field(default=None, min_length=1)  # ... or several
    data: DataSection = DataSection()
    compression: CompressionSection = CompressionSection()
    gates: Gates = Gates()  # defaults for every target; [targets.gates] override them
    build: BuildSection = BuildSection()
    targets: list[TargetEntry] = Field(min_length=1)

    @field_validator("schema_")
    @classmethod
    def _schema(cls, v: int) -> int:
        if v != CONFIG_SCHEMA_VERSION:
            raise ValueError(
                f"schema {v} is not supported (this edgepack reads {CONFIG_SCHEMA_VERSION})"
            )
        return v


def _fields_at(loc: tuple[Any, ...]) -> list[str]:
    """Valid key names of the table at ``loc`` (for 'did you mean')."""
    model: Any = ReleaseConfig
    for part in loc:
        if isinstance(part, int):
            continue
        f = model.model_fields.get(part) or next(
            (v for v in model.model_fields.values() if v.alias == part), None
        )
        if f is None:
            return []
        todo, seen = [f.annotation], []  # X, list[X], X | None, list[X] | None
        while todo:
            a = todo.pop(0)
            seen.append(a)
            todo += list(getattr(a, "__args__", ()))
        cand = [a for a in seen if isinstance(a, type) and issubclass(a, BaseModel)]
        if not cand:
            return []
        model = cand[0]
    return [v.alias or k for k, v in model.model_fields.items()]


def _loc_str(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<root>"


def format_errors(err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        loc = tuple(e["loc"])
        where = _loc_str(loc)
        if e["type"] == "extra_forbidden":
            valid = _fields_at(loc[:-1])
            close = difflib.get_close_matches(str(loc[-1]), valid, n=1)
            tip = f" (did you mean '{close[0]}'?)" if close else ""
            table = _loc_str(loc[:-1])
            valid_s = ", ".join(valid)
            parts.append(
                f"unknown key '{where}'{tip}"
                + (f"; valid keys in {table}: {valid_s}" if valid and not close else "")
            )
        elif e["type"] == "missing":
            parts.append(f"missing key '{where}'")
        elif e["type"] == "enum":
            expected = e.get("ctx", {}).get("expected", "")
            parts.append(f"'{where}': {e['input']!r} is not one of {expected}")
        else:
            parts.append(f"'{where}': {e['msg']}")
    return "; ".join(parts)


def parse_config(text: str | bytes, origin: str) -> ReleaseConfig:
    try:
        raw = tomllib.loads(text.decode("utf-8") if isinstance(text, bytes) else text)
    except (ValueError, RecursionError) as exc:  # TOMLDecodeError, UnicodeDecodeError
        raise UsageError(
            f"{origin} is not valid TOML: {decode_problem(exc)}",
            "fix the line named above; `edgepack init --force` writes a fresh commented file",
        ) from exc
    try:
        cfg = ReleaseConfig.model_validate(raw)
    except ValidationError as exc:
        raise UsageError(
            f"invalid {origin}: {format_errors(exc)}",
            "the keys are documented in the file `edgepack init` writes (docs: README, "
            "'Release pipelines')",
        ) from exc
    if (cfg.model is None) == (cfg.models is None):
        raise UsageError(
            f"invalid {origin}: "
            + ("missing key 'model'" if cfg.model is None else "both 'model' and 'models' given"),
            "one model: a [model] table; several: one [[models]] entry per model (each with "
            "its name, source and optional targets = [...]); not both",
        )
    return cfg


def find_config(path: str | Path | None) -> Path:
    """``--config PATH``, else ./edgepack.toml."""
    p = Path(path) if path is not None else Path(CONFIG_NAME)
    if not p.is_file():
        if path is None:
            raise UsageError(
                f"no model source given and no {CONFIG_NAME} in the current folder",
                "pass a source (`edgepack build model.py:build_model --target rpi4`), "
                f"run `edgepack init` to write {CONFIG_NAME}, or pass --config PATH",
            )
        raise UsageError(f"config file not found: {p}", "pass an existing edgepack.toml")
    return p


def load_config(path: str | Path) -> ReleaseConfig:
    p = Path(path)
    return parse_config(p.read_bytes(), p.name if p.parent == Path() else str(p))


# --------------------------------------------------------------------------- resolution


@dataclass(frozen=True)
class Overrides:
    """Command-line values; each set one replaces the file's value for every target."""

    source: str | None = None
    weights: Path | None = None
    input_shapes: tuple[str, ...] = ()
    factory_args: tuple[tuple[str, Any], ...] | None = None  # None: the file's
    pretrained: str | None = None
    task: str | None = None
    sequence_length: int | None = None
    name: str | None = None
    targets: tuple[str, ...] = ()  # select entries (by id or target), or the targets to build
    quantization: QuantMode | None = None
    io_dtype: IODtype | None = None
    io_layout: IOLayout | None = None
    calibration: Path | None = None
    calibration_samples: int | None = None
    eval: Path | None = None
    eval_samples: int | None = None
    preprocess: str | None = None
    labels: Path | None = None
    max_accuracy_drop: float | None = None
    min_fidelity: float | None = None
    accuracy_gate: bool | None = None  # False: --no-accuracy-gate
    allow_missing_latency: bool = False
    auto_fallback: bool | None = None
    fallback_budget: int | None = None
    fallback_precision: Any = None  # edgepack.accuracy.fallback.FallbackPrecision
    int8_engine: Any = None  # edgepack.targets.Int8Engine
    output: Path | None = None  # one package folder (one target only)
    output_dir: Path | None = None
    force: bool = False
    no_cache: bool = False
    jobs: int | None = None
    latency_runs: int | None = None
    latency_budget_s: float | None = None
    # compression (CLI values win over [compression] in the file)
    prune: str | None = None
    prune_scope: str | None = None
    round_to: int | None = None
    distill: bool = False
    train: Path | None = None
    distill_options: tuple[tuple[str, Any], ...] = ()  # epochs, lr, ... given on the CLI
    # device compatibility
    allow_cpu_fallback: bool = False
    require_edgetpu_compiler: bool = False
    shard: Any = None  # edgepack.release.shard.Shard: build only this slice of the matrix


DISTILL_KEYS = ("epochs", "lr", "batch_size", "temperature", "alpha", "device", "samples")


def compression_fields(
    over: Overrides, section: CompressionSection | None, train: Path | None
) -> dict[str, Any]:
    """BuildPlan fields for the compression stages and device checks.

    Raises the stages' own errors (bad spec, distillation without training data)."""
    from edgepack.stages.distill import DistillSpec
    from edgepack.stages.prune import parse_prune_spec

    section = section or CompressionSection()
    prune_text = over.prune or section.prune
    prune = None
    if prune_text is not None:
        prune = parse_prune_spec(
            prune_text,
            round_to=over.round_to or int(section.round_to or 1),
            scope=over.prune_scope or section.scope or "global",
        )
    distill = None
    if over.distill or section.distill is not None:
        options = dict(section.distill or {})
        unknown = sorted(set(options) - set(DISTILL_KEYS))
        if unknown:
            raise UsageError(
                f"unknown [compression].distill setting(s): {', '.join(unknown)}",
                f"known: {', '.join(DISTILL_KEYS)}",
            )
        options.update(dict(over.distill_options))
        distill = DistillSpec.from_options(over.train or train, **options)
    return {
        "prune": prune,
        "distill": distill,
        "allow_cpu_fallback": over.allow_cpu_fallback,
        "require_edgetpu_compiler": over.require_edgetpu_compiler,
    }


@dataclass(frozen=True)
class TargetJob:
    """One package to build: its plan, where it goes and the gates it must pass."""

    id: str  # target name, or target-variant; with [[models]]: model/target[-variant]
    plan: Any  # edgepack.pipeline.BuildPlan (typed Any: keeps this module import-light)
    dest: Path
    gates: Gates
    latency_result: Path | None = None
    model: str = ""  # the package name of the model
    variant: str = ""
    shard: int | None = None  # with --shard: the slice this job belongs to

    @property
    def sort_key(self) -> tuple[str, ...]:
        """(model, target, variant): the order --shard slices the matrix in."""
        return (self.model, self.plan.target.name, self.variant, self.id)

    def describe(self) -> dict[str, Any]:
        p = self.plan
        return {
            "id": self.id,
            "model": self.model,
            "package": self.dest.name,
            **({} if self.shard is None else {"shard": self.shard}),
            "target": p.target.name,
            "profile_sha256": p.target.sha256,
            "quantization": ", ".join(m.value for m in p.modes),  # tried in order
            "io_dtype": p.io.value,
            "io_layout": p.layout.value,
            "calibration_samples": p.n_calibration if p.mode == QuantMode.FULL_INT8 else None,
            "auto_fallback": p.auto_fallback,
            "output": str(self.dest),
            "gates": {
                **{k: v for k, v in self.gates.model_dump().items() if v is not None},
                "latency_result": None if self.latency_result is None else str(self.latency_result),
            },
        }


@dataclass(frozen=True)
class ModelPlan:
    """One model of the matrix: loaded and exported once, shared by its targets."""

    name: str
    source: str
    weights: Path | None
    input_shapes: tuple[str, ...]
    data: dict[str, Any]
    source_options: Any = None  # edgepack.source.SourceOptions

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "name": self.name,
            "weights": None if self.weights is None else str(self.weights),
            "input_shapes": list(self.input_shapes),
            **(self.source_options.record() if self.source_options is not None else {}),
        }


@dataclass(frozen=True)
class ReleasePlan:
    config: Path | None
    source: str  # source .. data: the first model's (the only one without [[models]])
    name: str
    weights: Path | None
    input_shapes: tuple[str, ...]
    data: dict[str, Any]
    compression: dict[str, Any]
    jobs: int
    targets: tuple[TargetJob, ...] = field(default_factory=tuple)  # built by this run
    models: tuple[ModelPlan, ...] = ()
    output_dir: Path = Path("dist")
    shard: Any = None  # edgepack.release.shard.Shard
    matrix: tuple[TargetJob, ...] = ()  # every job of the matrix (with --shard: all slices)
    multi_model: bool = False  # the config lists [[models]]

    @property
    def skipped(self) -> tuple[TargetJob, ...]:
        """Jobs of the matrix that belong to other shards."""
        mine = {t.id for t in self.targets}
        return tuple(t for t in self.matrix if t.id not in mine)

    def groups(self) -> list[tuple[ModelPlan, list[TargetJob]]]:
        """Each model with its jobs of this run (models without one are left out): one
        export per group."""
        out = []
        for m in self.models:
            jobs = [t for t in self.targets if t.model == m.name]
            if jobs:
                out.append((m, jobs))
        return out

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"config": None if self.config is None else str(self.config)}
        if self.multi_model:
            out["models"] = [{**m.to_dict(), "data": m.data} for m in self.models]
        else:
            out["model"] = self.models[0].to_dict()
            out["data"] = self.data
        out.update(
            {
                "compression": self.compression,
                "jobs": self.jobs,
                "shard": None if self.shard is None else self.shard.to_dict(),
                "targets": [t.describe() for t in self.targets],
            }
        )
        if self.shard is not None:
            out["skipped"] = [
                {"id": t.id, "shard": t.shard, "package": t.dest.name} for t in self.skipped
            ]
        return out


def display_path(p: str | Path) -> Path:
    """A path as it is shown and recorded: relative to the working folder when it lies inside
    it, so manifests do not depend on where a checkout lives."""
    p = Path(os.path.normpath(p))
    if not p.is_absolute():
        return p
    try:
        return p.relative_to(Path.cwd())
    except ValueError:
        return p


def _rebase(base: Path, value: str | None) -> Path | None:
    if value is None:
        return None
    p = Path(value).expanduser()
    return display_path(p if p.is_absolute() else base / p)


def _rebase_source(base: Path, spec: str) -> str:
    """Relative file sources follow the config; dotted module sources are left alone."""
    if spec.startswith("hf:") and spec[3:].startswith("."):  # a local Hugging Face folder
        return f"hf:{_rebase(base, spec[3:])}"
    target, sep, factory = spec.rpartition(":")
    if sep and (target.endswith(".py") or "/" in target):
        return f"{_rebase(base, target)}:{factory}"
    if spec.endswith(".pt2"):
        return str(_rebase(base, spec))
    return spec


def _rebase_target(base: Path, name: str) -> str:
    if name.endswith(".toml") or "/" in name:
        return str(_rebase(base, name))
    return name


def _select(entries: list[TargetEntry], wanted: tuple[str, ...]) -> list[TargetEntry]:
    if not wanted:
        return entries
    ids = {_entry_id(e): e for e in entries}
    out: list[TargetEntry] = []
    missing = []
    for w in wanted:
        hits = [e for i, e in ids.items() if w in (i, e.target)]
        if not hits:
            missing.append(w)
        out += [h for h in hits if h not in out]
    if missing:
        raise UsageError(
            f"--target {', '.join(missing)} is not in the config's [[targets]]",
            f"the config builds: {', '.join(ids)}; add a [[targets]] entry or drop --target",
        )
    return out


def _entry_id(e: TargetEntry) -> str:
    stem = Path(e.target).stem if e.target.endswith(".toml") else e.target
    return f"{stem}-{e.variant}" if e.variant else stem


def _model_targets(
    m: ModelEntry, i: int, entries: list[TargetEntry], all_entries: list[TargetEntry]
) -> tuple[list[TargetEntry], list[str]]:
    """The entries a [[models]] entry is built for (among the selected ``entries``), and the
    names of its ``targets`` list that name no [[targets]] entry."""
    if m.targets is None:
        return entries, []
    ids = {_entry_id(e): e for e in all_entries}
    chosen: list[TargetEntry] = []
    problems = []
    for w in m.targets:
        hits = [e for jid, e in ids.items() if w in (jid, e.target)]
        if not hits:
            close = difflib.get_close_matches(w, list(ids), n=1)
            tip = f" (did you mean '{close[0]}'?)" if close else ""
            problems.append(
                f"models[{i}].targets ({m.name}): '{w}' is not a [[targets]] entry{tip}; "
                f"entries: {', '.join(ids)}"
            )
        chosen += [h for h in hits if h not in chosen]
    return [e for e in entries if e in chosen], problems


def resolve(
    config: ReleaseConfig | None,
    config_path: Path | None,
    over: Overrides,
) -> ReleasePlan:
    """Config + overrides -> one plan per model and target. Checks everything that needs no
    model and raises one UsageError listing every problem."""
    from edgepack.release.shard import assign

    base = config_path.parent if config_path is not None else Path()
    if config is None:
        if over.source is None or not over.targets:
            raise UsageError(
                "a build without edgepack.toml needs a model source and --target",
                "e.g. edgepack build model.py:build_model --target rpi4 (repeat --target for a "
                "matrix)",
            )
        all_entries = [TargetEntry(target=t) for t in over.targets]
        entries = all_entries
        model_entries: list[ModelSection | ModelEntry] = [ModelSection(source=over.source)]
        data = DataSection()
        compression = CompressionSection()
        default_gates = Gates()
        build = BuildSection()
    else:
        all_entries = config.targets
        entries = _select(config.targets, over.targets)
        model_entries = list(config.models) if config.models is not None else []
        if config.model is not None:
            model_entries = [config.model]
        data = config.data
        compression = config.compression
        default_gates = config.gates
        build = config.build
    multi = config is not None and config.models is not None
    origin = str(config_path) if config_path is not None else "the command line"
    if multi:
        flags = [
            flag
            for flag, v in (
                ("a model source", over.source),
                ("--weights", over.weights),
                ("--input-shape", over.input_shapes),
                ("--name", over.name),
            )
            if v
        ]
        if flags:
            raise UsageError(
                f"{', '.join(flags)} set(s) one model, but {origin} lists "
                f"{len(model_entries)} [[models]]",
                "set source, weights, input_shapes and name in each [[models]] entry",
            )
    problems: list[str] = []
    selections: list[list[TargetEntry]] = []
    for i, m in enumerate(model_entries):
        if isinstance(m, ModelEntry):
            chosen, bad = _model_targets(m, i, entries, all_entries)
            problems += bad
            selections.append(chosen)
        else:
            selections.append(entries)
    seen_names: dict[str, int] = {}
    for i, m in enumerate(model_entries):
        if isinstance(m, ModelEntry):
            if m.name in seen_names:
                problems.append(
                    f"models[{i}].name: '{m.name}' is also models[{seen_names[m.name]}]'s name "
                    "(package folders are <name>-<target>: each model needs its own name)"
                )
            seen_names.setdefault(m.name, i)
    n_built = sum(len(s) for s in selections)
    if over.output is not None and n_built > 1:
        raise UsageError(
            f"--output names one package folder but {n_built} targets are built",
            "use --output-dir DIR (packages go to DIR/<name>-<target>), or select one --target",
        )
    out_dir = over.output_dir or _rebase(base, build.output_dir) or Path("dist")
    models: list[ModelPlan] = []
    matrix: list[TargetJob] = []
    seen_dest: dict[Path, str] = {}
    for i, (m, chosen) in enumerate(zip(model_entries, selections, strict=True)):
        mdata = data
        if isinstance(m, ModelEntry) and m.data is not None:
            mdata = DataSection.model_validate(
                {**data.model_dump(), **m.data.model_dump(exclude_unset=True)}
            )
        plan, jobs = _resolve_model(
            m,
            f"models[{i}] ({m.name}) " if multi else "",
            chosen,
            base,
            over,
            mdata,
            compression,
            default_gates,
            build,
            out_dir,
            multi,
            seen_dest,
            problems,
        )
        if plan is not None:
            models.append(plan)
        matrix += jobs
    if not matrix and not problems:
        problems.append(
            "no [[models]] entry is built for the selected targets "
            + f"({', '.join(over.targets)})"
        )
    mine = matrix
    if over.shard is not None:
        slices = {t.id: s for s, t in assign(matrix, over.shard.count)}
        matrix = [dataclasses.replace(t, shard=slices[t.id]) for t in matrix]
        mine = [t for t in matrix if t.shard == over.shard.index]
    for t in mine:
        if t.dest.exists() and not over.force:
            where = f"{t.id}" if multi else f"targets[{_index_of(entries, t)}] ({t.id})"
            problems.append(f"{where}: destination {t.dest} already exists (pass --force)")
    if problems:
        raise UsageError(
            f"{len(problems)} problem(s) in {origin}: " + "; ".join(dict.fromkeys(problems)),
            "fix them and run `edgepack build --dry-run` again; targets: `edgepack targets list`",
        )
    n_jobs = over.jobs or build.jobs or min(2, len(mine))
    first = models[0]
    return ReleasePlan(
        config=config_path,
        source=first.source,
        name=first.name,
        weights=first.weights,
        input_shapes=first.input_shapes,
        data=first.data,
        compression=compression.model_dump(exclude_none=True),
        jobs=max(1, min(n_jobs, len(mine))),
        targets=tuple(mine),
        models=tuple(models),
        output_dir=out_dir,
        shard=over.shard,
        matrix=tuple(matrix),
        multi_model=multi,
    )


def _index_of(entries: list[TargetEntry], job: TargetJob) -> int:
    ids = [_entry_id(e) for e in entries]
    jid = job.id.rpartition("/")[2]
    return ids.index(jid) if jid in ids else 0


def _resolve_model(
    model: ModelSection | ModelEntry,
    where_model: str,
    entries: list[TargetEntry],
    base: Path,
    over: Overrides,
    data: DataSection,
    compression: CompressionSection,
    default_gates: Gates,
    build: BuildSection,
    out_dir: Path,
    multi: bool,
    seen_dest: dict[Path, str],
    problems: list[str],
) -> tuple[ModelPlan | None, list[TargetJob]]:
    """One model's plan and target jobs; problems are appended to ``problems``."""
    from edgepack.accuracy.fallback import FallbackPrecision
    from edgepack.errors import EdgepackError
    from edgepack.pipeline import BuildPlan, check_plan
    from edgepack.source import default_name, name_problem
    from edgepack.targets import load_target

    source = over.source or _rebase_source(base, model.source)
    label = over.source or model.source  # recorded in manifests: as written
    weights = over.weights or _rebase(base, model.weights)
    shapes = over.input_shapes or tuple(model.input_shapes)
    from edgepack.source import SourceOptions, parse_factory_args

    file_pretrained = model.pretrained
    source_options = SourceOptions(
        factory_args=over.factory_args
        if over.factory_args is not None
        else parse_factory_args(model.factory_args or {}),
        pretrained=over.pretrained
        or ("DEFAULT" if file_pretrained is True else file_pretrained or None),
        task=over.task or model.task,
        sequence_length=over.sequence_length or model.sequence_length,
    )
    name = over.name if over.name is not None else (model.name or default_name(source))
    calibration = over.calibration or _rebase(base, data.calibration)
    evaluation = over.eval or _rebase(base, data.eval)
    if not multi:
        bad_name = name_problem(name, "--name" if over.name is not None else "model.name")
        if bad_name is not None:
            raise UsageError(
                bad_name, "packages go to <output_dir>/<name>-<target>; e.g. --name mynet"
            )
    extra: dict[str, Any] = {}
    try:
        extra = compression_fields(over, compression, _rebase(base, data.train))
    except EdgepackError as err:
        problems.append(f"[compression]: {err.message}")
    jobs: list[TargetJob] = []
    seen_ids: dict[str, int] = {}
    for i, e in enumerate(entries):
        jid = _entry_id(e)
        where = f"{where_model}targets[{i}] ({jid})"
        if jid in seen_ids:
            problems.append(
                f"{where}: the same target twice; give each entry its own 'variant' "
                f'(e.g. variant = "{(e.quantization or QuantMode.FLOAT32).value}")'
            )
            continue
        seen_ids[jid] = i
        try:
            profile = load_target(_rebase_target(base, e.target))
        except EdgepackError as err:
            problems.append(f"{where}: {err.message}" + (f" ({err.hint})" if err.hint else ""))
            continue
        gates = default_gates.merged(e.gates)
        if over.accuracy_gate is False:  # the CLI wins over the file's accuracy limits
            gates = gates.merged(Gates(accuracy_gate=False, max_accuracy_drop=None))
            gates = gates.merged(Gates(min_fidelity=None))
        if over.max_accuracy_drop is not None:
            gates = gates.merged(Gates(max_accuracy_drop=over.max_accuracy_drop))
        if over.min_fidelity is not None:
            gates = gates.merged(Gates(min_fidelity=over.min_fidelity))
        if over.allow_missing_latency:
            gates = gates.merged(Gates(allow_missing_latency=True))
        if gates.max_latency_ms is None and profile.budgets.max_latency_ms is not None:
            gates = gates.merged(Gates(max_latency_ms=profile.budgets.max_latency_ms))
        if multi and e.output is not None:
            problems.append(
                f"{where}: 'output' names one folder, but [[models]] builds the entry for each "
                "model; drop it (packages go to <output_dir>/<name>-<target>)"
            )
        if over.output is not None:
            dest = over.output
        elif e.output is not None and over.output_dir is None and not multi:
            dest = _rebase(base, e.output) or Path()
        else:
            dest = out_dir / f"{name}-{jid}"
        plan = BuildPlan(
            source=source,
            target=profile,
            weights=weights,
            input_shapes=shapes,
            factory_args=source_options.factory_args,
            pretrained=source_options.pretrained,
            task=source_options.task,
            sequence_length=source_options.sequence_length,
            quantization=over.quantization or e.quantization,
            io_dtype=over.io_dtype or e.io_dtype,
            io_layout=over.io_layout or e.io_layout,
            calibration=calibration,
            calibration_samples=over.calibration_samples
            or e.calibration_samples
            or data.calibration_samples,
            eval=evaluation,
            eval_samples=over.eval_samples or data.eval_samples,
            preprocess=over.preprocess,
            preprocess_config=data.preprocess,
            labels=over.labels or _rebase(base, data.labels),
            max_accuracy_drop=gates.max_accuracy_drop,
            min_fidelity=gates.min_fidelity,
            max_model_kb=gates.max_model_kb,
            max_ram_mb=gates.max_ram_mb,
            accuracy_gate=gates.accuracy_gate,
            auto_fallback=bool(
                over.auto_fallback if over.auto_fallback is not None else e.auto_fallback
            ),
            fallback_budget=over.fallback_budget
            if over.fallback_budget is not None
            else e.fallback_budget,
            fallback_precision=over.fallback_precision
            or FallbackPrecision(e.fallback_precision or "float"),
            int8_engine=over.int8_engine or Int8Engine.AUTO,
            output=dest,
            force=over.force,
            name=name,
            seed=build.seed,
            latency_runs=over.latency_runs if over.latency_runs is not None else build.latency_runs,
            cache=build.cache and not over.no_cache,
            latency_budget_s=over.latency_budget_s
            if over.latency_budget_s is not None
            else build.latency_budget_s,
            source_label=label,
            **extra,
        )
        try:
            check_plan(plan)
        except EdgepackError as err:
            problems.append(f"{where}: {err.message}")
        job_id = f"{name}/{jid}" if multi else jid
        if dest in seen_dest:
            problems.append(f"{where}: output {dest} is also {seen_dest[dest]}'s output")
        seen_dest[dest] = job_id
        latency_result = _rebase(base, gates.latency_result)
        if latency_result is not None and not latency_result.is_file():
            problems.append(f"{where}: gates.latency_result file not found: {latency_result}")
        jobs.append(
            TargetJob(
                job_id, plan, dest, gates, latency_result, model=name, variant=e.variant or ""
            )
        )
    problems += [f"{where_model}{p}" for p in _check_source(source, weights)]
    if data.train is not None and not (base / data.train).exists():
        problems.append(f"{where_model}data.train not found: {_rebase(base, data.train)}")
    if not entries:
        return None, jobs
    model_plan = ModelPlan(
        name=name,
        source=source,
        weights=weights,
        input_shapes=shapes,
        data={
            "calibration": None if calibration is None else str(calibration),
            "calibration_samples": data.calibration_samples,
            "eval": None if evaluation is None else str(evaluation),
            "eval_samples": over.eval_samples or data.eval_samples,
            "train": None if data.train is None else str(_rebase(base, data.train)),
            "preprocess": over.preprocess or data.preprocess,
            "labels": str(jobs[0].plan.labels) if jobs and jobs[0].plan.labels else None,
        },
        source_options=source_options,
    )
    return model_plan, jobs


def _check_source(source: str, weights: Path | None) -> list[str]:
    """File existence only (importing the model is the build's job)."""
    problems = []
    target, sep, _ = source.rpartition(":")
    if source.endswith(".pt2"):
        if not Path(source).is_file():
            problems.append(f"model source not found: {source}")
    elif sep and (target.endswith(".py") or "/" in target) and not Path(target).is_file():
        problems.append(f"model file not found: {target}")
    elif not sep:
        problems.append(
            f"invalid model source '{source}' (use module.path:factory, path/to/model.py:factory "
            "or a .pt2 file)"
        )
    return problems


# --------------------------------------------------------------------------- edgepack init


def _q(s: str) -> str:
    """A TOML basic string."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_template(
    source: str | None = None,
    weights: str | None = None,
    input_shapes: tuple[str, ...] = (),
    targets: tuple[str, ...] = (),
    calibration: str | None = None,
    eval_data: str | None = None,
    name: str | None = None,
) -> str:
    """The commented edgepack.toml `edgepack init` writes. It always parses (tested)."""
    src = source or "model.py:build_model"
    lines = [
        "# edgepack.toml: how this repository's model is built for its devices.",
        "# `edgepack build` builds every [[targets]] entry (one export, targets in parallel);",
        "# `edgepack build --dry-run` checks this file without building. Paths are relative to",
        "# this file. Command-line flags override the values here.",
        "schema = 1",
        "",
        "[model]",
        "# module.path:factory, path/to/model.py:factory (returns an nn.Module, or",
        "# (module, example_inputs)), or a torch.export .pt2 file.",
        f"source = {_q(src)}",
    ]
    if source is None:
        lines.insert(lines.index(f"source = {_q(src)}"), "# TODO: point this at your model.")
    lines += [
        "# state_dict loaded with torch.load(weights_only=True); a pickled model is refused.",
        f"weights = {_q(weights)}" if weights else '# weights = "weights.pt"',
        "# One shape per model input, batch first (omit when the factory returns example inputs).",
        "input_shapes = [" + ", ".join(_q(s) for s in input_shapes) + "]"
        if input_shapes
        else '# input_shapes = ["1x3x224x224"]',
        "# Keyword arguments of the factory (typed as TOML; recorded in the manifest):",
        "# factory_args = { num_classes = 10 }",
        "# A model by name instead (extras edgepack[torchvision], [timm], [hf]; docs/models.md):",
        '# source = "torchvision:mobilenet_v3_small"   # or "timm:NAME", "hf:ORG/MODEL", "hf:folder"',
        "# pretrained = true           # the library's weights (or a weights name), from its cache",
        '# task = "sequence-classification"   # hf: what the model returns (default: its config)',
        "# sequence_length = 128       # token inputs (hf; default min(128, the model's limit))",
        "# Package name (default: from the source); packages go to <output_dir>/<name>-<target>.",
        f"name = {_q(name)}" if name else '# name = "mymodel"',
        "# Several models: one [[models]] table each instead of [model] (name, source, weights,",
        '# input_shapes, data = { eval = ... }, targets = ["rpi4"]; default every target).',
        "",
        "[data]",
        "# .npz (arrays x and y), .npy, a folder of .npy files (samples stacked on axis 0),",
        "# or a folder of images (one subfolder per class, or flat) with a preprocessing:",
        '# preprocess = "imagenet"   # or "resize=256,crop=224,mean=...,std=..." (docs/data.md)',
        '# labels = "labels.txt"     # class names (default: the image folder\'s subfolders)',
        "# full-int8 targets need calibration data (edgepack never calibrates on random data).",
        f"calibration = {_q(calibration)}" if calibration else '# calibration = "calib.npz"',
        "# calibration_samples = 200",
        "# Labelled data: top-1 of PyTorch float vs the built model, for the accuracy gate.",
        f"eval = {_q(eval_data)}" if eval_data else '# eval = "eval.npz"',
        "# eval_samples = 1000",
        '# train = "train.npz"        # for distillation',
        "",
        "[compression]",
        "# Structured pruning before the export, and distillation settings for the stages that",
        "# run them (passed through):",
        '# prune = "channels:0.5"',
        "# distill = { epochs = 3, temperature = 4.0 }",
        "",
        "[build]",
        'output_dir = "dist"',
        "# jobs = 2                    # targets built in parallel (default min(2, targets))",
        "seed = 0",
        "# cache = false               # always export and convert again (like --no-cache)",
        "latency_runs = 50             # host latency: at most these runs per model (0 to skip)",
        "latency_budget_s = 2.0        # ... and about this many seconds per model",
        "",
        "# Release gates for every target (a [targets.gates] table overrides them). A failed",
        "# gate makes `edgepack build` exit 3. max_accuracy_drop is in top-1 points and stops",
        "# the package from being written; the others are checked on the written package.",
        "[gates]",
        "max_accuracy_drop = 1.0" if eval_data else "# max_accuracy_drop = 1.0",
        "# min_fidelity = 0.99         # output cosine vs the float model (needs eval data)",
        "# max_model_kb = 512",
        "# max_ram_mb = 64             # estimate: weights + activations",
        "# max_latency_ms = 20         # from `edgepack bench` on a device of the target:",
        "# allow_missing_latency = true  # no such result: release anyway (default: exit 3)",
        "# accuracy_gate = false       # opt out of the profile's default accuracy guard",
        '# latency_stat = "p50"        # p50 | p90 | p99 | mean',
        '# latency_result = "results/rpi4.json"   # default: newest bench/ result of the package',
        "",
    ]
    chosen = targets or ("host",)
    for i, t in enumerate(chosen):
        lines += [
            "[[targets]]",
            f"target = {_q(t)}              # `edgepack targets list`, or a path to a .toml",
        ]
        if i == 0:
            lines += [
                "# Per-target overrides (default: the profile's):",
                '# quantization = "full-int8"  # float32 | float16 | dynamic-range | full-int8',
                '# io_dtype = "int8"           # float32 | int8 | uint8 (full-int8 only)',
                '# io_layout = "nhwc"          # nchw | nhwc',
                '# variant = "int8"            # to build the same target twice (another mode)',
                "# auto_fallback = true        # full-int8 missing a gate: sensitive ops stay float",
                '# fallback_precision = "float"  # float | int16; fallback_budget = 8 (max ops)',
                '# output = "dist/custom-folder"',
                "# [targets.gates]",
                "# max_model_kb = 256",
            ]
        lines.append("")
    if not targets:
        lines += [
            "# More targets, for example:",
            "# [[targets]]",
            '# target = "rpi4"',
            "# [[targets]]",
            '# target = "coral-usb"',
            "",
        ]
    return "\n".join(lines)
