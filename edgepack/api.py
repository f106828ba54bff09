"""The Python API: ``edgepack.build(...)`` from a notebook or a script, and :class:`Package`.

    import edgepack
    pkg = edgepack.build(model, example_inputs=x[:1], target="rpi4", calibration=x)
    pkg.metrics["fidelity"]["cosine"], pkg.path
    pkg.bench()  # locally; pkg.bench(host="pi@raspberrypi") on the device

The same build as ``edgepack build``: the arguments become a :class:`BuildPlan` checked by
the same validation, so a bad argument raises the same :class:`EdgepackError` (message and
hint) the CLI prints. The model may be an in-memory ``torch.nn.Module`` (built from a copy)
or a source string; data may be numpy arrays, recorded in the manifest by sha256.
"""

from __future__ import annotations

import dataclasses
import difflib
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgepack.errors import DataError, UsageError

# Keyword options of build(): BuildPlan fields given as the user writes them on the CLI.
_ENUMS = {
    "quantization": ("--quantization", "QuantMode"),
    "io_dtype": ("--io-dtype", "IODtype"),
    "io_layout": ("--io-layout", "IOLayout"),
    "int8_engine": ("--int8-engine", "Int8Engine"),
}
_PATHS = ("weights", "output", "labels")
# Compression options: parsed like the CLI's (edgepack.release.config.compression_fields).
_COMPRESSION = ("prune", "prune_scope", "round_to", "distill", "train")
_DISTILL = ("epochs", "lr", "temperature", "alpha")
# Set by build() itself, not options.
_RESERVED = (
    "source",
    "target",
    "calibration",
    "eval",
    "memory_model",
    "memory_data",
    "attempt",
    "preprocess_config",  # edgepack.toml's [data] preprocess; the API's is preprocess=
)


@dataclass(frozen=True)
class MemoryModel:
    """An in-memory model and its example inputs (tensors or arrays), as a plan carries it."""

    module: Any
    example_inputs: Any = None


@dataclass(frozen=True)
class Package:
    """A package folder written by a build (or opened with :meth:`open`); ``path`` is
    absolute, so it stays right when the working folder changes."""

    path: Path
    manifest: dict[str, Any]

    @classmethod
    def open(cls, path: str | Path) -> Package:
        from edgepack.manifest import read_manifest

        return cls(Path(path).resolve(), read_manifest(path))

    @property
    def metrics(self) -> dict[str, Any]:
        """Accuracy, fidelity, float parity, size, gates (``manifest["metrics"]``)."""
        return dict(self.manifest["metrics"])

    @property
    def summary(self) -> str:
        """The text of summary.md."""
        return (self.path / "summary.md").read_text(encoding="utf-8")

    @property
    def model_path(self) -> Path:
        from edgepack.manifest import model_path

        return model_path(self.path, self.manifest)

    def bench(
        self,
        host: str | None = None,
        *,
        port: int | None = None,
        identity: str | None = None,
        accept_new_host_key: bool = False,
        remote_python: str | None = None,
        threads: int | None = None,
        runs: int | None = None,
        warmup_runs: int | None = None,
        min_seconds: float | None = None,
        max_seconds: float | None = None,
        delegate: str | None = None,
        input_data: str | Path | None = None,
        timeout: float | None = None,
        save: bool = True,
    ) -> dict[str, Any]:
        """Benchmark the package like ``edgepack bench``: locally by default, on an
        SSH device with ``host`` (``user@host[:port]`` or a ~/.ssh/config alias). Returns the
        result document (saved under <package>/bench unless ``save`` is False)."""
        from edgepack.bench import plan
        from edgepack.bench.results import load_subject, save_result
        from edgepack.targets import Transport

        subject = load_subject(self.path)
        profile = plan.resolve_profile(subject, None)
        options = plan.bench_options(
            profile,
            plan.Overrides(
                threads=threads,
                runs=runs,
                warmup_runs=warmup_runs,
                min_seconds=min_seconds,
                max_seconds=max_seconds,
                delegate=delegate,
                input_file=None if input_data is None else Path(input_data),
                timeout_s=timeout,
            ),
        )
        conn = plan.Connection(
            host=host,
            port=port,
            identity=identity,
            accept_new_host_key=accept_new_host_key,
            remote_python=remote_python,
        )
        kind = Transport.SSH if host else Transport.LOCAL
        result = plan.run_once(subject, profile, options, conn, kind)
        if save:
            result["saved_to"] = str(save_result(result, subject.save_dir))
        return result

    def __repr__(self) -> str:
        return f"Package({str(self.path)!r})"


