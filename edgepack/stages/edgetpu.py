"""Stage "edgetpu_compile": run Coral's edgetpu_compiler when it is installed.

edgetpu_compiler is a closed-source binary for x86-64 Linux only (Coral's apt repository,
package ``edgetpu-compiler``). When it is on PATH this stage compiles the full-int8 model into
``<model>_edgetpu.tflite`` in the stage folder and parses the compiler's report (ops mapped / not
mapped, on-chip and off-chip memory) for the manifest. When it is missing, the stage returns no
artifact and a note saying how to get it; :func:`require_compiler` turns that into an error
for ``--require-edgetpu-compiler``.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgepack.compat.edgetpu_log import parse_compiler_log
from edgepack.errors import CompatibilityError
from edgepack.manifest import sha256_file
from edgepack.stages.base import StageContext, TFLiteArtifact

NAME = "edgetpu_compile"
COMPILER = "edgetpu_compiler"
DEFAULT_TIMEOUT_S = 180
HOW_TO_GET = (
    "edgetpu_compiler runs on x86-64 Linux only: install the 'edgetpu-compiler' package from "
    "Coral's apt repository (see coral.ai/docs/edgetpu/compiler), or compile the packaged "
    "model.tflite on such a machine"
)


@dataclass(frozen=True)
class EdgeTPUCompileResult:
    artifact: TFLiteArtifact | None  # the *_edgetpu.tflite, None when the compiler is absent
    log: dict[str, Any] = field(default_factory=dict)  # parsed compiler report
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"compiled": self.artifact is not None, "log": self.log}
        if self.artifact is not None:
            d["file"] = self.artifact.path.name
        if self.note:
            d["note"] = self.note
        return d


def find_compiler() -> str | None:
    return shutil.which(COMPILER)


def require_compiler(required: bool) -> str | None:
    """The compiler's path; raises when ``required`` (--require-edgetpu-compiler) and absent."""
    path = find_compiler()
    if path is None and required:
        raise CompatibilityError(
            f"{COMPILER} is not on PATH but --require-edgetpu-compiler was given",
            HOW_TO_GET + "; or build without --require-edgetpu-compiler to package the "
            "uncompiled model",
        )
    return path


def _tail(text: str, lines: int = 5) -> str:
    return " | ".join(line for line in text.strip().splitlines()[-lines:] if line.strip())


def run(
    model: TFLiteArtifact, ctx: StageContext, timeout_s: int = DEFAULT_TIMEOUT_S
) -> EdgeTPUCompileResult:
    compiler = find_compiler()
    if compiler is None:
        note = f"{COMPILER} not found on PATH: packaged the uncompiled model. {HOW_TO_GET}"
        ctx.record(NAME, params={"compiler": None}, metrics={"compiled": False, "note": note})
        return EdgeTPUCompileResult(artifact=None, note=note)
    out_dir = ctx.stage_dir(NAME)
    argv = [
        compiler,
        "--out_dir",
        str(out_dir),
        "--show_operations",
        "--timeout_sec",
        str(timeout_s),
        str(model.path),
    ]
    ctx.progress(f"{NAME}: {model.path.name}")
    with ctx.timed() as elapsed:
        try:
            proc = subprocess.run(
                argv, capture_output=True, text=True, timeout=timeout_s + 30, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise CompatibilityError(
                f"{COMPILER} did not finish within {timeout_s + 30} s on {model.path.name}",
                "large activations make the compiler slow; try a smaller input size",
            ) from exc
    text = proc.stdout + ("\n" + proc.stderr if proc.stderr else "")
    log = parse_compiler_log(text)
    expected = out_dir / f"{model.path.stem}_edgetpu.tflite"
    if proc.returncode != 0 or not expected.is_file():
        raise CompatibilityError(
            f"{COMPILER} failed on {model.path.name} (exit {proc.returncode}): {_tail(text)}",
            "run `edgepack check` on the model to see which ops the Edge TPU cannot take",
        )
    log_file = out_dir / f"{model.path.stem}_edgetpu.log"
    if log_file.is_file() and "operations" not in log:
        extra = parse_compiler_log(log_file.read_text(encoding="utf-8", errors="replace"))
        log.update({k: v for k, v in extra.items() if k not in log})
    for key in ("input_model", "output_model", "operation_log"):  # no machine paths
        if key in log:
            log[key] = Path(log[key]).name
    artifact = TFLiteArtifact(
        path=expected, kind=model.kind, io_layout=model.io_layout, sha256=sha256_file(expected)
    )
    outputs = [expected] + ([log_file] if log_file.is_file() else [])
    ctx.record(
        NAME,
        params={"compiler": log.get("compiler_version"), "argv": ["edgetpu_compiler", *argv[1:-1]]},
        outputs=outputs,
        # compile time is not deterministic: it stays in the result, not in the manifest stage
        metrics={k: v for k, v in log.items() if k not in ("operations", "compile_ms")},
        seconds=elapsed(),
    )
    return EdgeTPUCompileResult(artifact=artifact, log=log)
