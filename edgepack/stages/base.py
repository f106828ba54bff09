"""What stages share: the context they run in and the artifacts they pass along.

A stage is a function ``run(artifact, ctx) -> next_artifact``. It writes NEW files only in
``ctx.stage_dir(<its name>)``, never mutates its input, and calls ``ctx.record(...)`` once
with its parameters, the sha256 of what it wrote and its metrics. The library never prints:
stages report progress through ``ctx.progress``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgepack.manifest import StageRecord, sha256_file


@dataclass(frozen=True)
class InputSpec:
    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}


@dataclass
class TorchModel:
    """A loaded PyTorch model in eval mode, with the example inputs it is traced with."""

    module: Any  # torch.nn.Module (typed Any: torch is imported lazily)
    example_inputs: tuple[Any, ...]
    inputs: tuple[InputSpec, ...]
    source: dict[str, Any]  # what was loaded: spec, weights and their sha256
    exported: Any = None  # a torch.export.ExportedProgram when the source was a .pt2
    name: str = "model"
    # The model as loaded, when this one was compressed from it (pruning, distillation):
    # validation measures the accuracy drop against it.
    reference: Any = None
    factory: Any = None  # the callable that built it (a factory source): keys the cache
    loaded_modules: frozenset[str] = frozenset()  # modules (re)imported by this load
    # How images are turned into this model's input, when the source knows it (keys of
    # edgepack.images.SPEC_KEYS: resize, crop, mean, std, interpolation, channel_order,
    # layout, value_range); None: the user says it (--preprocess, edgepack.toml).
    preprocess: dict[str, Any] | None = None
    tokenizer: str | None = None  # a local folder the model's tokenizer loads from (offline)
    # Names of the outputs in the package's signature (() : litert-torch's output_0, ...).
    output_names: tuple[str, ...] = ()
    # The first output's classes in order, when the source names them (pretrained weights'
    # categories, a Hugging Face id2label): the package's labels.txt unless --labels is given.
    class_names: tuple[str, ...] | None = None


@dataclass(frozen=True)
class ExportedModel:
    """A torch.export ExportedProgram saved as .pt2 (shared by every target of a matrix).

    ``program``: the program itself, for the one conversion of a single-target build in the
    same process (no save/load round trip; ``path`` may then not exist). Never pickled: a
    matrix's build processes get the file.
    """

    path: Path
    inputs: tuple[InputSpec, ...]
    sha256: str
    cache_key: str = ""  # edgepack.cache export key ("": not cached, e.g. a compressed model)
    output_names: tuple[str, ...] = ()  # the signature's output names (): output_0, ...
    program: Any = field(default=None, compare=False, repr=False)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "program": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


@dataclass(frozen=True)
class TFLiteArtifact:
    path: Path
    kind: str  # "float32" for the converted model, else the quantization mode
    io_layout: str = "nchw"
    sha256: str = ""
    # How a quantized model was made (engine, recipe, routes tried); empty for the float model.
    route: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


def noop_progress(msg: str) -> None:
    del msg


@dataclass
class StageContext:
    workdir: Path
    progress: Callable[[str], None] = noop_progress
    seed: int = 0
    records: list[StageRecord] = field(default_factory=list)

    def stage_dir(self, name: str) -> Path:
        d = self.workdir / name
        d.mkdir(parents=True, exist_ok=True)
        return d

    def record(
        self,
        name: str,
        params: dict[str, Any] | None = None,
        outputs: list[Path] | None = None,
        metrics: dict[str, Any] | None = None,
        seconds: float = 0.0,
        cache: dict[str, Any] | None = None,
    ) -> StageRecord:
        rec = StageRecord(
            name=name,
            params=dict(params or {}),
            outputs={p.name: sha256_file(p) for p in (outputs or [])},
            metrics=dict(metrics or {}),
            seconds=round(seconds, 3),
            cache=dict(cache or {}),
        )
        self.records.append(rec)
        return rec

    @contextmanager
    def timed(self) -> Iterator[Callable[[], float]]:
        t0 = time.perf_counter()
        yield lambda: time.perf_counter() - t0
