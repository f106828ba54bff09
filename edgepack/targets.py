"""Target profiles: device descriptions as data (targets/*.toml), validated by a strict schema.

Adding a board means adding a TOML file. Unknown keys are rejected; an unknown target name is
an error that lists the close names and never picks one for the user.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import sys
from enum import Enum
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from edgepack.errors import ProfileError

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


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)


class DeviceSpec(_Strict):
    arch: Literal["x86_64", "aarch64", "armv7l", "arm64-v8a"]
    cpu: str = ""
    cores: int = Field(ge=1, le=256)
    big_cores: list[int] = Field(default_factory=list)  # CPU ids to pin to (Android big cores)
    ram_mb: int = Field(ge=16)
    accelerator: Literal["none", "edgetpu", "gpu", "npu"] = "none"


class RuntimeSpec(_Strict):
    name: Literal["ai-edge-litert", "tflite-runtime", "benchmark_model"]
    delegate: Delegate = Delegate.XNNPACK
    threads: int = Field(default=1, ge=1, le=64)
    python: str = ""  # the device's Python, for the SSH harness ("python3" when empty)


class QuantizationSpec(_Strict):
    mode: QuantMode
    io_dtype: IODtype = IODtype.FLOAT32
    io_layout: IOLayout = IOLayout.NCHW
    calibration_samples: int = Field(default=200, ge=1)

    @field_validator("io_dtype")
    @classmethod
    def _io(cls, v: IODtype, info: Any) -> IODtype:
        mode = info.data.get("mode")
        if v != IODtype.FLOAT32 and mode != QuantMode.FULL_INT8:
            raise ValueError(f"io_dtype {v.value!r} needs mode 'full-int8'")
        return v


class Budgets(_Strict):
    max_model_kb: float | None = Field(default=None, gt=0)
    max_ram_mb: float | None = Field(default=None, gt=0)
    max_latency_ms: float | None = Field(default=None, gt=0)


class BenchSpec(_Strict):
    transport: Transport
    warmup_runs: int = Field(default=10, ge=0)
    runs: int = Field(default=100, ge=1)
    min_seconds: float = Field(default=0.0, ge=0)
    max_seconds: float = Field(default=60.0, gt=0)


class CompatSpec(_Strict):
    # Rule tables (edgepack/compat/rules/*.toml) checked before the model ships.
    rules: list[Literal["xnnpack", "gpu", "edgetpu"]] = Field(default_factory=list)
    require_full_delegation: bool = False


class TargetProfile(_Strict):
    schema_: int = Field(alias="schema", default=SCHEMA_VERSION)
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")
    description: str = ""
    device: DeviceSpec
    runtime: RuntimeSpec
    quantization: QuantizationSpec
    budgets: Budgets = Budgets()
    bench: BenchSpec
    compat: CompatSpec = CompatSpec()

    @field_validator("schema_")
    @classmethod
    def _schema(cls, v: int) -> int:
        if v != SCHEMA_VERSION:
            raise ValueError(f"schema {v} is not supported (this edgepack reads {SCHEMA_VERSION})")
        return v

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)

    @property
    def sha256(self) -> str:
        """Hash of the resolved profile (stable across formatting and comments)."""
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


def _format_validation(err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"]) or "<root>"
        if e["type"] == "extra_forbidden":
            parts.append(f"unknown key '{loc}'")
        elif e["type"] == "missing":
            parts.append(f"missing key '{loc}'")
        else:
            parts.append(f"'{loc}': {e['msg']}")
    return "; ".join(parts)


def parse_profile(text: str, origin: str) -> TargetProfile:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(
            f"target profile {origin} is not valid TOML: {exc}",
            "check the line named above; `edgepack targets show rpi4` prints a valid profile",
        ) from exc
    try:
        return TargetProfile.model_validate(raw)
    except ValidationError as exc:
        raise ProfileError(
            f"invalid target profile {origin}: {_format_validation(exc)}",
            "compare with `edgepack targets show rpi4`; the schema is in docs/targets.md",
        ) from exc


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
        return parse_profile(p.read_text(encoding="utf-8"), str(p))
    p = targets_dir() / f"{name_or_path}.toml"
    if not p.is_file():
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
