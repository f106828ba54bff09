"""The build: a plan made from options, validated up front, then the stages in order.

    load -> [prune] -> [distill] -> export -> convert -> quantize -> validate -> package

Everything that can be checked cheaply (target, options, files, destination) is checked
before torch is imported; data is checked against the model's inputs before export.
"""

from __future__ import annotations

import copy
import dataclasses
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgepack import __version__
from edgepack.accuracy.fallback import FallbackPrecision
from edgepack.data import Dataset, load_dataset
from edgepack.errors import (
    DataError,
    EdgepackError,
    GateError,
    QuantizationError,
    UsageError,
    storage_errors,
)
from edgepack.manifest import (
    MANIFEST_SCHEMA_VERSION,
    StageRecord,
    host_facts,
    now_iso,
    tool_versions,
)
from edgepack.stages.base import (
    ExportedModel,
    StageContext,
    TFLiteArtifact,
    TorchModel,
    noop_progress,
)
from edgepack.targets import Budgets, Int8Engine, IODtype, IOLayout, QuantMode, TargetProfile

FLOAT_MODEL_FILE = "model_float32.tflite"


@dataclass(frozen=True)
class BuildPlan:
    source: str
    target: TargetProfile
    weights: Path | None = None
    input_shapes: tuple[str, ...] = ()
    # How the source is built (edgepack.source.SourceOptions): factory keyword arguments as
    # sorted (key, value) pairs, a named source's weights (--pretrained) and task (--task).
    factory_args: tuple[tuple[str, Any], ...] = ()
    pretrained: str | None = None
    task: str | None = None
    sequence_length: int | None = None
    quantization: QuantMode | None = None  # None: the target's default
    io_dtype: IODtype | None = None
    io_layout: IOLayout | None = None
    calibration: Path | None = None
    calibration_samples: int | None = None
    eval: Path | None = None
    eval_samples: int | None = None
    max_accuracy_drop: float | None = None
    output: Path | None = None  # None: dist/<name>-<target>
    force: bool = False
    name: str | None = None
    seed: int = 0
    latency_runs: int = 50  # host latency: at most this many invokes per model (0: skipped)
    latency_budget_s: float | None = 2.0  # ... and at most about this long per model
    min_fidelity: float | None = None  # output cosine vs the float model, gated
    auto_fallback: bool = False  # full-int8 missing the gate: keep sensitive ops out of int8
    fallback_budget: int | None = None  # max ops kept out of int8 (None: half the ops)
    fallback_precision: FallbackPrecision = FallbackPrecision.FLOAT
    # full-int8 engine: auto tries the calibrator, then ai-edge-quantizer (docs/quantization.md)
    int8_engine: Int8Engine = Int8Engine.AUTO
    # The source as the user wrote it (edgepack.toml: relative to that file). Recorded in the
    # manifest instead of ``source``, so it does not depend on the working folder.
    source_label: str | None = None
    # Compression before export (edgepack.stages.prune.PruneSpec / distill.DistillSpec).
    prune: Any = None
    distill: Any = None
    # Device compatibility: fail when the target requires full delegation and ops fall back
    # to the CPU, unless allowed; require the Edge TPU compiler for coral targets.
    allow_cpu_fallback: bool = False
    require_edgetpu_compiler: bool = False
    # Release gates on size and RAM; None: the target profile's budgets. Checked inside the
    # build, so a package over budget is never written.
    max_model_kb: float | None = None
    max_ram_mb: float | None = None
    # False: no default accuracy guard from the profile (--no-accuracy-gate), recorded in
    # the manifest. The user's own --max-accuracy-drop / --min-fidelity cannot be combined.
    accuracy_gate: bool = True
    # Take the export and the float conversion from edgepack.cache (False: --no-cache).
    cache: bool = True
    # Set by the build: the mode of the profile's preference list being tried (:attr:`modes`).
    attempt: QuantMode | None = None
    # The Python API: an in-memory model (edgepack.api.MemoryModel; ``source`` is then its
    # "memory:..." label) and data given as arrays, recorded as (purpose, sha256) pairs.
    memory_model: Any = None
    memory_data: tuple[tuple[str, str], ...] = ()
    # How images become the model's input (edgepack.images): --preprocess (a preset and/or
    # key=value pairs) over edgepack.toml's [data] preprocess (text or a table) over the
    # model source's; class names for labels.txt (--labels: one per line).
    preprocess: str | dict[str, Any] | None = None  # a dict: the Python API
    preprocess_config: Any = None
    labels: Path | None = None

    # ---- resolved values -------------------------------------------------------------
    @property
    def mode(self) -> QuantMode:
        return self.quantization or self.attempt or self.target.quantization.mode

    @property
    def modes(self) -> tuple[QuantMode, ...]:
        """The modes a build tries, best first: the explicit one, else the profile's list.

        An integer --io-dtype or --auto-fallback (a repair of full-int8) keep full-int8 only.
        """
        if self.quantization is not None:
            return (self.quantization,)
        modes = tuple(self.target.quantization.modes)
        if self.auto_fallback or self.io_dtype not in (None, IODtype.FLOAT32):
            modes = tuple(m for m in modes if m == QuantMode.FULL_INT8) or modes[:1]
        return modes

    @property
    def io(self) -> IODtype:
        if self.io_dtype is not None:
            return self.io_dtype
        if self.mode != QuantMode.FULL_INT8:
            return IODtype.FLOAT32  # integer I/O is full-int8's (the profile schema checks it)
        return self.target.quantization.io_dtype

    @property
    def layout(self) -> IOLayout:
        return self.io_layout or self.target.quantization.io_layout

    @property
    def budgets(self) -> Budgets:
        """Size and RAM limits: the user's, else the profile's; RAM at most the board's."""
        b = self.target.budgets
        ram = self.max_ram_mb if self.max_ram_mb is not None else b.max_ram_mb
        return Budgets(
            max_model_kb=self.max_model_kb if self.max_model_kb is not None else b.max_model_kb,
            max_ram_mb=ram if ram is not None else float(self.target.device.ram_mb),
            max_latency_ms=b.max_latency_ms,
        )

    def budget_source(self, gate: str) -> str:
        """Who set a size or RAM limit, for messages."""
        if getattr(self, gate) is not None:
            return "yours"
        if getattr(self.target.budgets, gate) is not None:
            return f"the {self.target.name} profile's budget"
        return f"the {self.target.name} board's RAM (device.ram_mb)"

    @property
    def source_options(self) -> Any:
        """The plan's edgepack.source.SourceOptions."""
        from edgepack.source import SourceOptions

        return SourceOptions(
            factory_args=self.factory_args,
            pretrained=self.pretrained,
            task=self.task,
            sequence_length=self.sequence_length,
        )

    @property
    def n_calibration(self) -> int:
        return self.calibration_samples or self.target.quantization.calibration_samples


