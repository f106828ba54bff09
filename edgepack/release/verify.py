"""`edgepack verify`: is this package what its manifest says, and does it run?

Checks, all of them every time (a report lists every problem, not the first):
- manifest: valid JSON, schema_version, every key of REQUIRED_KEYS;
- files: the sha256 and size of every file listed in manifest["files"]; any other file
  anywhere in the package is flagged, except what edgepack adds after the build and can
  check: bench/*.json benchmark results (JSON of the result schema) and analysis/ tables of
  `edgepack analyze` (its CSV header or JSON shape);
- model: manifest["model_file"] is listed, its hash is the one in manifest["model"], and it
  loads in the LiteRT interpreter and runs once on inputs of the recorded dtype and shape:
  the package's samples of the build data, else random data with integer inputs inside the
  recorded valid ranges (edgepack.default_inputs; token ids must index the embedding table);
- recomputed: every manifest field that can be read back from the package: manifest["model"]
  (size, sha256, I/O, op counts, float compute ops, weight bytes, tensor dtypes),
  metrics.size_bytes, and the quantization mode and I/O dtype as the flatbuffer shows them;
- profile: the recorded profile hashes to the recorded sha256, and matches the built-in
  profile of the same name (or the --target file given for a custom profile).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from edgepack.errors import PackageError, decode_problem
from edgepack.manifest import (
    MANIFEST_NAME,
    MANIFEST_SCHEMA_VERSION,
    REQUIRED_KEYS,
    package_member,
    sha256_file,
)

BENCH_DIR = "bench"
ANALYSIS_DIR = "analysis"


class VerifyError(PackageError):
    """A package failed verification. Exit code 6."""

    exit_code = 6


class CheckStatus(str, Enum):
    PASS = "pass"
    FAIL = "fail"
    SKIP = "skip"


@dataclass
class Check:
    name: str
    status: CheckStatus
    detail: str

    def to_dict(self) -> dict[str, str]:
        return {"check": self.name, "status": self.status.value, "detail": self.detail}


@dataclass
class VerifyReport:
    package: Path
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.status is not CheckStatus.FAIL for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.status is CheckStatus.FAIL]

    def add(self, name: str, ok: bool | None, detail: str) -> None:
        status = CheckStatus.SKIP if ok is None else (CheckStatus.PASS if ok else CheckStatus.FAIL)
        self.checks.append(Check(name, status, detail))

    def to_dict(self) -> dict[str, Any]:
        return {
            "package": str(self.package),
            "ok": self.ok,
            "checks": [c.to_dict() for c in self.checks],
        }

    def raise_if_failed(self) -> None:
        bad = self.failures
        if bad:
            raise VerifyError(
                f"package {self.package} failed {len(bad)} check(s): "
                + "; ".join(f"{c.name}: {c.detail}" for c in bad),
                "do not ship it: rebuild with `edgepack build` (a package is never edited by hand)",
            )


@dataclass
class ReleaseReport:
    """Every package of one or more dist folders, and the checks of their merge."""

    reports: list[VerifyReport]
    checks: list[Check]
    shards: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.reports) and all(
            c.status is not CheckStatus.FAIL for c in self.checks
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "packages": [r.to_dict() for r in self.reports],
            "release": [c.to_dict() for c in self.checks],
            "shards": self.shards,
        }

    def raise_if_failed(self) -> None:
        bad = [f"{r.package.name}: {c.name}: {c.detail}" for r in self.reports for c in r.failures]
        bad += [c.detail for c in self.checks if c.status is CheckStatus.FAIL]
        if bad:
            raise VerifyError(
                f"{len(bad)} check(s) failed: " + "; ".join(bad),
                "do not ship it: every shard's dist folder must be there, each package built "
                "once (rebuild a failed one with `edgepack build --shard I/N`)",
            )


def verify_release(inputs: list[Path], target: str | None = None) -> ReleaseReport:
    """Verify every package of ``inputs`` (dist or package folders, the dist folders of every
    --shard) and check their merge: a package twice with other bytes, missing shards, packages of
    the matrix that are not there (edgepack.release.merge)."""
    from edgepack.release.merge import merge

    merged = merge(inputs)
    checks = [Check("merge", CheckStatus.FAIL, p) for p in merged.problems]
    if merged.shard_count is not None and not merged.problems:
        checks.append(
            Check(
                "shards",
                CheckStatus.PASS,
                f"{len(merged.shards_found)} shard summary(ies) of {merged.shard_count}; "
                f"every package of the matrix is there",
            )
        )
    reports = [verify_package(p, target) for p in merged.packages]
    return ReleaseReport(reports, checks, None if merged.shard_count is None else merged.to_dict())


def verify_package(package: str | Path, target: str | None = None) -> VerifyReport:
    """Run every check; never raises for a bad package (see :meth:`raise_if_failed`)."""
    pkg = Path(package)
    if not pkg.is_dir():
        raise PackageError(
            f"not a package folder: {pkg}", "pass a folder written by `edgepack build`"
        )
    rep = VerifyReport(pkg)
    manifest = _check_manifest(pkg, rep)
    if manifest is None:
        return rep
    _check_files(pkg, manifest, rep)
    _check_model(pkg, manifest, rep)
    _check_recomputed(pkg, manifest, rep)
    _check_profile(manifest, target, rep)
    _check_edgetpu(manifest, rep)
    return rep


NOT_COMPILED = (
    "NOT compiled for the Edge TPU: edgetpu_compiler did not run at build time, so the "
    "model runs on the CPU, not the accelerator (the build's pre-flight is only a prediction)"
)


def _check_edgetpu(manifest: dict[str, Any], rep: VerifyReport) -> None:
    """Edge TPU packages: say plainly whether the model is compiled for the accelerator."""
    tpu = manifest.get("edgetpu")
    if not isinstance(tpu, dict):
        return
    if tpu.get("compiled") is True:
        ok = manifest.get("model_file") == tpu.get("file")
        rep.add(
            "edgetpu",
            ok,
            f"compiled by edgetpu_compiler: {tpu.get('file')}"
            if ok
            else f"the manifest says compiled ({tpu.get('file')}) but model_file is "
            f"{manifest.get('model_file')}",
        )
    else:
        rep.add("edgetpu", None, NOT_COMPILED)


def edgetpu_uncompiled(manifest: dict[str, Any] | None) -> bool:
    """An Edge TPU package whose model was never compiled by edgetpu_compiler."""
    tpu = (manifest or {}).get("edgetpu")
    return isinstance(tpu, dict) and tpu.get("compiled") is not True


def _check_manifest(pkg: Path, rep: VerifyReport) -> dict[str, Any] | None:
    path = pkg / MANIFEST_NAME
    if not path.is_file():
        rep.add("manifest", False, f"no {MANIFEST_NAME}")
        return None
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
        rep.add("manifest", False, f"{MANIFEST_NAME} is not valid JSON ({decode_problem(exc)})")
        return None
    if not isinstance(data, dict):
        rep.add("manifest", False, f"{MANIFEST_NAME} is not a JSON object")
        return None
    version = data.get("schema_version")
    if version != MANIFEST_SCHEMA_VERSION:
        rep.add(
            "manifest",
            False,
            f"schema_version {version!r}, this edgepack reads {MANIFEST_SCHEMA_VERSION}",
        )
        return None
    missing = [k for k in REQUIRED_KEYS if k not in data]
    wrong = [
        k
        for k, t in (("files", dict), ("target", dict), ("model", dict), ("model_file", str))
        if k in data and not isinstance(data[k], t)
    ]
    if missing or wrong:
        rep.add(
            "manifest",
            False,
            "; ".join(
                ([f"missing key(s): {', '.join(missing)}"] if missing else [])
                + ([f"wrong type: {', '.join(wrong)}"] if wrong else [])
            ),
        )
        return None
    rep.add("manifest", True, f"schema_version {version}, {len(REQUIRED_KEYS)} required keys")
    return data


def _check_files(pkg: Path, manifest: dict[str, Any], rep: VerifyReport) -> None:
    listed: dict[str, Any] = manifest["files"]
    bad = []
    for name, meta in sorted(listed.items()):
        p = package_member(pkg, name)
        if p is None:
            bad.append(f"{name}: path outside the package")
            continue
        if not p.is_file():
            bad.append(f"{name}: missing")
            continue
        digest = sha256_file(p)
        if not isinstance(meta, dict) or digest != meta.get("sha256"):
            want = meta.get("sha256", "?") if isinstance(meta, dict) else "?"
            bad.append(f"{name}: sha256 {digest[:12]}... != manifest {str(want)[:12]}...")
        elif meta.get("bytes") not in (None, p.stat().st_size):
            bad.append(f"{name}: {p.stat().st_size} bytes != manifest {meta.get('bytes')}")
    rep.add(
        "files",
        not bad,
        "; ".join(bad) if bad else f"{len(listed)} file(s) match their sha256",
    )
    unlisted = sorted(
        rel
        for rel in (p.relative_to(pkg).as_posix() for p in pkg.rglob("*") if not p.is_dir())
        if rel != MANIFEST_NAME and rel not in listed and not _known_extra(pkg / rel, rel)
    )
    rep.add(
        "unlisted files",
        not unlisted,
        ("not in the manifest: " + ", ".join(unlisted))
        if unlisted
        else f"none (only {BENCH_DIR}/ results and {ANALYSIS_DIR}/ tables added)",
    )


def _known_extra(path: Path, rel: str) -> bool:
    """A file edgepack adds to a built package: a benchmark result or an analysis table."""
    parts = rel.split("/")
    if len(parts) != 2 or path.is_symlink() or not path.is_file():
        return False
    folder, name = parts
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    if folder == BENCH_DIR and name.endswith(".json"):
        from edgepack.bench.results import RESULT_SCHEMA

        doc = _json(text)
        return (
            isinstance(doc, dict)
            and doc.get("schema") == RESULT_SCHEMA
            and isinstance(doc.get("harness"), dict)
            and isinstance(doc.get("package"), dict)
        )
    if folder == ANALYSIS_DIR and name.endswith(".csv"):
        from edgepack.accuracy.analyze import LayerError

        return text.split("\n", 1)[0] == ",".join(LayerError.__dataclass_fields__)
    if folder == ANALYSIS_DIR and name.endswith(".json"):
        doc = _json(text)
        return isinstance(doc, dict) and set(doc) == {"samples", "matched", "unmatched", "layers"}
    return False


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None


def _dtype(name: str) -> str:
    from edgepack.tflite import NUMPY_DTYPE

    return NUMPY_DTYPE.get(name.upper(), name.lower())


def _check_model(pkg: Path, manifest: dict[str, Any], rep: VerifyReport) -> None:
    import numpy as np

    model_file = manifest["model_file"]
    path = package_member(pkg, model_file)
    if model_file not in manifest["files"]:
        rep.add("model", False, f"model_file {model_file} is not listed in files")
        return
    if path is None:
        rep.add("model", False, f"model_file {model_file} is not a path inside the package")
        return
    if not path.is_file():
        rep.add("model", False, f"{model_file} is missing")
        return
    recorded = manifest["model"].get("sha256")
    digest = sha256_file(path)
    if recorded is not None and recorded != digest:
        rep.add("model", False, f"{model_file} sha256 differs from manifest['model']['sha256']")
        return
    from edgepack.runtime import Runner
    from edgepack.tflite import read_model

    try:
        custom = sorted({o.op for o in read_model(path).operators if o.op.startswith("CUSTOM:")})
    except Exception as exc:
        rep.add("model", False, f"{model_file} is not a readable TFLite model: {exc}")
        return
    if custom:  # e.g. the Edge TPU compiler's custom op: runs only with its delegate
        rep.add(
            "model",
            None,
            f"{model_file} holds {', '.join(custom)}: it runs only with that op's delegate "
            "(hashes verified; run it with `edgepack bench` on the device)",
        )
        return
    try:
        runner = Runner(path)
    except Exception as exc:  # the interpreter rejects the file: report, do not crash
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        rep.add("model", False, f"{model_file} does not load in the interpreter: {first[:200]}")
        return
    problems = []
    want_inputs = manifest["model"].get("inputs") or []
    if len(want_inputs) != len(runner.inputs):
        problems.append(f"{len(runner.inputs)} inputs, manifest records {len(want_inputs)}")
    for want, got in zip(want_inputs, runner.inputs, strict=False):
        shape = [int(d) for d in got["shape"]]
        dtype = np.dtype(got["dtype"]).name
        if shape != list(want.get("shape", [])) or dtype != _dtype(str(want.get("dtype", ""))):
            problems.append(
                f"input {want.get('name')}: interpreter {dtype}{shape}, manifest "
                f"{_dtype(str(want.get('dtype')))}{want.get('shape')}"
            )
    if problems:
        rep.add("model", False, "; ".join(problems))
        return
    from edgepack.default_inputs import for_interpreter

    default = manifest.get("default_inputs")
    try:
        xs, fed = for_interpreter(
            runner.inputs, default if isinstance(default, dict) else None, pkg
        )
    except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        rep.add("model", False, f"the recorded default inputs cannot be read: {exc}")
        return
    try:
        runner.interp.allocate_tensors()
        for d, x in zip(runner.inputs, xs, strict=True):
            runner.interp.set_tensor(d["index"], x)
        runner.interp.invoke()
        outs = [runner.interp.get_tensor(d["index"]) for d in runner.outputs]
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        rep.add("model", False, f"{model_file} fails to run: {first[:200]}")
        return
    want_out = manifest["model"].get("outputs") or []
    got_shapes = [list(o.shape) for o in outs]
    if [list(o.get("shape", [])) for o in want_out] != got_shapes:
        rep.add("model", False, f"output shapes {got_shapes} differ from the manifest's")
        return
    if not all(np.isfinite(o.astype(np.float64)).all() for o in outs):
        rep.add("model", False, f"{model_file} produced NaN/inf on a test input")
        return
    ins = ", ".join(
        f"{np.dtype(d['dtype']).name}{[int(v) for v in d['shape']]}" for d in runner.inputs
    )
    on = f" on {fed}" if isinstance(default, dict) else ""
    rep.add("model", True, f"loads and runs once{on} ({ins} -> {got_shapes})")


_SUMMARY_KEYS = (
    "size_bytes",
    "sha256",
    "inputs",
    "outputs",
    "ops",
    "op_count",
    "float_compute_ops",
    "weight_bytes",
    "tensor_dtypes",
)


def readback_mode(info: Any) -> str:
    """The quantization mode a .tflite shows: float16 weights, no integer tensors (float32),
    no float compute (full-int8), else int8 weights with float compute (dynamic-range)."""
    dtypes = {t.dtype for t in info.tensors}
    if "FLOAT16" in dtypes:
        return "float16"
    if not dtypes & {"INT8", "UINT8", "INT16"}:
        return "float32"
    return "dynamic-range" if info.float_compute_ops() else "full-int8"


def _check_recomputed(pkg: Path, manifest: dict[str, Any], rep: VerifyReport) -> None:
    from edgepack.tflite import read_model

    path = package_member(pkg, manifest["model_file"])
    if manifest["model_file"] not in manifest["files"] or path is None or not path.is_file():
        rep.add("recomputed", None, "no model to read back (see the model check)")
        return
    try:
        info = read_model(path)
    except Exception:
        rep.add("recomputed", None, "the model cannot be read (see the model check)")
        return
    summary = info.summary()
    recorded = manifest["model"]
    bad = [
        f"model.{k}: manifest {_short(recorded.get(k))}, model {_short(summary[k])}"
        for k in _SUMMARY_KEYS
        if recorded.get(k) != summary[k]
    ]
    metrics = manifest.get("metrics")
    size = metrics.get("size_bytes") if isinstance(metrics, dict) else None
    if size is not None and size != info.size_bytes:
        bad.append(f"metrics.size_bytes: manifest {size}, model {info.size_bytes}")
    q = manifest.get("quantization")
    q = q if isinstance(q, dict) else {}
    mode, shown = q.get("mode"), readback_mode(info)
    # full-int8 with chosen ops kept in float (the fallback search, or a recipe's kept_float)
    route = q.get("route")
    route = route if isinstance(route, dict) else {}
    kept = route.get("kept_float")
    kept = kept if isinstance(kept, dict) else {}
    if mode == "full-int8" and shown == "dynamic-range" and (q.get("fallback") or kept):
        floats = info.float_compute_ops()
        shown = f"full-int8 with {len(floats)} op(s) kept in float"
        recorded_tensors = kept.get("tensors")
        if not q.get("fallback") and isinstance(recorded_tensors, list):
            # a recipe's kept ops are listed: float compute anywhere else is not what was built
            outside = info.float_compute_ops({str(t) for t in recorded_tensors})
            if outside:
                bad.append(
                    f"quantization.route.kept_float: {len(outside)} float op(s) of the model "
                    f"are not among the recorded ones (first: {outside[0].op})"
                )
    if mode != shown and not shown.startswith(f"{mode} with "):
        bad.append(f"quantization.mode: manifest {mode!r}, the model is {shown}")
    io_dtype = q.get("io_dtype")
    want = {"float32": "FLOAT32", "int8": "INT8", "uint8": "UINT8"}.get(str(io_dtype))
    io = sorted({t.dtype for t in info.input_tensors + info.output_tensors})
    if want is None or any(d != want for d in io if d.startswith(("FLOAT", "INT8", "UINT8"))):
        bad.append(f"quantization.io_dtype: manifest {io_dtype!r}, model I/O {'/'.join(io)}")
    checked = len(_SUMMARY_KEYS) + 3
    rep.add(
        "recomputed",
        not bad,
        "; ".join(bad)
        if bad
        else f"{checked} manifest fields match the model (mode {shown}, I/O {'/'.join(io)})",
    )


def _short(v: Any) -> str:
    text = json.dumps(v, sort_keys=True)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_profile(manifest: dict[str, Any], target: str | None, rep: VerifyReport) -> None:
    from edgepack.errors import EdgepackError
    from edgepack.targets import TargetProfile, builtin_names, load_target

    t = manifest["target"]
    name, recorded, prof = t.get("name"), t.get("sha256"), t.get("profile")
    if not isinstance(prof, dict):
        rep.add("profile", False, "manifest['target']['profile'] is missing")
        return
    try:
        resolved = TargetProfile.from_dict(prof, "in the manifest")
    except EdgepackError as err:
        rep.add("profile", False, err.message)
        return
    if resolved.sha256 != recorded:
        rep.add(
            "profile",
            False,
            f"recorded profile of '{name}' hashes to {resolved.sha256[:12]}..., "
            f"manifest says {str(recorded)[:12]}... (edited manifest?)",
        )
        return
    if target is not None:
        try:
            ref = load_target(target)
        except EdgepackError as err:
            rep.add("profile", False, f"--target {target}: {err.message}")
            return
        what = f"--target {target}"
    elif name in builtin_names():
        ref = load_target(str(name))
        what = f"built-in profile '{name}'"
    else:
        rep.add(
            "profile",
            None,
            f"'{name}' is a custom profile (sha256 {str(recorded)[:12]}...); pass --target "
            "FILE.toml to compare it",
        )
        return
    if ref.sha256 != recorded:
        rep.add(
            "profile",
            False,
            f"{what} has sha256 {ref.sha256[:12]}..., the package was built for "
            f"{str(recorded)[:12]}... (the profile changed since the build)",
        )
        return
    rep.add("profile", True, f"matches {what} ({ref.sha256[:12]}...)")