def build(
    model: Any,
    example_inputs: Any = None,
    target: str | Path = "rpi4",
    calibration: Any = None,
    eval: Any = None,
    *,
    progress: Callable[[str], None] | None = None,
    **options: Any,
) -> Package:
    """Build a package for ``target`` and return it.

    ``model``: a ``torch.nn.Module`` (with ``example_inputs``, or ``input_shapes=["1x3x32x32"]``)
    or a source string as on the command line (``module:factory``, ``model.py:factory``,
    ``model.pt2``, ``torchvision:NAME``, ``timm:NAME``, ``hf:ORG/MODEL``; with
    ``factory_args={"num_classes": 10}``, ``pretrained=True`` or a weights name, ``task=``). ``target``: a target name or a profile .toml path. ``calibration`` /
    ``eval``: a numpy array, a dict of arrays, an ``(x, y)`` tuple, or a path (.npz, .npy,
    a folder of images or of .npy files). ``preprocess``: how images become the model's
    input, a preset name / key=value text as on the command line or a dict of the same keys
    (docs/data.md); ``labels``: a labels file. ``options``: the build options of ``edgepack build`` by their long name with
    ``_`` for ``-`` (``quantization="full-int8"``, ``max_accuracy_drop=1.0``, ``output=...``,
    ``force=True``, ``prune="magnitude:0.5"``, ...). ``progress`` receives the stage lines.
    """
    from edgepack import data, pipeline
    from edgepack.targets import load_target

    fields = _plan_fields(options)
    if isinstance(model, str):
        if example_inputs is not None:
            raise UsageError(
                "example_inputs applies to an in-memory model, not a source string",
                "drop example_inputs; give a source's shapes with input_shapes=['1x3x224x224']",
            )
        source, memory = model, None
    elif isinstance(model, Path):
        source, memory = str(model), None
    else:
        from edgepack.source import default_name, memory_spec

        # Checked (a torch.nn.Module, runs on its inputs) by the build's load stage.
        memory = MemoryModel(model, example_inputs)
        source = memory_spec(model)
        fields.setdefault("name", default_name(type(model).__name__))
    work = Path(tempfile.mkdtemp(prefix="edgepack-api-"))
    try:
        paths: dict[str, Path | None] = {}
        digests: list[tuple[str, str]] = []
        for purpose, value in (("calibration", calibration), ("evaluation", eval)):
            arrays = data.memory_arrays(value, purpose)
            if arrays is None:
                paths[purpose] = None if value is None else Path(value)
                continue
            path = work / f"{purpose}.npz"
            data.np.savez(path, **arrays)  # type: ignore[arg-type]  # numpy's stub: allow_pickle
            paths[purpose] = path
            digests.append((purpose, data.arrays_sha256(arrays)))
        plan = pipeline.BuildPlan(
            source=source,
            target=load_target(str(target)),
            calibration=paths["calibration"],
            eval=paths["evaluation"],
            memory_model=memory,
            memory_data=tuple(digests),
            **fields,
        )
        try:
            result = pipeline.build(plan, progress=progress or pipeline.noop_progress)
        except DataError as exc:  # name data given in memory as such, not by its temp file
            message = exc.message
            for purpose, _ in digests:
                message = message.replace(str(paths[purpose]), "(arrays in memory)")
            if message == exc.message:
                raise
            raise DataError(message, exc.hint) from exc
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return Package(Path(result.package).resolve(), result.manifest)


def _plan_fields(options: dict[str, Any]) -> dict[str, Any]:
    """``build(**options)`` -> BuildPlan fields; an unknown option says what it may mean."""
    from edgepack.pipeline import BuildPlan
    from edgepack.targets import parse_enum

    known = [f.name for f in dataclasses.fields(BuildPlan) if f.name not in _RESERVED]
    known += [*_COMPRESSION, *_DISTILL, "input_shape"]
    unknown = [k for k in options if k not in known]
    if unknown:
        close = difflib.get_close_matches(unknown[0], known, n=1)
        raise UsageError(
            f"unknown build option{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}",
            (f"did you mean '{close[0]}'? " if close else "")
            + "options are the long names of `edgepack build --help` with _ for -",
        )
    opts = dict(options)
    fields: dict[str, Any] = {}
    shapes = opts.pop("input_shape", None) or opts.pop("input_shapes", None) or ()
    if shapes:
        fields["input_shapes"] = (shapes,) if isinstance(shapes, str) else tuple(shapes)
    for key, (flag, enum_name) in _ENUMS.items():
        if opts.get(key) is not None:
            fields[key] = parse_enum(flag, opts.pop(key), enum_name)
    if opts.get("fallback_precision") is not None:
        from edgepack.accuracy.fallback import FallbackPrecision

        fields["fallback_precision"] = parse_enum(
            "--fallback-precision", opts.pop("fallback_precision"), FallbackPrecision
        )
    for key in _PATHS:
        if opts.get(key) is not None:
            fields[key] = Path(opts.pop(key))
    if opts.get("factory_args") is not None:
        from edgepack.source import parse_factory_args

        fields["factory_args"] = parse_factory_args(opts.pop("factory_args"))
    if "pretrained" in opts:  # True: the DEFAULT weights; a string: a weights name
        given = opts.pop("pretrained")
        fields["pretrained"] = "DEFAULT" if given is True else (given or None)
    compression = {k: opts.pop(k) for k in (*_COMPRESSION, *_DISTILL) if k in opts}
    if compression:
        fields.update(_compression_fields(compression))
    fields.update(opts)
    return fields


def _compression_fields(given: dict[str, Any]) -> dict[str, Any]:
    from edgepack.release.config import Overrides, compression_fields

    train = given.get("train")
    over = Overrides(
        prune=given.get("prune"),
        prune_scope=given.get("prune_scope"),
        round_to=given.get("round_to"),
        distill=bool(given.get("distill")),
        train=None if train is None else Path(train),
        distill_options=tuple((k, given[k]) for k in _DISTILL if given.get(k) is not None),
    )
    fields = compression_fields(over, None, None)
    return {"prune": fields["prune"], "distill": fields["distill"]}