def check_plan(plan: BuildPlan) -> list[str]:
    """Validate everything that needs no model. Raises UsageError listing every problem."""
    problems: list[str] = []
    if plan.io != IODtype.FLOAT32 and plan.mode != QuantMode.FULL_INT8:
        problems.append(
            f"--io-dtype {plan.io.value} needs --quantization full-int8 (got {plan.mode.value})"
        )
    if plan.mode == QuantMode.FULL_INT8 and plan.calibration is None:
        problems.append(
            f"{plan.mode.value} for target '{plan.target.name}' needs --calibration data "
            "(edgepack never calibrates on random data)"
        )
    for flag, path in (
        ("--calibration", plan.calibration),
        ("--eval", plan.eval),
        ("--weights", plan.weights),
        ("--labels", plan.labels),
    ):
        if path is not None and not Path(path).exists():
            problems.append(f"{flag} file not found: {path}")
    image_problems = _check_image_options(plan)
    problems += image_problems
    if not plan.accuracy_gate and (
        plan.max_accuracy_drop is not None or plan.min_fidelity is not None
    ):
        problems.append(
            "--no-accuracy-gate (accuracy_gate = false) turns the accuracy gate off, but "
            "--max-accuracy-drop / --min-fidelity set one"
        )
    if plan.max_accuracy_drop is not None:
        if plan.max_accuracy_drop < 0:
            problems.append("--max-accuracy-drop must be >= 0 (points of top-1)")
        if plan.eval is None:
            problems.append("--max-accuracy-drop needs --eval data with labels")
    if plan.memory_model is not None and plan.weights is not None:
        problems.append("--weights cannot be used with an in-memory model (it holds its weights)")
    problems += _check_accuracy_options(plan)
    problems += _check_compression_options(plan)
    if plan.name is not None:
        from edgepack.source import name_problem

        problems += [p for p in [name_problem(plan.name)] if p]
    if plan.require_edgetpu_compiler:
        from edgepack.stages import edgetpu
        from edgepack.targets import Delegate

        if plan.target.runtime.delegate != Delegate.EDGETPU:
            problems.append(
                f"--require-edgetpu-compiler applies to Edge TPU targets, not '{plan.target.name}'"
            )
        else:
            edgetpu.require_compiler(True)  # raises with how to get it
    for flag, n in (
        ("--calibration-samples", plan.calibration_samples),
        ("--eval-samples", plan.eval_samples),
    ):
        if n is not None and n < 1:
            problems.append(f"{flag} must be >= 1")
    if problems:
        from edgepack.images import SPEC_HINT

        raise UsageError(
            "; ".join(problems),
            SPEC_HINT
            if problems == image_problems and plan.labels is None
            else "see `edgepack build --help`; the target's defaults are in `edgepack targets "
            f"show {plan.target.name}`",
        )
    return problems


def _check_image_options(plan: BuildPlan) -> list[str]:
    """--preprocess / [data] preprocess parse, and the --labels file reads (no model yet)."""
    from edgepack import images

    problems: list[str] = []
    try:
        images.resolve_spec(plan.preprocess, plan.preprocess_config, None)
    except UsageError as exc:
        problems.append(exc.message)
    if plan.labels is not None and Path(plan.labels).is_file():
        try:
            images.read_labels(Path(plan.labels))
        except UsageError as exc:
            problems.append(exc.message)
    return problems


def _check_compression_options(plan: BuildPlan) -> list[str]:
    problems: list[str] = []
    if plan.distill is not None:
        if plan.prune is None:
            problems.append(
                "--distill needs --prune (the teacher is the model as loaded, the student "
                "the pruned one)"
            )
        if not Path(plan.distill.train).exists():
            problems.append(f"--train file not found: {plan.distill.train}")
    if plan.prune is not None and plan.source.endswith(".pt2"):
        problems.append(
            "--prune needs a model factory, not a .pt2 program (no module code to prune)"
        )
    return problems


def _check_accuracy_options(plan: BuildPlan) -> list[str]:
    problems: list[str] = []
    if plan.min_fidelity is not None:
        if not 0 < plan.min_fidelity <= 1:
            problems.append("--min-fidelity must be in (0, 1] (cosine similarity, e.g. 0.99)")
        if plan.eval is None:
            problems.append("--min-fidelity needs --eval data (labels not required)")
    if plan.fallback_budget is not None and plan.fallback_budget < 0:
        problems.append("--fallback-budget must be >= 0 (ops kept out of int8)")
    if plan.int8_engine != Int8Engine.AUTO and QuantMode.FULL_INT8 not in plan.modes:
        problems.append(
            f"--int8-engine {plan.int8_engine.value} applies to full-int8 builds "
            f"(this one is {plan.mode.value})"
        )
    if plan.auto_fallback:
        if plan.mode != QuantMode.FULL_INT8:
            problems.append(
                f"--auto-fallback applies to full-int8 builds (this one is {plan.mode.value})"
            )
        defaults = plan.accuracy_gate and plan.eval is not None  # the profile's guard applies
        if plan.max_accuracy_drop is None and plan.min_fidelity is None and not defaults:
            problems.append(
                "--auto-fallback needs a gate: --eval data (the profile's default gate), "
                "--max-accuracy-drop or --min-fidelity"
            )
    return problems


def default_output(name: str, target: TargetProfile) -> Path:
    return Path("dist") / f"{name}-{target.name}"


@dataclass
class BuildResult:
    package: Path
    manifest: dict[str, Any]
    summary: str
    rows: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # printed by the CLI on stderr


