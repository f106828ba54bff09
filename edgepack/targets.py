"""Target profiles: device descriptions as data (targets/*.toml), validated by a strict schema.

Adding a board means adding a TOML file. Unknown keys are rejected; an unknown target name is
an error that lists the close names and never picks one for the user.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Literal

from edgepack import schema
from edgepack.errors import ProfileError, decode_problem

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

SCHEMA_VERSION = 1


class QuantMode(str, Enum):
    FLOAT32 = "float32"
    FLOAT16 = "float16"
    DYNAMIC_RANGE = "dynamic-range"
    FULL_INT8 = "full-int8"


class Int8Engine(str, Enum):
    """Who quantizes a full-int8 build: auto tries the calibrator, then ai-edge-quantizer."""

    AUTO = "auto"
    CALIBRATOR = "calibrator"
    AEQ = "aeq"


class IODtype(str, Enum):
    FLOAT32 = "float32"
    INT8 = "int8"
    UINT8 = "uint8"


class IOLayout(str, Enum):
    NCHW = "nchw"  # PyTorch's layout, kept at the model boundary
    NHWC = "nhwc"  # channels-last at the boundary: no TRANSPOSE at the graph edges


class Delegate(str, Enum):
    XNNPACK = "xnnpack"
    NONE = "none"
    GPU = "gpu"
    EDGETPU = "edgetpu"
    NNAPI = "nnapi"


class Transport(str, Enum):
    LOCAL = "local"
    SSH = "ssh"
    ADB = "adb"


@dataclass(frozen=True, kw_only=True)
class DeviceSpec:
    arch: Literal["x86_64", "aarch64", "armv7l", "arm64-v8a"]
    cpu: str = ""
    cores: int = field(metadata={"ge": 1, "le": 256})
    big_cores: list[int] = field(default_factory=list)  # CPU ids to pin to (Android big cores)
    ram_mb: int = field(metadata={"ge": 16})
    accelerator: Literal["none", "edgetpu", "gpu", "npu"] = "none"


@dataclass(frozen=True, kw_only=True)
class RuntimeSpec:
    name: Literal["ai-edge-litert", "tflite-runtime", "benchmark_model"]
    delegate: Delegate = Delegate.XNNPACK
    threads: int = field(default=1, metadata={"ge": 1, "le": 64})
    python: str = ""  # the device's Python, for the SSH harness ("python3" when empty)


@dataclass(frozen=True, kw_only=True)
class QuantizationSpec:
    # The modes a default build tries, best first (``mode = ["full-int8", "dynamic-range"]``,
    # or one mode as a string): the first that passes its own checks and the accuracy guard
    # ships (docs/targets.md). An explicit --quantization means exactly that mode.
    modes: list[QuantMode] = field(
        metadata={"key": "mode", "one_or_list": True, "nonempty": True, "unique": True}
    )
    io_dtype: IODtype = IODtype.FLOAT32
    io_layout: IOLayout = IOLayout.NCHW
    calibration_samples: int = field(default=200, metadata={"ge": 1})

    @property
    def mode(self) -> QuantMode:
        """The preferred mode (the first of the list)."""
        return self.modes[0]

    def _check(self) -> list[str]:
        others = [m.value for m in self.modes if m != QuantMode.FULL_INT8]
        if self.io_dtype != IODtype.FLOAT32 and others:
            return [
                f"quantization.io_dtype': io_dtype {self.io_dtype.value!r} needs mode "
                f"'full-int8' only (the list has {', '.join(repr(m) for m in others)})"
            ]
        return []


@dataclass(frozen=True, kw_only=True)
class Budgets:
    max_model_kb: float | None = field(default=None, metadata={"gt": 0})
    max_ram_mb: float | None = field(default=None, metadata={"gt": 0})
    max_latency_ms: float | None = field(default=None, metadata={"gt": 0})
    # Default accuracy guard of a build given --eval data (the user's gate wins; opting out is
    # explicit): top-1 points with labels, output cosine vs the float model without.
    max_accuracy_drop: float | None = field(default=None, metadata={"ge": 0})
    min_fidelity: float | None = field(default=None, metadata={"gt": 0, "le": 1})


@dataclass(frozen=True, kw_only=True)
class BenchSpec:
    transport: Transport
    warmup_runs: int = field(default=10, metadata={"ge": 0})
    runs: int = field(default=100, metadata={"ge": 1})
    min_seconds: float = field(default=0.0, metadata={"ge": 0})
    max_seconds: float = field(default=60.0, metadata={"gt": 0})


@dataclass(frozen=True, kw_only=True)
class CompatSpec:
    # Rule tables (edgepack/compat/rules/*.toml) checked before the model ships.
    rules: list[Literal["xnnpack", "gpu", "edgetpu"]] = field(default_factory=list)
    require_full_delegation: bool = False


@dataclass(frozen=True, kw_only=True)
class TargetProfile:
    schema_: int = field(default=SCHEMA_VERSION, metadata={"key": "schema"})
    name: str = field(metadata={"pattern": r"^[a-z0-9][a-z0-9._-]*$"})
    description: str = ""
    device: DeviceSpec
    runtime: RuntimeSpec
    quantization: QuantizationSpec
    budgets: Budgets = field(default_factory=Budgets)
    bench: BenchSpec
    compat: CompatSpec = field(default_factory=CompatSpec)

    def _check(self) -> list[str]:
        if self.schema_ != SCHEMA_VERSION:
            return [
                f"schema': {self.schema_} is not supported (this edgepack reads {SCHEMA_VERSION})"
            ]
        return []

    @classmethod
    def from_dict(cls, data: dict[str, Any], origin: str = "<data>") -> TargetProfile:
        """Validate a profile given as data (e.g. the copy kept in a package manifest)."""
        try:
            return schema.build(cls, data)
        except schema.SchemaErrors as exc:
            raise ProfileError(
                f"invalid target profile {origin}: {exc}",
                "compare with `edgepack targets show rpi4`; the schema is in docs/targets.md",
            ) from exc

    def to_dict(self) -> dict[str, Any]:
        return schema.to_dict(self)

    @property
    def sha256(self) -> str:
        """Hash of the resolved profile (stable across formatting and comments)."""
        import hashlib
        import json

        canon = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canon.encode()).hexdigest()


def targets_dir() -> Path:
    """Where built-in profiles live: inside a wheel, or at the top of a source checkout."""
    here = Path(__file__).resolve().parent
    packaged = here / "_data" / "targets"
    if packaged.is_dir():
        return packaged
    return here.parent / "targets"


def builtin_names() -> list[str]:
    return sorted(p.stem for p in targets_dir().glob("*.toml"))


def parse_profile(text: str | bytes, origin: str) -> TargetProfile:
    try:
        raw = tomllib.loads(text.decode("utf-8") if isinstance(text, bytes) else text)
    except (ValueError, RecursionError) as exc:  # TOMLDecodeError, UnicodeDecodeError
        raise ProfileError(
            f"target profile {origin} is not valid TOML: {decode_problem(exc)}",
            "check the line named above; `edgepack targets show rpi4` prints a valid profile",
        ) from exc
    return TargetProfile.from_dict(raw, origin)


def load_target(name_or_path: str) -> TargetProfile:
    """A built-in name (``rpi4``) or a path to a user's TOML file (``./board.toml``)."""
    looks_like_path = name_or_path.endswith(".toml") or "/" in name_or_path
    if looks_like_path:
        p = Path(name_or_path)
        if not p.is_file():
            raise ProfileError(
                f"target profile file not found: {p}",
                "pass a built-in target name (see `edgepack targets list`) or an existing .toml",
            )
        return parse_profile(p.read_bytes(), str(p))
    p = targets_dir() / f"{name_or_path}.toml"
    if not p.is_file():
        import difflib

        names = builtin_names()
        close = difflib.get_close_matches(name_or_path, names, n=3, cutoff=0.4)
        close += [n for n in names if n.startswith(name_or_path) and n not in close]
        if close:
            quoted = " or ".join(f"'{c}'" for c in close[:3])
            hint = f"did you mean {quoted}? `edgepack targets list` shows all targets"
        else:
            hint = "known targets: " + ", ".join(names)
        raise ProfileError(f"unknown target '{name_or_path}'", hint)
    return parse_profile(p.read_text(encoding="utf-8"), p.name)


def list_targets() -> list[TargetProfile]:
    return [load_target(n) for n in builtin_names()]


def parse_enum(flag: str, value: Any, enum_name: str | type[Enum]) -> Any:
    """The user's spelling -> enum (a name in this module: ``QuantMode``, ``IODtype``, ...,
    or an Enum class); an unknown value lists the accepted ones. Shared by the CLI and the
    Python API (which may also pass the enum member itself)."""
    import difflib

    from edgepack.errors import UsageError

    if value is None:
        return None
    enum = globals()[enum_name] if isinstance(enum_name, str) else enum_name
    if isinstance(value, enum):
        return value
    values = [e.value for e in enum]
    if value in values:
        return enum(value)
    close = difflib.get_close_matches(str(value), values, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise UsageError(f"unknown {flag} '{value}'", f"{hint}accepted: {', '.join(values)}")
