#!/usr/bin/env python3
"""edgepack's device-side benchmark harness: flags in, one versioned JSON document out.

Standalone on purpose: it imports nothing from edgepack and needs only the standard library,
numpy and one TFLite runtime (ai_edge_litert, else tflite_runtime, else tensorflow.lite).
It runs on Python 3.9+ with numpy 1.x or 2.x, so it works on a bare Raspberry Pi OS.

    python3 edgepack_bench.py --graph model.tflite --num_threads 4 --num_runs 100

Flags follow TFLite's own benchmark_model tool. The document (schema "edgepack.bench/1")
goes to stdout as one line of JSON (and to --output_json when given). Facts the device does
not expose are null, never guessed. Exit codes: 0 ok, 1 the benchmark failed, 2 bad flags,
3 numpy or a TFLite runtime is missing (the document's "hint" says what to pip install).

Timing: the first inference is timed on its own and counts as the first warmup run; then the
remaining warmup runs; then measured runs until at least --num_runs runs AND --min_secs
seconds, stopping early at --max_secs (at least one measured run). Each measured latency is
one interpreter.invoke() timed with time.perf_counter(); inputs are set once beforehand.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time

SCHEMA = "edgepack.bench/1"
TOOL_VERSION = "1.0.0"
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_MISSING = 0, 1, 2, 3
KNOWN_DELEGATES = ("xnnpack", "none", "gpu", "edgetpu", "nnapi")
# Libraries loaded for the named external delegates (Linux names).
EDGETPU_LIBRARY = "libedgetpu.so.1"
GPU_LIBRARY = "libtensorflowlite_gpu_delegate.so"
# ARM "CPU part" ids seen in /proc/cpuinfo on boards without a "model name" line.
ARM_PARTS = {
    "0xd03": "Cortex-A53",
    "0xd04": "Cortex-A35",
    "0xd05": "Cortex-A55",
    "0xd07": "Cortex-A57",
    "0xd08": "Cortex-A72",
    "0xd09": "Cortex-A73",
    "0xd0a": "Cortex-A75",
    "0xd0b": "Cortex-A76",
    "0xd0d": "Cortex-A77",
    "0xd41": "Cortex-A78",
    "0xd44": "Cortex-X1",
    "0xd46": "Cortex-A510",
    "0xd47": "Cortex-A710",
    "0xd4d": "Cortex-A715",
    "0xd80": "Cortex-A520",
    "0xd81": "Cortex-A720",
}


class HarnessError(Exception):
    def __init__(self, message, hint=None, code=EXIT_FAILED):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.code = code


# --------------------------------------------------------------------------- device facts


def _read(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return None


def _cpu_model(cpuinfo):
    fields = {}
    for line in (cpuinfo or "").splitlines():
        if ":" in line:
            key, _, value = line.partition(":")
            fields.setdefault(key.strip().lower(), value.strip())
    for key in ("model name", "cpu model", "processor name"):
        if fields.get(key):
            return fields[key]
    part = fields.get("cpu part", "").lower()
    if part in ARM_PARTS:
        return ARM_PARTS[part]
    for key in ("hardware", "model"):
        if fields.get(key):
            return fields[key]
    return None


def device_facts(np_version):
    cpuinfo = _read("/proc/cpuinfo")
    freq = _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq")
    max_freq = _read("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    board = _read("/proc/device-tree/model")
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = None
    return {
        "machine": platform.machine() or None,
        "cpu_model": _cpu_model(cpuinfo),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "governor": _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
        "freq_khz": int(freq) if freq and freq.isdigit() else None,
        "max_freq_khz": int(max_freq) if max_freq and max_freq.isdigit() else None,
        "board": board.rstrip("\x00") if board else None,
        "hostname": platform.node() or None,
        "python": platform.python_version(),
        "os": platform.platform(),
        "numpy": np_version,
    }


def thermal_zones():
    out = {}
    base = "/sys/class/thermal"
    try:
        names = sorted(n for n in os.listdir(base) if n.startswith("thermal_zone"))
    except OSError:
        return out
    for name in names:
        raw = _read(os.path.join(base, name, "temp"))
        try:
            celsius = int(raw) / 1000.0 if raw is not None else None
        except ValueError:
            celsius = None
        if celsius is None:
            continue
        kind = _read(os.path.join(base, name, "type")) or name
        key = kind if kind not in out else f"{kind}:{name}"
        out[key] = round(celsius, 1)
    return out


def throttled_state():
    """``vcgencmd get_throttled`` on a Raspberry Pi ("0x0" = never throttled), else None."""
    exe = shutil.which("vcgencmd")
    if not exe:
        return None
    try:
        proc = subprocess.run(
            [exe, "get_throttled"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    text = proc.stdout.strip()
    if proc.returncode != 0 or "=" not in text:
        return None
    return text.split("=", 1)[1].strip()


def peak_rss_mb():
    try:
        import resource
    except ImportError:  # not on Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    scale = 1.0 / (1024.0 * 1024.0) if sys.platform == "darwin" else 1.0 / 1024.0
    return round(peak * scale, 2)


def current_rss_mb():
    status = _read("/proc/self/status")
    for line in (status or "").splitlines():
        if line.startswith("VmRSS:"):
            try:
                return round(int(line.split()[1]) / 1024.0, 2)
            except (IndexError, ValueError):
                return None
    return None


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------- runtimes


def install_hint(numpy_only=False, numpy_below_2=False):
    """The exact pip command for this Python on this machine."""
    if numpy_only:
        return "pip install 'numpy<2'" if numpy_below_2 else "pip install numpy"
    litert_ok = sys.version_info >= (3, 10) and platform.machine() in (
        "x86_64",
        "AMD64",
        "aarch64",
        "arm64",
    )
    if litert_ok:
        return "pip install ai-edge-litert"
    return "pip install tflite-runtime 'numpy<2'"


def _has_module(name):
    try:
        import importlib.util

        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def import_numpy():
    try:
        import numpy
    except ImportError as exc:
        tflite_rt = _has_module("tflite_runtime")
        hint = install_hint(numpy_only=True, numpy_below_2=tflite_rt)
        if not tflite_rt and not _has_module("ai_edge_litert") and not _has_module("tensorflow"):
            hint = install_hint()  # the runtime's wheel brings a numpy it works with
        raise HarnessError(
            f"numpy is not installed for {sys.executable} ({exc})", hint, EXIT_MISSING
        ) from exc
    return numpy


class Runtime:
    """The pieces of one TFLite Python runtime the harness uses."""

    def __init__(self, name, version, interpreter_cls, load_delegate, resolver_type):
        self.name = name
        self.version = version
        self.Interpreter = interpreter_cls
        self.load_delegate = load_delegate
        self.OpResolverType = resolver_type


def _major(version):
    return _int_part(version, 0)


def _minor(version):
    return _int_part(version, 1)


def _int_part(version, i):
    try:
        return int(str(version).split(".")[i])
    except (IndexError, ValueError):
        return 0


def _version_of(module, dist):
    v = getattr(module, "__version__", None)
    if v:
        return str(v)
    try:
        from importlib import metadata

        return metadata.version(dist)
    except Exception:
        return None


def import_runtime(np):
    problems = []
    try:
        mod = importlib.import_module("ai_edge_litert.interpreter")
        top = importlib.import_module("ai_edge_litert")
        return Runtime(
            "ai_edge_litert",
            _version_of(top, "ai-edge-litert"),
            mod.Interpreter,
            mod.load_delegate,
            getattr(mod, "OpResolverType", None),
        )
    except ImportError as exc:
        if _has_module("ai_edge_litert"):
            problems.append(f"ai_edge_litert: {exc}")
    try:
        mod = importlib.import_module("tflite_runtime.interpreter")
        top = importlib.import_module("tflite_runtime")
        version = _version_of(top, "tflite-runtime")
        if _major(np.__version__) >= 2 and (_major(version), _minor(version)) <= (2, 14):
            # Every tflite-runtime release (<= 2.14) was built against numpy 1.x: it imports
            # with numpy 2 but fails inside Interpreter() ("_ARRAY_API not found").
            raise HarnessError(
                f"tflite_runtime {version} cannot run with numpy {np.__version__} "
                "(it was built for numpy 1.x)",
                "pip install 'numpy<2'  (or: pip install ai-edge-litert)",
                EXIT_MISSING,
            )
        return Runtime(
            "tflite_runtime",
            _version_of(top, "tflite-runtime"),
            mod.Interpreter,
            mod.load_delegate,
            getattr(mod, "OpResolverType", None),
        )
    except (ImportError, AttributeError) as exc:
        if _has_module("tflite_runtime"):
            problems.append(f"tflite_runtime: {exc}")
            if int(np.__version__.split(".")[0]) >= 2:
                raise HarnessError(
                    f"tflite_runtime cannot load with numpy {np.__version__} "
                    "(it was built for numpy 1.x)",
                    "pip install 'numpy<2'  (or: pip install ai-edge-litert)",
                    EXIT_MISSING,
                ) from exc
    try:
        tf = importlib.import_module("tensorflow")
        lite = tf.lite
        return Runtime(
            "tensorflow",
            _version_of(tf, "tensorflow"),
            lite.Interpreter,
            lite.experimental.load_delegate,
            getattr(lite.experimental, "OpResolverType", None),
        )
    except (ImportError, AttributeError) as exc:
        if _has_module("tensorflow"):
            problems.append(f"tensorflow: {exc}")
    detail = ("; ".join(problems)) if problems else "none of them is installed"
    raise HarnessError(
        f"no TFLite runtime for {sys.executable} "
        f"(tried ai_edge_litert, tflite_runtime, tensorflow.lite: {detail})",
        install_hint(),
        EXIT_MISSING,
    )


# --------------------------------------------------------------------------- graph facts


def _ops(interp):
    try:
        return list(interp._get_ops_details())
    except Exception:
        return None


def delegation_facts(ops):
    """(total_nodes, delegated_nodes, partitions) of subgraph 0 from the node list.

    A delegate replaces each partition of the graph with one DELEGATE node whose inputs are the
    partition's inputs and whose outputs are its outputs; the replaced nodes stay in the node
    list but leave the execution plan. Walking back from a DELEGATE node's outputs through the
    producers of each tensor, stopping at the node's inputs, yields exactly the replaced nodes.
    """
    if ops is None:
        return None, None, None
    original = [op for op in ops if op.get("op_name") != "DELEGATE"]
    delegates = [op for op in ops if op.get("op_name") == "DELEGATE"]
    producer = {}
    for op in original:
        for t in op.get("outputs", []):
            producer[int(t)] = op["index"]
    by_index = {op["index"]: op for op in original}
    taken = set()
    for d in delegates:
        stop = {int(t) for t in d.get("inputs", [])}
        todo = [int(t) for t in d.get("outputs", [])]
        seen = set()
        while todo:
            t = todo.pop()
            if t in seen or t in stop:
                continue
            seen.add(t)
            node = producer.get(t)
            if node is None or node in taken:
                continue
            taken.add(node)
            todo.extend(int(x) for x in by_index[node].get("inputs", []) if int(x) >= 0)
    return len(original), len(taken), len(delegates)


# --------------------------------------------------------------------------- inputs


def make_inputs(np, interp, input_path):
    details = interp.get_input_details()
    rng = np.random.default_rng(0)
    arrays = []
    loaded = None
    if input_path:
        try:
            loaded = np.load(input_path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise HarnessError(
                f"cannot read input data {input_path}: {exc}",
                "pass a .npy (one input) or .npz (one array per input) file",
                EXIT_USAGE,
            ) from exc
    names = input_names(interp, details) if hasattr(loaded, "files") else []
    for pos, d in enumerate(details):
        shape = tuple(int(s) if int(s) > 0 else 1 for s in d["shape"])
        dtype = np.dtype(d["dtype"])
        if loaded is None:
            if dtype.kind == "f":
                arrays.append(rng.uniform(-1.0, 1.0, shape).astype(dtype))
            elif dtype.kind in "iu":
                info = np.iinfo(dtype)
                lo, hi = max(int(info.min), -128), min(int(info.max), 255)
                arrays.append(rng.integers(lo, hi + 1, shape).astype(dtype))
            elif dtype.kind == "b":
                arrays.append(rng.integers(0, 2, shape).astype(dtype))
            else:
                arrays.append(np.zeros(shape, dtype=dtype))
            continue
        if hasattr(loaded, "files"):  # .npz: by input name, else by position
            x = _npz_array(loaded, pos, details, names)
        else:
            if len(details) != 1:
                raise HarnessError(
                    f"a .npy file holds one array, the model has {len(details)} inputs",
                    "use a .npz with one array per model input",
                    EXIT_USAGE,
                )
            x = loaded
        if tuple(x.shape) != shape and tuple(x.shape[1:]) == shape[1:] and x.shape[0] >= 1:
            x = x[: shape[0]]  # a stack of samples: use the first batch
        if tuple(x.shape) != shape:
            raise HarnessError(
                f"input data for input {pos} has shape {list(x.shape)}, "
                f"the model wants {list(shape)}",
                "save an array of exactly the model's input shape",
                EXIT_USAGE,
            )
        if x.dtype != dtype:
            scale, zero = d.get("quantization", (0.0, 0))
            if dtype.kind in "iu" and x.dtype.kind == "f" and scale:
                info = np.iinfo(dtype)
                q = np.round(x.astype(np.float64) / scale + zero)
                x = np.clip(q, info.min, info.max).astype(dtype)
            else:
                x = x.astype(dtype)
        arrays.append(np.ascontiguousarray(x))
    return details, arrays


def input_names(interp, details):
    """Every name an input goes by, per input in ``details`` order, the preferred first: its
    signature name (the model's argument name, e.g. ``input_ids``), its tensor name without
    the converter's ``serving_default_`` prefix and ``:0`` suffix, its tensor name."""
    by_index = {}
    try:
        for key in interp.get_signature_list():
            runner_details = interp.get_signature_runner(key).get_input_details()
            for sig_name, d in runner_details.items():
                by_index.setdefault(d["index"], []).append(sig_name)
    except (AttributeError, ValueError, RuntimeError):  # an old runtime or no signature
        pass
    out = []
    for d in details:
        name = d.get("name", "")
        short = name.split(":")[0]
        if short.startswith("serving_default_"):
            short = short[len("serving_default_") :]
        out.append([*by_index.get(d["index"], []), short, name])
    return out


def _npz_array(loaded, pos, details, names):
    """The .npz array for input ``pos``: by name when the file names any input (then every
    input must be named: a half-named file is ambiguous), else by position (np.savez's
    ``arr_0``, ``arr_1``, ..., or a single-input model's first array)."""
    keys = list(loaded.files)
    by_name = [next((k for k in keys if k in n), None) for n in names]
    wanted = "np.savez(f, " + ", ".join(n[0] + "=..." for n in names) + ")"
    if any(k is not None for k in by_name):
        if by_name[pos] is None:
            raise HarnessError(
                f"input data has no array named {names[pos][0]} (input {pos}); "
                f"its arrays: {', '.join(keys)}",
                "name one array per model input: " + wanted,
                EXIT_USAGE,
            )
        return loaded[by_name[pos]]
    if len(details) > 1 and keys != [f"arr_{i}" for i in range(len(keys))]:
        raise HarnessError(
            f"input data arrays ({', '.join(keys)}) name none of the model's "
            f"{len(details)} inputs ({', '.join(n[0] for n in names)})",
            "name one array per model input: " + wanted + ", or save them unnamed in input order",
            EXIT_USAGE,
        )
    if pos >= len(keys):
        raise HarnessError(
            f"input data has {len(keys)} arrays, the model has {len(details)} inputs",
            "store one array per model input in the .npz",
            EXIT_USAGE,
        )
    return loaded[keys[pos]]


# --------------------------------------------------------------------------- benchmark


def percentile(sorted_values, q):
    """Linear interpolation between closest ranks (numpy's default), ``q`` in [0, 100].

    A copy of edgepack.runtime.percentile (this file imports nothing from edgepack); a test
    checks that both give identical values."""
    if not sorted_values:
        return None
    k = (len(sorted_values) - 1) * q / 100.0
    lo = int(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


def summarize(latencies):
    n = len(latencies)
    if n == 0:
        return {
            k: None
            for k in (
                "mean_ms",
                "std_ms",
                "min_ms",
                "p50_ms",
                "p90_ms",
                "p99_ms",
                "max_ms",
                "throughput_ips",
            )
        } | {"count": 0}
    s = sorted(latencies)
    mean = sum(s) / n
    var = sum((x - mean) ** 2 for x in s) / n
    return {
        "count": n,
        "mean_ms": round(mean, 6),
        "std_ms": round(var**0.5, 6),
        "min_ms": round(s[0], 6),
        "p50_ms": round(percentile(s, 50), 6),
        "p90_ms": round(percentile(s, 90), 6),
        "p99_ms": round(percentile(s, 99), 6),
        "max_ms": round(s[-1], 6),
        "throughput_ips": round(1000.0 * n / sum(s), 3) if sum(s) > 0 else None,
    }


def delegate_library(delegate):
    """The library an external delegate is loaded from, or None for xnnpack / none."""
    if delegate in ("xnnpack", "none"):
        return None
    if delegate == "nnapi":
        raise HarnessError(
            "the NNAPI delegate is not available from Python",
            "benchmark Android devices with --serial (adb + benchmark_model)",
            EXIT_USAGE,
        )
    return {"edgetpu": EDGETPU_LIBRARY, "gpu": GPU_LIBRARY}.get(delegate, delegate)


def load_external(rt, delegate, library):
    try:
        return rt.load_delegate(library)
    except (ValueError, OSError, RuntimeError) as exc:
        hints = {
            "edgetpu": "install the Edge TPU runtime (Debian package libedgetpu1-std) "
            "and plug in the accelerator",
            "gpu": "build or install libtensorflowlite_gpu_delegate.so and pass its path "
            "with --delegate",
        }
        raise HarnessError(
            f"cannot load the {delegate} delegate from {library}: {exc}",
            hints.get(
                delegate,
                "check that the file is a TFLite external delegate "
                "built for this machine's architecture",
            ),
        ) from exc


def new_interpreter(rt, graph, threads, delegates=None, defaults=True):
    kwargs = {"model_path": graph, "num_threads": threads}
    if not defaults and rt.OpResolverType is not None:
        kwargs["experimental_op_resolver_type"] = (
            rt.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        )
    if delegates:
        kwargs["experimental_delegates"] = delegates
    try:
        interp = rt.Interpreter(**kwargs)
        interp.allocate_tensors()
    except (ValueError, RuntimeError, SystemError) as exc:
        raise HarnessError(
            f"the runtime cannot load {os.path.basename(graph)}: {exc}",
            "check that the model was built for this runtime version and delegate",
        ) from exc
    return interp


def probe_external(rt, graph, threads, delegate, library):
    """(total, delegated, partitions) of the external delegate ALONE.

    The timed interpreter also gets the runtime's default delegate (XNNPACK) for the nodes
    the external one leaves, as applications do; its node counts would mix the two. This
    probe applies only the requested delegate to a throw-away interpreter.
    """
    if rt.OpResolverType is None:
        return None
    probe = new_interpreter(rt, graph, threads, [load_external(rt, delegate, library)], False)
    facts = delegation_facts(_ops(probe))
    del probe
    return facts


def run_benchmark(args, np, rt, doc):
    graph = args.graph
    if not os.path.isfile(graph):
        raise HarnessError(
            f"model file not found: {graph}", "pass --graph model.tflite", EXIT_USAGE
        )
    doc["model"] = {"sha256": sha256_file(graph), "bytes": os.path.getsize(graph)}
    if args.pin_cores:
        try:
            os.sched_setaffinity(0, set(args.pin_cores))
        except (AttributeError, OSError) as exc:
            raise HarnessError(
                f"cannot pin to cores {args.pin_cores}: {exc}",
                "pass CPU numbers that exist on this device",
                EXIT_USAGE,
            ) from exc
    doc["memory"]["rss_before_load_mb"] = current_rss_mb()

    library = delegate_library(args.delegate)
    external = (
        probe_external(rt, graph, args.num_threads, args.delegate, library) if library else None
    )

    t0 = time.perf_counter()
    loaded = [load_external(rt, args.delegate, library)] if library else None
    interp = new_interpreter(rt, graph, args.num_threads, loaded, args.delegate != "none")
    doc["init_ms"] = round((time.perf_counter() - t0) * 1000.0, 6)
    doc["delegate"]["library"] = library

    details, arrays = make_inputs(np, interp, args.input_data)
    for d, x in zip(details, arrays):  # noqa: B905 - zip(strict=) needs Python 3.10
        interp.set_tensor(d["index"], x)

    invoke = interp.invoke
    clock = time.perf_counter
    t0 = clock()
    invoke()
    doc["first_inference_ms"] = round((clock() - t0) * 1000.0, 6)
    warm = []
    for _ in range(max(0, args.warmup_runs - 1)):
        t0 = clock()
        invoke()
        warm.append((clock() - t0) * 1000.0)
    doc["warmup_mean_ms"] = round(sum(warm) / len(warm), 6) if warm else None

    # Delegation: nodes in the graph vs nodes taken by DELEGATE kernels (after the first
    # invoke, when every lazily applied delegate is in place). "executed" counts every
    # delegate of the timed graph (an external one plus the default XNNPACK for the rest).
    total, taken, parts = delegation_facts(_ops(interp))
    doc["delegate"]["executed"] = {"delegated_nodes": taken, "partitions": parts}
    requested = args.delegate
    if external is not None:
        total, taken, parts = external
    elif library:
        doc["warnings"].append(
            "this runtime cannot turn off its default delegate: the node counts include it"
        )
    doc["delegate"].update(
        {
            "total_nodes": total,
            "delegated_nodes": taken if requested != "none" else 0,
            "partitions": parts if requested != "none" else 0,
            "applied": bool(taken) if taken is not None else None,
        }
    )
    if requested == "none":
        doc["delegate"]["applied"] = False
        if parts:
            doc["warnings"].append(
                "this runtime applied a default delegate although --delegate none was asked "
                "(it has no OpResolverType to turn it off)"
            )
    elif taken == 0:
        doc["warnings"].append(
            f"the {requested} delegate was requested but took no node of the graph"
        )

    latencies = []
    runs, min_s, max_s = args.num_runs, args.min_secs, args.max_secs
    start = clock()
    while True:
        t0 = clock()
        invoke()
        t1 = clock()
        latencies.append((t1 - t0) * 1000.0)
        elapsed = t1 - start
        if len(latencies) >= runs and elapsed >= min_s:
            break
        if elapsed >= max_s:
            if len(latencies) < runs:
                doc["warnings"].append(
                    f"stopped after {len(latencies)} of {runs} runs at --max_secs {max_s}"
                )
            break
    doc["latencies_ms"] = [round(x, 6) for x in latencies]
    doc["stats"] = summarize(latencies)
    doc["wall_s"] = round(clock() - start, 6)
    out = interp.get_output_details()
    doc["outputs"] = [
        {
            "name": o.get("name"),
            "shape": [int(s) for s in o["shape"]],
            "dtype": np.dtype(o["dtype"]).name,
        }
        for o in out
    ]


def empty_document(args):
    return {
        "schema": SCHEMA,
        "tool": {"name": "edgepack_bench", "version": TOOL_VERSION},
        "runtime": {"name": None, "version": None},
        "model": {"sha256": None, "bytes": None},
        "config": {
            "threads": args.num_threads,
            "warmup_runs": args.warmup_runs,
            "runs": args.num_runs,
            "min_seconds": args.min_secs,
            "max_seconds": args.max_secs,
            "delegate": args.delegate,
            "input": "file" if args.input_data else "random",
            "pin_cores": list(args.pin_cores or []),
        },
        "init_ms": None,
        "first_inference_ms": None,
        "latencies_ms": [],
        "stats": summarize([]),
        "memory": {"peak_rss_mb": None},
        "delegate": {
            "requested": args.delegate,
            "applied": None,
            "delegated_nodes": None,
            "total_nodes": None,
            "partitions": None,
        },
        "device": None,
        "thermal": {"before": {}, "after": {}, "throttled": None},
        "errors": [],
        "warnings": [],
        "hint": None,
    }


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="edgepack_bench.py",
        description="Benchmark a .tflite model with a Python TFLite runtime; JSON to stdout.",
    )
    p.add_argument("--graph", required=True, help="path to the .tflite model")
    p.add_argument("--num_threads", type=int, default=1)
    p.add_argument("--warmup_runs", type=int, default=10)
    p.add_argument("--num_runs", type=int, default=100)
    p.add_argument("--min_secs", type=float, default=0.0)
    p.add_argument("--max_secs", type=float, default=60.0)
    p.add_argument(
        "--delegate",
        default="xnnpack",
        help="xnnpack | none | edgetpu | gpu | nnapi | path to an external delegate .so",
    )
    p.add_argument("--input_data", default=None, help=".npy or .npz input (default: random)")
    p.add_argument("--output_json", default=None, help="also write the document here")
    p.add_argument("--pin_cores", default="", help="comma-separated CPU ids to run on")
    p.add_argument("--version", action="version", version="edgepack_bench " + TOOL_VERSION)
    args = p.parse_args(argv)
    problems = []
    if args.num_threads < 1:
        problems.append("--num_threads must be >= 1")
    if args.num_runs < 1:
        problems.append("--num_runs must be >= 1")
    if args.warmup_runs < 0:
        problems.append("--warmup_runs must be >= 0")
    if args.min_secs < 0 or args.max_secs <= 0:
        problems.append("--min_secs must be >= 0 and --max_secs > 0")
    try:
        args.pin_cores = [int(c) for c in args.pin_cores.split(",") if c.strip()]
    except ValueError:
        problems.append("--pin_cores must be comma-separated integers")
    if problems:
        p.error("; ".join(problems))
    return args


def emit(doc, output_json):
    text = json.dumps(doc, sort_keys=True, allow_nan=False)
    if output_json:
        with open(output_json, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    doc = empty_document(args)
    doc["thermal"]["before"] = thermal_zones()
    code = EXIT_OK
    np = None
    try:
        np = import_numpy()
        rt = import_runtime(np)
        doc["runtime"] = {"name": rt.name, "version": rt.version}
        run_benchmark(args, np, rt, doc)
    except HarnessError as err:
        doc["errors"].append(err.message)
        doc["hint"] = err.hint
        code = err.code
        sys.stderr.write(f"edgepack_bench: error: {err.message}\n")
        if err.hint:
            sys.stderr.write(f"edgepack_bench: hint: {err.hint}\n")
    except Exception as exc:  # a bug or a runtime failure we did not foresee: still one document
        import traceback

        traceback.print_exc()
        doc["errors"].append(f"unexpected {type(exc).__name__}: {exc}")
        doc["hint"] = "report this with the traceback above (stderr of the harness)"
        code = EXIT_FAILED
        sys.stderr.write(f"edgepack_bench: error: unexpected {type(exc).__name__}: {exc}\n")
    doc["thermal"]["after"] = thermal_zones()
    doc["thermal"]["throttled"] = throttled_state()
    doc["memory"]["peak_rss_mb"] = peak_rss_mb()
    doc["device"] = device_facts(getattr(np, "__version__", None))
    emit(doc, args.output_json)
    return code


if __name__ == "__main__":
    sys.exit(main())