def _load_data(plan: BuildPlan, model: TorchModel) -> tuple[Dataset | None, Dataset | None]:
    from edgepack import images

    spec, _ = images.resolve_spec(plan.preprocess, plan.preprocess_config, model.preprocess)
    names = None if plan.labels is None else images.read_labels(Path(plan.labels))
    calib = None
    if plan.calibration is not None:
        # Loaded in every mode: a wrong file is reported, and it serves parity without eval data.
        calib = load_dataset(
            plan.calibration,
            model.inputs,
            purpose="calibration",
            samples=plan.n_calibration,
            seed=plan.seed,
            preprocess=spec,
            class_names=names,
            tokenizer=model.tokenizer,
        )
    ev = None
    if plan.eval is not None:
        ev = load_dataset(
            plan.eval,
            model.inputs,
            purpose="evaluation",
            samples=plan.eval_samples,
            require_labels=plan.max_accuracy_drop is not None,
            seed=plan.seed,
            tokenizer=model.tokenizer,
            preprocess=spec,
            class_names=names,
        )
    if (
        names is None
        and calib is not None
        and ev is not None
        and None not in (calib.classes, ev.classes)
        and calib.classes != ev.classes
    ):
        raise DataError(
            f"the calibration folder's classes ({', '.join(calib.classes or ())}) differ from "
            f"the evaluation folder's ({', '.join(ev.classes or ())}): their label indices "
            "would not agree",
            "give both folders the same class subfolders, or pass --labels FILE (subfolders "
            "are then matched by name)",
        )
    return calib, ev


@dataclass(frozen=True)
class AppFacts:
    """What goes into the package for apps (edgepack.stages.metadata): the preprocessing
    fitted to the model's input, the layers it came from, the class names and their origin."""

    spec: dict[str, Any] | None
    spec_from: list[str]
    labels: tuple[str, ...] | None
    labels_from: str | None

    @property
    def wanted(self) -> bool:
        return self.spec is not None or bool(self.labels)


def app_facts(
    plan: BuildPlan, model: TorchModel, calib: Dataset | None, ev: Dataset | None
) -> AppFacts:
    from edgepack import images

    spec, used = images.resolve_spec(plan.preprocess, plan.preprocess_config, model.preprocess)
    fitted = None
    if spec is not None and len(model.inputs) == 1:
        try:
            fitted = images.fit_spec(spec, model.inputs[0], " + ".join(used))
        except DataError:
            if used == ["model source"]:
                fitted = None  # the source's own guess does not fit: not the user's request
            else:
                raise
    if plan.labels is not None:
        return AppFacts(fitted, used, images.read_labels(Path(plan.labels)), "--labels")
    if model.class_names:
        return AppFacts(fitted, used, model.class_names, "model source's class names")
    for purpose, ds in (("evaluation", ev), ("calibration", calib)):
        if ds is not None and ds.classes is not None:
            return AppFacts(fitted, used, ds.classes, f"{purpose} folder's class subfolders")
    return AppFacts(fitted, used, None, None)


def data_record(plan: BuildPlan, calib: Dataset | None, ev: Dataset | None) -> dict[str, Any]:
    """The manifest's ``data``: each data file's sha256 and which of its samples were used
    (count, seed, indices' sha256), so a build can be repeated. Data given in memory is
    named by its arrays' sha256, not by its temporary file."""
    memory = dict(plan.memory_data)
    record: dict[str, Any] = {}
    for purpose, ds in (("calibration", calib), ("evaluation", ev)):
        if ds is None:
            continue
        entry = ds.record()
        if purpose in memory:
            entry.update(file=None, **{"from": "memory", "sha256": memory[purpose]})
        record[purpose] = entry
    return record


def _random_data(model: TorchModel, seed: int, n: int = 16) -> Dataset:
    import numpy as np

    rng = np.random.default_rng(seed)
    xs = tuple(
        rng.standard_normal((n, *s.shape[1:])).astype(np.float32)
        if s.dtype.startswith("float")
        else np.zeros((n, *s.shape[1:]), dtype=s.dtype)
        for s in model.inputs
    )
    return Dataset(xs, None, "random (parity only)")


def accuracy_guard(
    plan: BuildPlan, ev: Dataset | None
) -> tuple[float | None, float | None, dict[str, Any]]:
    """The accuracy gates a build enforces: (max_accuracy_drop, min_fidelity, record).

    With eval data the user's limits apply, else the target profile's defaults: labelled data
    gets ``max_accuracy_drop``, unlabelled data ``min_fidelity``. Opting out is explicit
    (``plan.accuracy_gate`` False). ``record`` goes into the manifest (``accuracy_gate``).
    """
    budgets = plan.target.budgets
    drop, fid = plan.max_accuracy_drop, plan.min_fidelity
    if not plan.accuracy_gate:
        return None, None, {"status": "opted out", "reason": "--no-accuracy-gate"}
    if ev is None:
        return drop, fid, {"status": "not measured", "reason": "no --eval data"}
    source = {"max_accuracy_drop": "user", "min_fidelity": "user"}
    if ev.labels is not None:
        if drop is None and fid is None and budgets.max_accuracy_drop is not None:
            drop, source["max_accuracy_drop"] = budgets.max_accuracy_drop, "profile"
    elif fid is None and budgets.min_fidelity is not None:
        fid, source["min_fidelity"] = budgets.min_fidelity, "profile"
    record: dict[str, Any] = {"status": "enforced" if (drop, fid) != (None, None) else "no limit"}
    for key, value in (("max_accuracy_drop", drop), ("min_fidelity", fid)):
        if value is not None:
            record[key] = {"limit": value, "from": source[key]}
    return drop, fid, record


def build(plan: BuildPlan, progress: Callable[[str], None] = noop_progress) -> BuildResult:
    """Build one target: :func:`prepare` (load + export) then the per-target stages."""
    from edgepack.source import default_name
    from edgepack.stages import package as package_stage

    check_plan(plan)
    name = plan.name or default_name(plan.source)
    dest = plan.output or default_output(name, plan.target)
    package_stage.check_destination(dest, plan.force)
    with storage_errors():  # a full disk or an unwritable TMPDIR: a clean error
        work = Path(tempfile.mkdtemp(prefix="edgepack-build-"))
        ctx = StageContext(workdir=work, progress=progress, seed=plan.seed)
        try:
            model, shared, data = prepare([plan], ctx, name, keep_program=True)
            calib, ev = data[0]
            return build_from_model(
                plan, model, name, dest, calib, ev, ctx, exported=shared.exported
            )
        finally:
            shutil.rmtree(work, ignore_errors=True)


@dataclass(frozen=True)
class SharedExport:
    """A model loaded and torch.export-ed once; every target of a matrix builds from it.

    Picklable (paths and records only), so build processes can receive it. ``records`` are
    the load and export stage records, copied into each target's manifest.
    """

    source: str
    weights: Path | None
    input_shapes: tuple[str, ...]
    name: str
    exported: ExportedModel
    records: tuple[StageRecord, ...]
    compressed: bool = False  # the export holds a pruned/distilled model
    options: Any = None  # edgepack.source.SourceOptions
    seed: int = 0  # a named source's random init


def prepare(
    plans: Sequence[BuildPlan], ctx: StageContext, name: str, keep_program: bool = False
) -> tuple[TorchModel, SharedExport, list[tuple[Dataset | None, Dataset | None]]]:
    """Load the model once, check every plan's data against its inputs, export it once.

    All ``plans`` share the model source (weights, input shapes). The export is written into
    ``ctx.workdir``; it lives as long as that folder. ``keep_program``: one build in this
    process converts it; the program is handed over in memory (no .pt2 written without the
    cache).
    """
    from edgepack.source import load_module, load_source
    from edgepack.stages import export

    first = plans[0]
    cache = _cache(first)  # a bad cache setting fails before the load
    ctx.progress("load: model source")
    with ctx.timed() as elapsed:
        if first.memory_model is not None:
            model = load_module(
                first.memory_model.module, first.memory_model.example_inputs, first.input_shapes
            )
        else:
            model = load_source(
                first.source,
                first.weights,
                first.input_shapes,
                first.source_options,
                first.seed,
            )
    if first.source_label is not None:
        model.source["spec"] = first.source_label
    data = [_load_data(p, model) for p in plans]  # cheap checks before the export
    ctx.record(
        "load",
        params={
            "source": first.source_label or first.source,
            "inputs": [s.to_dict() for s in model.inputs],
            **(
                {"data": {p: {"from": "memory", "sha256": h} for p, h in first.memory_data}}
                if first.memory_data
                else {}
            ),
        },
        seconds=elapsed(),
    )
    if first.prune is not None or first.distill is not None:
        from edgepack.compression import run_compression
        from edgepack.stages.distill import validate_distill

        if first.distill is not None:
            validate_distill(first.distill, model.inputs)
        ev = data[0][1]
        original = model
        model = run_compression(model, first.prune, first.distill, ctx, ev)
        model.reference = original
        model.source = original.source
    if model.reference is not None:  # compressed: the key would have to cover the training
        reason = "compressed model (--prune/--distill)"
        exported = export.run(model, ctx, None, reason, keep_program=keep_program)
    else:
        exported = export.run(model, ctx, cache, keep_program=keep_program)
    shared = SharedExport(
        source=first.source,
        weights=first.weights,
        input_shapes=first.input_shapes,
        name=name,
        exported=exported,
        records=tuple(copy.deepcopy(ctx.records)),
        compressed=model.reference is not None,
        options=first.source_options,
        seed=first.seed,
    )
    return model, shared, data


def build_from_export(
    plan: BuildPlan,
    shared: SharedExport,
    dest: Path,
    progress: Callable[[str], None] = noop_progress,
) -> BuildResult:
    """One target of a matrix, from a shared export (may run in another process).

    The model source is loaded again (cheap: no export) as the PyTorch reference that the
    validation compares against; the .pt2 is what gets converted.
    """
    from edgepack.stages import package as package_stage

    check_plan(plan)
    package_stage.check_destination(dest, plan.force)
    with storage_errors():
        return _build_from_export(plan, shared, dest, progress)


def _build_from_export(
    plan: BuildPlan,
    shared: SharedExport,
    dest: Path,
    progress: Callable[[str], None],
) -> BuildResult:
    from edgepack.source import load_source

    work = Path(tempfile.mkdtemp(prefix="edgepack-target-"))
    ctx = StageContext(workdir=work, progress=progress, seed=plan.seed)
    ctx.records = [copy.deepcopy(r) for r in shared.records]
    try:
        model = load_source(
            shared.source, shared.weights, shared.input_shapes, shared.options, shared.seed
        )
        if plan.source_label is not None:
            model.source["spec"] = plan.source_label
        calib, ev = _load_data(plan, model)
        if shared.compressed:
            # The compressed model is the exported program; the source is the reference.
            compressed = load_source(str(shared.exported.path))
            compressed.reference = model
            compressed.source = model.source
            compressed.name = model.name
            model = compressed
        return build_from_model(
            plan, model, shared.name, dest, calib, ev, ctx, exported=shared.exported
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


def build_from_model(
    plan: BuildPlan,
    model: TorchModel,
    name: str,
    dest: Path,
    calib: Dataset | None,
    ev: Dataset | None,
    ctx: StageContext,
    exported: ExportedModel | None = None,  # shared by a matrix; else exported here
) -> BuildResult:
    from edgepack.stages import convert, export
    from edgepack.stages import metadata as metadata_stage
    from edgepack.stages import package as package_stage

    if exported is None:
        exported = export.run(model, ctx, None if model.reference is not None else _cache(plan))
    float_model = convert.run(exported, plan.layout, ctx, _cache(plan))
    facts = app_facts(plan, model, calib, ev)
    if facts.labels:  # before quantizing: a wrong labels file fails fast
        try:
            metadata_stage.check_labels(facts.labels, _labels_origin(plan, facts), float_model.path)
        except DataError:
            # Calibration images need no labels: their folders name no classes of the model.
            if facts.labels_from != "calibration folder's class subfolders":
                raise
            facts = dataclasses.replace(facts, labels=None, labels_from=None)
    batch = model.inputs[0].shape[0] if model.inputs[0].shape else 1
    drop, fid, guard = accuracy_guard(plan, ev)
    plan = dataclasses.replace(plan, max_accuracy_drop=drop, min_fidelity=fid)
    # Accuracy is measured on eval data only: calibration data is not held out.
    data = ev or calib or _random_data(model, plan.seed)
    source = "eval" if ev is not None else "calibration" if calib is not None else "random"
    validate_args: dict[str, Any] = {
        "data_kind": source,
        "profile_limits": tuple(
            k for k, v in guard.items() if isinstance(v, dict) and v.get("from") == "profile"
        ),
        "max_accuracy_drop": plan.max_accuracy_drop,
        "budgets": plan.budgets,
        "latency_runs": plan.latency_runs,
        "latency_budget_s": plan.latency_budget_s,
        "min_fidelity": plan.min_fidelity,
    }
    built, report, fallback, plan, attempts = _choose_mode(
        plan, model, float_model, calib, ev, data, ctx, validate_args, batch
    )
    # Ops --auto-fallback kept out of int8 leave an integer-only accelerator knowingly (the
    # fallback record says what that costs): the full-delegation gate is waived for them.
    compat_report, edgetpu_result = _device_checks(
        plan, built, ctx, allow_cpu=plan.allow_cpu_fallback or fallback is not None
    )
    app = None
    if facts.wanted:
        # Before the manifest: its model record (sha256, size) is the embedded model's.
        app = metadata_stage.interface(
            facts.spec, facts.spec_from, facts.labels, facts.labels_from, built
        )
        if len(model.inputs) == 1 and len(_output_tensors(built)) == 1:
            built = metadata_stage.run(
                built,
                app,
                facts.spec,
                facts.labels,
                name,
                f"{name} built by edgepack {__version__} for {plan.target.name}",
                __version__,
                ctx,
            )
            _refresh_footprint(plan, built, report)
            app["metadata"] = {
                "file": "model.tflite",
                "format": "TFLite metadata (TFLITE_METADATA)",
                "associated_files": [metadata_stage.LABELS_FILE] if facts.labels else [],
            }
        else:
            app["metadata"] = None  # TFLite metadata describes one input and one output here
    manifest = make_manifest(plan, model, name, built, report, ctx)
    if app is not None:
        manifest["app"] = app
    manifest["accuracy_gate"] = guard
    manifest["data"] = data_record(plan, calib, ev)
    manifest["quantization"]["preference"] = [m.value for m in plan.modes]
    # timings go under "build" (everything else in a manifest is reproducible)
    manifest["quantization"]["attempts"] = [
        {k: v for k, v in a.items() if k != "seconds"} for a in attempts
    ]
    manifest["build"]["attempt_seconds"] = {a["mode"]: a["seconds"] for a in attempts}
    files = {"model.tflite": built.path}
    if compat_report is not None:
        manifest["compat"] = compat_report.to_dict()
    if edgetpu_result is not None:
        manifest["edgetpu"] = edgetpu_result.to_dict()
        if edgetpu_result.artifact is not None:
            files[EDGETPU_MODEL_FILE] = edgetpu_result.artifact.path
            manifest["model_file"] = EDGETPU_MODEL_FILE
    if plan.mode != QuantMode.FLOAT32:
        # The float reference for `edgepack analyze` (per-layer error) without the source.
        files[FLOAT_MODEL_FILE] = float_model.path
        manifest["reference_model"] = FLOAT_MODEL_FILE
    if fallback is not None:
        manifest["quantization"]["route"] = fallback.route
        manifest["quantization"]["fallback"] = fallback.record
    samples = _default_inputs(model, built, ev, calib, manifest, ctx)
    if samples is not None:
        files[samples.name] = samples
    summary = render_summary(manifest)
    texts = {"summary.md": summary}
    if facts.labels:
        texts[metadata_stage.LABELS_FILE] = metadata_stage.labels_text(facts.labels)
    ctx.progress(f"package: {dest}")
    package_stage.write_package(
        dest,
        files=files,
        texts=texts,
        manifest=manifest,
        force=plan.force,
    )
    from edgepack.stages import preflight

    warnings = preflight.disagreements(manifest.get("compat") or {})
    return BuildResult(
        package=dest,
        manifest=manifest,
        summary=summary,
        rows=summary_rows(manifest),
        warnings=warnings,
    )


def _refresh_footprint(plan: BuildPlan, built: TFLiteArtifact, report: Any) -> None:
    """The size and RAM figures (and their gates) of the model as shipped, with metadata."""
    from edgepack.stages.validate import model_footprint

    check_budgets(plan, built)  # the metadata's bytes count against the size budget too
    foot = model_footprint(built.path)
    report.metrics["size_bytes"] = foot["size_bytes"]
    report.metrics["est_ram_mb_upper"] = foot["est_ram_mb_upper"]
    for g in report.gates:
        if g["gate"] == "max_model_kb":
            g["value"] = round(foot["size_bytes"] / 1024, 2)
        elif g["gate"] == "max_ram_mb":
            g["value"] = foot["est_ram_mb_upper"]


def _labels_origin(plan: BuildPlan, facts: AppFacts) -> str:
    if plan.labels is not None:
        return f"--labels {plan.labels}"
    return f"the {facts.labels_from}"


def _output_tensors(built: TFLiteArtifact) -> list[Any]:
    from edgepack.tflite import read_model

    return read_model(built.path).output_tensors


NO_PACKAGE = "; no package was written"


class _Refused(Exception):
    """A mode failed its own checks or the accuracy guard: the next mode of the list may pass."""

    def __init__(self, error: QuantizationError | GateError) -> None:
        super().__init__(error.message)
        self.error = error


def _choose_mode(
    plan: BuildPlan,
    model: TorchModel,
    float_model: TFLiteArtifact,
    calib: Dataset | None,
    ev: Dataset | None,
    data: Dataset,
    ctx: StageContext,
    validate_args: dict[str, Any],
    batch: int,
) -> tuple[TFLiteArtifact, Any, Any, BuildPlan, list[dict[str, Any]]]:
    """The first mode of ``plan.modes`` that passes its own checks and the accuracy guard.

    Every attempt quantizes the one float conversion. A size or RAM budget missed is final
    (it fails before validation). Returns the built model, its report, the fallback result,
    the plan of the chosen mode and the attempts record (mode, outcome, reason).
    """
    from edgepack.stages.validate import ACCURACY_GATES

    modes = plan.modes
    attempts: list[dict[str, Any]] = []
    refused: list[_Refused] = []
    for k, mode in enumerate(modes):
        attempt = dataclasses.replace(plan, attempt=mode)
        start = time.perf_counter()
        try:
            built, report, fallback = _build_mode(
                attempt, model, float_model, calib, ev, data, ctx, validate_args, batch
            )
        except _Refused as r:
            reason = r.error.message.removesuffix(NO_PACKAGE)
            seconds = round(time.perf_counter() - start, 3)
            attempts.append(
                {"mode": mode.value, "outcome": "refused", "reason": reason, "seconds": seconds}
            )
            refused.append(r)
            if k + 1 < len(modes):
                ctx.progress(
                    f"quantize: {mode.value} refused ({reason}); trying {modes[k + 1].value}"
                )
                continue
            if len(refused) == 1:
                raise r.error from None
            gate = any(isinstance(x.error, GateError) for x in refused)
            cls: type[EdgepackError] = GateError if gate else QuantizationError
            raise cls(
                f"no mode of the {plan.target.name} profile's quantization list passed: "
                + "; ".join(f"{a['mode']}: {a['reason']}" for a in attempts)
                + NO_PACKAGE,
                r.error.hint,
            ) from None
        passed = [g for g in report.gates if g["gate"] in ACCURACY_GATES]
        attempts.append(
            {
                "mode": mode.value,
                "outcome": "chosen",
                "reason": (
                    "passed its checks and "
                    + ", ".join(
                        f"{g['gate']} {g['value']} {g.get('op') or '<='} {g['limit']}"
                        for g in passed
                    )
                    if passed
                    else "passed its checks (no accuracy gate: "
                    + (
                        "--no-accuracy-gate"
                        if not plan.accuracy_gate
                        else ("no --eval data" if ev is None else "no limit")
                    )
                    + ")"
                ),
                "seconds": round(time.perf_counter() - start, 3),
            }
        )
        return built, report, fallback, attempt, attempts
    raise AssertionError("unreachable: plan.modes is never empty")


def _build_mode(
    plan: BuildPlan,
    model: TorchModel,
    float_model: TFLiteArtifact,
    calib: Dataset | None,
    ev: Dataset | None,
    data: Dataset,
    ctx: StageContext,
    validate_args: dict[str, Any],
    batch: int,
) -> tuple[TFLiteArtifact, Any, Any]:
    """One mode: quantize, size and RAM budgets (before validation: fails fast), validate;
    --auto-fallback repairs a full-int8 that misses the accuracy gate. Raises :class:`_Refused`
    for what another mode may pass (the mode's own checks, the accuracy guard)."""
    from edgepack.stages import quantize, validate

    missed: list[dict[str, Any]] = []
    trigger = ""
    try:
        built = quantize.run(
            float_model, plan.mode, plan.io, calib, ctx, batch=batch, int8_engine=plan.int8_engine
        )
    except QuantizationError as exc:
        if not plan.auto_fallback:
            raise _Refused(exc) from exc
        missed, trigger = [{"gate": "quantization", "error": exc.message}], exc.message
    if not missed:
        check_budgets(plan, built)
        report = validate.run(
            model, float_model, built, data, ctx, raise_on_fail=False, **validate_args
        )
        missed = [g for g in report.failed if g["gate"] in validate.ACCURACY_GATES]
        if not missed:
            validate.raise_for_gates(report, built.kind, validate_args["profile_limits"])
            return built, report, None
        if not plan.auto_fallback:
            try:
                validate.raise_for_gates(report, built.kind, validate_args["profile_limits"])
            except GateError as exc:
                raise _Refused(exc) from exc
        trigger = "; ".join(f"{g['gate']} {g['value']} vs {g['limit']}" for g in missed)
    # --auto-fallback, and full-int8 failed or missed the accuracy gate: keep ops out of int8.
    from edgepack.accuracy import fallback as fallback_stage

    if ev is None or calib is None:  # check_plan requires both; kept for the type checker
        raise UsageError("--auto-fallback needs --eval and --calibration data", "pass both")
    fallback = fallback_stage.run(float_model, model, calib, ev, plan, trigger, ctx)
    built = fallback.artifact
    check_budgets(plan, built)
    report = validate.run(model, float_model, built, data, ctx, **validate_args)
    return built, report, fallback


def check_budgets(plan: BuildPlan, built: TFLiteArtifact) -> None:
    """Size and RAM limits, as soon as the model exists: over budget fails before validation."""
    from edgepack.stages.validate import model_footprint

    budgets = plan.budgets
    foot = model_footprint(built.path)
    for gate, value, unit, what in (
        ("max_model_kb", foot["size_kb"], "KB", "model size"),
        ("max_ram_mb", foot["est_ram_mb_upper"], "MB", "estimated RAM (weights + activations)"),
    ):
        limit = getattr(budgets, gate)
        if limit is not None and value > limit:
            raise GateError(
                f"budget gate failed: {gate} {value} > {limit} ({what} of the {built.kind} "
                f"model is {value} {unit}; the limit is {plan.budget_source(gate)}); checked "
                "before validation, no package was written",
                "compress the model (--prune), pick a smaller quantization, or set your own "
                "limit ([gates] max_model_kb / max_ram_mb in edgepack.toml)",
            )


EDGETPU_MODEL_FILE = "model_edgetpu.tflite"
NOT_COMPILED = (
    "NOT compiled for the Edge TPU (edgetpu_compiler not on PATH): model.tflite is the "
    "uncompiled int8 model, which the Edge TPU delegate does not run on the accelerator; "
    "compile it with edgetpu_compiler, or build with --require-edgetpu-compiler"
)


def _cache(plan: BuildPlan) -> Any:
    """The export/conversion cache (edgepack.cache.ArtifactCache), None with --no-cache."""
    from edgepack.cache import ArtifactCache

    return ArtifactCache() if plan.cache else None


def _default_inputs(
    model: TorchModel,
    built: TFLiteArtifact,
    ev: Dataset | None,
    calib: Dataset | None,
    manifest: dict[str, Any],
    ctx: StageContext,
) -> Path | None:
    """For a model with integer inputs: the valid input ranges in ``manifest["default_inputs"]``
    and a few samples of the build's data (the file to package, or None)."""
    from edgepack import default_inputs
    from edgepack.stages.quantize import to_boundary_layout
    from edgepack.tflite import read_model

    real, kind = (ev, "evaluation data") if ev is not None else (calib, "calibration data")
    xs = None if real is None else [to_boundary_layout(x, built.io_layout) for x in real.inputs]
    info = read_model(built.path)
    desc = default_inputs.describe(info, model.inputs, xs, kind)
    if desc is None:
        return None
    manifest["default_inputs"] = desc
    if xs is None:
        return None
    path = ctx.stage_dir("package") / default_inputs.SAMPLES_FILE
    default_inputs.write_samples(path, info, xs, desc["samples"])
    return path


def _device_checks(
    plan: BuildPlan, built: TFLiteArtifact, ctx: StageContext, allow_cpu: bool = False
) -> tuple[Any, Any]:
    """Pre-flight against the target's rule tables (gated when the target requires full
    delegation), then the Edge TPU compiler for Edge TPU targets."""
    from edgepack.targets import Delegate

    report = None
    if plan.target.compat.rules:
        from edgepack.compat import require_full_delegation
        from edgepack.stages import preflight

        report = preflight.run(built, plan.target, ctx)
        if plan.target.compat.require_full_delegation and not allow_cpu:
            from edgepack.compat import FullDelegationError

            try:
                require_full_delegation(report, plan.target.name)
            except FullDelegationError as exc:
                raise FullDelegationError(
                    exc.message + "; no package was written",
                    exc.hint + ", or pass --allow-cpu-fallback to package it anyway",
                ) from exc
    result = None
    if plan.target.runtime.delegate == Delegate.EDGETPU:
        from edgepack.stages import edgetpu

        result = edgetpu.run(built, ctx)
    return report, result


def make_manifest(
    plan: BuildPlan,
    model: TorchModel,
    name: str,
    built: TFLiteArtifact,
    report: Any,
    ctx: StageContext,
) -> dict[str, Any]:
    from edgepack.stages import quantize
    from edgepack.tflite import read_model

    info = read_model(built.path)
    return {
        "schema_version": MANIFEST_SCHEMA_VERSION,
        "edgepack_version": __version__,
        "name": name,
        "source": model.source,
        "target": {
            "name": plan.target.name,
            "sha256": plan.target.sha256,
            "profile": plan.target.to_dict(),
        },
        "quantization": {
            "mode": plan.mode.value,
            "io_dtype": plan.io.value,
            "io_layout": plan.layout.value,
            "route": built.route or quantize.route_for(plan.mode, plan.int8_engine),
            "calibration_samples": (
                _calibration_used(ctx) if plan.mode == QuantMode.FULL_INT8 else None
            ),
            "overridden": {
                "quantization": plan.quantization is not None,
                "io_dtype": plan.io_dtype is not None,
                "io_layout": plan.io_layout is not None,
            },
        },
        "stages": [r.to_dict() for r in ctx.records],
        "versions": tool_versions(),
        "model_file": "model.tflite",
        "files": {},
        "model": info.summary(),
        "metrics": {k: v for k, v in report.metrics.items()},
        "build": {
            "created_at": now_iso(),
            "stage_seconds": {r.name: r.seconds for r in ctx.records},
            "cache": {r.name: r.cache for r in ctx.records if r.cache},
            "host": host_facts(),
            **report.timing,
        },
    }


def _calibration_used(ctx: StageContext) -> int | None:
    """Samples the last calibrating stage (quantize, or the fallback search) really used: the
    data file may hold fewer than --calibration-samples / the profile's number."""
    for r in reversed(ctx.records):
        if "calibration_samples" in r.params:
            return int(r.params["calibration_samples"])
    return None


def choice_note(manifest: dict[str, Any]) -> str | None:
    """The line saying which mode of the profile's list a build chose and why the better
    ones were refused (None when the first one passed)."""
    attempts = manifest["quantization"].get("attempts") or []
    refused = [a for a in attempts if a["outcome"] == "refused"]
    if not refused:
        return None
    return (
        f"quantization: {manifest['quantization']['mode']} chosen from the "
        f"{manifest['target']['name']} profile's list "
        f"({', '.join(manifest['quantization']['preference'])}); "
        + "; ".join(f"{a['mode']} refused: {a['reason']}" for a in refused)
    )


def _stage_line(name: str, params: dict[str, Any], m: dict[str, Any]) -> str:
    def ratio(key: str) -> str:
        b, a = m.get(f"{key}_before"), m.get(f"{key}_after")
        return f"{key} {b} -> {a}" if b is not None and a is not None else ""

    parts = [p for p in (ratio("params"), ratio("macs"), ratio("top1")) if p]
    head = params.get("method", "") + (f":{params['sparsity']}" if "sparsity" in params else "")
    return (head + " " if head else "") + ", ".join(parts)


def _real_delegation_note(real: dict[str, Any] | None) -> str:
    if real is None:
        return ""
    if "error" in real:
        return "; real delegate: not checked"
    return (
        f"; real delegate: {real['partitions']} partition(s), {len(real['cpu_ops'])} op(s) on "
        "the CPU" + ("" if real["agrees"] else " (the prediction is wrong)")
    )


def _kept_float_count(q: dict[str, Any]) -> str:
    """' with 65 ops kept in float' when a recipe keeps ops in float on purpose (not pure
    full-int8), counting the ones the group search added; '' otherwise."""
    kept = q["route"].get("kept_float")
    if not kept:
        return ""
    searched = (q.get("fallback") or {}).get("ops_kept_out_of_int8", 0)
    return f" with {kept['ops'] + searched} ops kept in float"


def summary_rows(manifest: dict[str, Any], timing: bool = True) -> list[tuple[str, str]]:
    m = manifest["metrics"]
    q = manifest["quantization"]
    rows = [
        ("package", f"{manifest['name']} for {manifest['target']['name']}"),
        (
            "quantization",
            f"{q['mode']}{_kept_float_count(q)}"
            + f" (I/O {q['io_dtype']}, layout {q['io_layout']}, {q['route']['engine']})",
        ),
        ("size", f"{m['size_bytes'] / 1024:.1f} KB"),
    ]
    acc = m.get("accuracy")
    if acc and acc.get("measured", True):
        rows.append(
            (
                "top-1",
                f"float {acc['float']:.2f}% -> {q['mode']} {acc['quantized']:.2f}% "
                f"(drop {acc['drop_points']:+.2f} points)",
            )
        )
    elif m.get("data") == "unlabelled":
        rows.append(("top-1", "not measured (the eval data has no labels)"))
    else:
        rows.append(("top-1", "not measured (no --eval data; calibration data is not held out)"))
    fid = m["fidelity"]
    on = {"calibration": " (on calibration data)", "random": " (on random inputs)"}
    rows.append(
        (
            "fidelity vs PyTorch" + on.get(str(m.get("data")), ""),
            f"cosine {fid['cosine']:.4f}, SNR {fid['snr_db']:.1f} dB, "
            f"max abs {fid['max_abs_diff']:.4g}"
            + (f", NN agreement {fid['nn_agreement']:.3f}" if "nn_agreement" in fid else ""),
        )
    )
    note = choice_note(manifest)
    if note is not None:
        rows.append(("quantization choice", note.split(": ", 1)[1]))
    refused = [t for t in q["route"].get("tried", []) if t["outcome"] == "refused"]
    if refused:
        rows.append(
            (
                "quantization route",
                f"{q['route']['engine']} {q['route'].get('recipe', '')}".rstrip()
                + " after "
                + "; ".join(f"{t['engine']} refused: {t['reason']}" for t in refused),
            )
        )
    fb = q.get("fallback")
    if fb:
        kept = ", ".join(f"{e['op']}#{e['index']}" for e in fb["kept"]) or "none"
        rows.append(
            (
                "fallback",
                f"{fb['ops_kept_out_of_int8']} of {fb['ops_total']} ops kept {fb['precision']} "
                f"({kept}) after {len(fb['steps']) - 1} step(s), {fb['strategy']}",
            )
        )
    par = m["float_parity"]
    rel = (
        f", relative {par['max_rel_diff']:.2e} (of max |output| {par['ref_max_abs']:.2e})"
        if "max_rel_diff" in par  # older manifests have the absolute figure only
        else ""
    )
    rows.append(
        (
            "float parity",
            f"max abs diff {par['max_abs_diff']:.2e}{rel} over {par['samples']} samples",
        )
    )
    app = manifest.get("app")
    if app:
        rows.append(("for apps", app_line(app)))
    ops = manifest["model"]["ops"]
    rows.append(("ops", ", ".join(f"{k} x{v}" for k, v in ops.items())))
    if manifest["model"]["float_compute_ops"]:
        rows.append(("float compute ops", ", ".join(manifest["model"]["float_compute_ops"])))
    if q["route"].get("kept_float"):  # a recipe's float ops, on purpose (not a leftover)
        from edgepack.stages.quantize import kept_float_note

        rows.append(("kept in float", kept_float_note(q["route"])))
    tpu = manifest.get("edgetpu")
    uncompiled = tpu is not None and not tpu["compiled"]
    for rules, r in manifest.get("compat", {}).get("results", {}).items():
        share = "n/a" if r.get("mac_share") is None else f"{100 * r['mac_share']:.1f}%"
        where = (
            "predicted: every op maps to the accelerator"
            if r["fully_delegated"]
            else f"{len(r['cpu_ops'])} op(s) on the CPU, first split at op {r.get('split_index')}"
        )
        checked = _real_delegation_note(r.get("real"))
        rows.append(
            (
                f"pre-flight {rules}",
                f"{where}; {r['partitions']} partition(s); MACs {share}{checked}"
                + (
                    " (a prediction: the model is NOT compiled for the Edge TPU)"
                    if uncompiled
                    else ""
                ),
            )
        )
    if tpu is not None:
        rows.append(
            (
                "edgetpu_compiler",
                f"compiled: {tpu['file']}" if tpu["compiled"] else NOT_COMPILED,
            )
        )
    guard = manifest.get("accuracy_gate")
    if guard is not None and guard.get("status") != "enforced":
        rows.append(
            (
                "accuracy gate",
                f"{guard['status']}" + (f" ({guard['reason']})" if guard.get("reason") else ""),
            )
        )
    for stage in manifest["stages"]:
        if stage["name"] in ("prune", "distill"):
            mm = stage["metrics"]
            rows.append((stage["name"], _stage_line(stage["name"], stage["params"], mm)))
    lat = manifest["build"].get("host_latency") if timing else None
    if lat and lat.get("measured", True):
        kinds = [k for k, v in lat.items() if k != "float32" and isinstance(v, dict)]
        built = lat[kinds[0]] if kinds else lat["float32"]
        rows.append(
            (
                "host latency (1 thread)",
                f"{built['median_ms']:.3f} ms median "
                f"(float32 {lat['float32']['median_ms']:.3f} ms; {built['runs']} runs)",
            )
        )
    for g in m.get("gates", []):
        rows.append(
            (
                f"gate {g['gate']}",
                f"{g['value']} {g.get('op', '<=')} {g['limit']}: {'pass' if g['passed'] else 'FAIL'}",
            )
        )
    return rows


def app_line(app: dict[str, Any]) -> str:
    """The manifest's ``app`` record in one line: preprocessing, labels, metadata."""
    parts = []
    pre = app.get("preprocess")
    if pre:
        resize = f"resize {pre['resize']}, " if pre.get("resize") else ""
        lo, hi = pre["value_range"]
        parts.append(
            f"{resize}crop {pre['crop'][0]}x{pre['crop'][1]}, {pre['channel_order']} "
            f"{pre['layout']}, range {lo:g}..{hi:g}, mean "
            + "/".join(f"{v:g}" for v in pre["mean"])
            + " std "
            + "/".join(f"{v:g}" for v in pre["std"])
        )
    labels = app.get("labels")
    if labels:
        parts.append(f"{labels['file']} ({labels['count']} classes)")
    if app.get("metadata"):
        parts.append("TFLite metadata in " + app["metadata"]["file"])
    return "; ".join(parts)


def render_summary(manifest: dict[str, Any]) -> str:
    rows = summary_rows(manifest, timing=False)  # summary.md is reproducible: no timings
    lines = [f"# {manifest['name']} for {manifest['target']['name']}", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    lines += [
        "",
        f"Built by edgepack {manifest['edgepack_version']}; details in manifest.json.",
        "",
    ]
    return "\n".join(lines)
