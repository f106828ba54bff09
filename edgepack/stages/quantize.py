"""Stage `quantize`: the float .tflite to what the target wants.

Routes, chosen by measurement (docs/quantization.md, from the project's research notes):
- float16:       ai-edge-quantizer, float casting of weights (FP16 weights, FP32 compute)
- dynamic-range: ai-edge-quantizer ``dynamic_wi8_afp32`` (int8 per-channel weights,
                 activations quantized on the fly)
- full-int8:     a ranked list of routes (``--int8-engine auto``, the default):
                 1. the TFLite post-training calibrator shipped in ai_edge_litert, min/max
                    calibration: an all-int8 graph with float, int8 or uint8 I/O, and 3-8x less
                    output error than ai-edge-quantizer's default moving-average calibration;
                 2. ai-edge-quantizer ``static_wi8_ai8`` with min/max calibration (the driver
                    of :mod:`edgepack.accuracy.fallback`, integer I/O by
                    :mod:`edgepack.accuracy.io_adapter`), when the calibrator leaves ops in
                    float (PADV2 after a padded max-pool) or fails on an op.
                 3. transformer encoders (an embedding lookup, softmax or LayerNorm in the
                    graph), when 1 and 2 leave float ops: ai-edge-quantizer with the encoder
                    recipe (:mod:`edgepack.accuracy.recipes`): int8 embedding table with a
                    dequantizing lookup, LayerNorm statistics and softmax kept in float, all
                    else int8. Not pure full-int8: ``route.kept_float`` lists those ops, and a
                    float op outside them still refuses the route.
                 The route record names the engine used and why each earlier one was refused.
The result is always read back from the flatbuffer: the mode's promises (no float compute
in full-int8 outside a recipe's named ops, the requested I/O dtype) are checked, never assumed.
"""

from __future__ import annotations

import re
import shutil
from typing import Any

import numpy as np

from edgepack._quiet import quiet_native
from edgepack.data import Dataset
from edgepack.errors import DataError, ModelLoadError, QuantizationError
from edgepack.stages.base import StageContext, TFLiteArtifact
from edgepack.targets import Int8Engine, IODtype, QuantMode
from edgepack.tflite import ModelInfo, read_model, read_model_bytes

NAME = "quantize"

FP16_RECIPE: list[dict[str, Any]] = [
    {
        "regex": ".*",
        "operation": "*",
        "algorithm_key": "float_casting",
        "op_config": {
            "weight_tensor_config": {"num_bits": 16, "dtype": "FLOAT"},
            "compute_precision": "FLOAT",
            "explicit_dequantize": True,
        },
    }
]


def to_boundary_layout(x: np.ndarray, io_layout: str) -> np.ndarray:
    """Samples in PyTorch layout (N, C, H, W) -> the converted model's layout."""
    if io_layout == "nhwc" and x.ndim == 4:
        return np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    return x


def cast_to_model_inputs(model_bytes: bytes, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """Integer inputs to the dtype the converted model takes; float inputs are left alone."""
    from edgepack.runtime import cast_inputs

    return cast_inputs(read_model_bytes(model_bytes), inputs)


def _calibrate_full_int8(
    float_bytes: bytes, data: Dataset, io_dtype: IODtype, io_layout: str, batch: int
) -> bytes:
    from ai_edge_litert import _pywrap_tensorflow_lite_calibration_wrapper as cw

    # The wrapper does not own its buffer: `model` must stay alive until QuantizeModel returns.
    model = bytes(float_bytes)
    wrapper = cw.CalibrationWrapper(model, [], [])
    wrapper.Prepare()
    inputs = [to_boundary_layout(x, io_layout) for x in data.inputs]
    inputs = cast_to_model_inputs(float_bytes, inputs)
    n = (len(data) // batch) * batch
    for start in range(0, n, batch):
        wrapper.FeedTensor([np.ascontiguousarray(x[start : start + batch]) for x in inputs])
    io_num = np.dtype(io_dtype.value).num
    out = wrapper.QuantizeModel(
        io_num, io_num, False, np.dtype(np.int8).num, np.dtype(np.int32).num, False, False
    )
    result = bytes(out)
    del model
    return result


def _aeq(float_bytes: bytes, recipe: Any) -> bytes:
    from ai_edge_quantizer import quantizer

    q = quantizer.Quantizer(bytearray(float_bytes))
    q.load_quantization_recipe(recipe)
    return bytes(q.quantize(enable_progress_report=False).quantized_model)


def _aeq_full_int8(
    float_bytes: bytes,
    data: Dataset,
    io_dtype: IODtype,
    io_layout: str,
    base: tuple[int, ...] = (),
) -> bytes:
    """ai-edge-quantizer static int8 through the fallback search's driver: nothing kept float,
    or the ops of ``base`` (the encoder recipe's). Calibration runs once for both."""
    from edgepack.accuracy.fallback import Searcher

    inputs = [to_boundary_layout(x, io_layout) for x in data.inputs]
    return Searcher(float_bytes, inputs, io_dtype.value, base=base).quantize(())


INT8_ROUTES: dict[Int8Engine, dict[str, Any]] = {
    Int8Engine.CALIBRATOR: {
        "engine": "ai-edge-litert calibrator",
        "calibration": "min-max",
        "weights": "int8 per-channel symmetric",
        "activations": "int8 per-tensor asymmetric",
        "bias": "int32",
        "allow_float": False,
    },
    Int8Engine.AEQ: {
        "engine": "ai-edge-quantizer",
        "recipe": "static_wi8_ai8",
        "calibration": "min-max (qsv_utils.min_max_update, one pass)",
        "weights": "int8 per-channel symmetric",
        "activations": "int8 per-tensor asymmetric",
        "bias": "int32",
    },
}


# Route 3 of ai-edge-quantizer, for transformer encoders (edgepack.accuracy.recipes): tried
# after the all-int8 routes leave float compute ops, when the graph has an embedding lookup,
# softmax or LayerNorm. Float only where the recipe says; anything else still refuses it.
ENCODER_ROUTE: dict[str, Any] = {
    "engine": "ai-edge-quantizer",
    "recipe": "static_wi8_ai8 + encoder recipe",
    "calibration": "min-max (qsv_utils.min_max_update, one pass)",
    "weights": "int8 per-channel symmetric (embedding table: int8 per row, dequantizing lookup)",
    "activations": "int8 per-tensor asymmetric; float in the ops kept_float names",
    "bias": "int32",
}
ENCODER = "aeq-encoder"


def int8_order(engine: Int8Engine) -> list[Int8Engine]:
    """The all-int8 routes to try, best first (the encoder recipe comes after them)."""
    if engine == Int8Engine.AUTO:
        return [Int8Engine.CALIBRATOR, Int8Engine.AEQ]
    return [engine]


def _routes(engine: Int8Engine, float_info: ModelInfo) -> list[Int8Engine | str]:
    """Every full-int8 route to try: the all-int8 ones, then the encoder recipe where it
    applies (``--int8-engine auto`` or ``aeq``)."""
    from edgepack.accuracy.recipes import encoder_recipe

    order: list[Int8Engine | str] = list(int8_order(engine))
    if engine != Int8Engine.CALIBRATOR and encoder_recipe(float_info) is not None:
        order.append(ENCODER)
    return order


def _route_info(key: Int8Engine | str) -> dict[str, Any]:
    return ENCODER_ROUTE if key == ENCODER else INT8_ROUTES[Int8Engine(key)]


def kept_float_note(route: dict[str, Any]) -> str:
    """'full-int8 with 65 ops kept in float (LayerNorm statistics 52, ...)', or 'full-int8'."""
    kept = route.get("kept_float")
    if not kept:
        return "full-int8"
    parts = ", ".join(f"{k} {v}" for k, v in kept["by_reason"].items())
    return (
        f"full-int8 with {kept['ops']} ops kept in float by the {kept['recipe']} recipe ({parts})"
    )


def route_for(mode: QuantMode, engine: Int8Engine = Int8Engine.CALIBRATOR) -> dict[str, Any]:
    if mode == QuantMode.FULL_INT8:
        return dict(INT8_ROUTES[int8_order(engine)[0]])
    if mode == QuantMode.DYNAMIC_RANGE:
        return {
            "engine": "ai-edge-quantizer",
            "recipe": "dynamic_wi8_afp32",
            "weights": "int8 per-channel",
            "activations": "float32 (int8 on the fly)",
        }
    if mode == QuantMode.FLOAT16:
        return {
            "engine": "ai-edge-quantizer",
            "recipe": "float_casting fp16",
            "weights": "float16",
            "activations": "float32",
        }
    return {"engine": "none"}


def check_result(
    info: ModelInfo, mode: QuantMode, io_dtype: IODtype, intended: frozenset[str] = frozenset()
) -> None:
    """Raise if the written model does not keep the mode's promises."""
    check_ranges(info)
    check_route(info, mode, io_dtype, intended)


def check_route(
    info: ModelInfo, mode: QuantMode, io_dtype: IODtype, intended: frozenset[str] = frozenset()
) -> None:
    """The promises another route may keep: I/O dtype, no float compute in full-int8 except
    in the ops a recipe keeps in float on purpose (``intended``: their output tensor names).
    A float op outside them is an accidental leftover and refuses the route."""
    want = {"float32": "FLOAT32", "int8": "INT8", "uint8": "UINT8"}[io_dtype.value]
    io = info.input_tensors + info.output_tensors
    wrong = [
        f"{t.name}: {t.dtype}"
        for t in io
        if t.dtype != want and t.dtype.startswith(("FLOAT", "INT8", "UINT8"))
    ]
    if wrong:
        raise QuantizationError(
            f"the quantized model's I/O is not {io_dtype.value}: {', '.join(wrong)}",
            "this is a converter limitation for this model; try --io-dtype float32",
        )
    if mode == QuantMode.FULL_INT8:
        floats = info.float_compute_ops(intended)
        if floats:
            names = sorted({o.op for o in floats})
            outside = " outside its recipe's float ops" if intended else ""
            raise QuantizationError(
                f"full-int8 left {len(floats)} op(s) computing in float{outside}: "
                f"{', '.join(names)}",
                "use --quantization dynamic-range, or --auto-fallback to keep chosen ops in float",
            )


def check_ranges(info: ModelInfo, calibration: Dataset | None = None) -> None:
    """Degenerate scales come from the data or from the model (a layer whose output is
    constant on every sample): no other route (and no other mode of the profile's list) is
    tried. With the calibration data at hand, the message says which of the two it is."""
    degenerate = [
        f"{t.name[-40:]} (scale {min(t.quantization.scales):.3g})"
        for t in info.tensors
        if t.quantization.is_quantized
        and not all(np.isfinite(s) and s > 1e-30 for s in t.quantization.scales)
    ]
    if not degenerate:
        return
    head = (
        f"calibration produced degenerate quantization ranges for {len(degenerate)} "
        f"tensor(s), e.g. {degenerate[0]}: "
    )
    if calibration is not None and all(_varies(x) for x in calibration.inputs):
        raise ModelLoadError(
            head + "the calibration data varies, so the model computes a constant there "
            "(a layer with all-zero weights, e.g. a zero-initialised classifier head, or "
            "activations that are all clipped)",
            "check the weights (--weights, --pretrained); a constant output cannot be "
            "quantized or verified",
        )
    raise DataError(
        head + "the calibration data is probably blank or constant",
        "pass --calibration samples that look like the real inputs (a few hundred)",
    )


def _varies(x: np.ndarray) -> bool:
    """Whether the samples (axis 0) differ anywhere."""
    return bool(x.shape[0] > 1 and np.any(x != x[:1]))


def _failure(mode: QuantMode, exc: Exception, log_text: str) -> QuantizationError:
    """An engine's exception as a one-line QuantizationError naming the op when it can."""
    if isinstance(exc, QuantizationError):
        return exc
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    op = re.search(r"op[: ]+'?([A-Z_0-9]+)'?", msg + " " + log_text)
    return QuantizationError(
        f"{mode.value} quantization failed: {msg[:300]}" + (f" (op {op.group(1)})" if op else ""),
        "try --quantization dynamic-range (weights only), or --auto-fallback "
        "to keep unsupported ops in float",
    )


def _full_int8(
    float_bytes: bytes,
    calibration: Dataset,
    io_dtype: IODtype,
    io_layout: str,
    batch: int,
    engine: Int8Engine,
    ctx: StageContext,
) -> tuple[bytes, ModelInfo, dict[str, Any]]:
    """Try the routes in order; the first whose model keeps full-int8's promises wins."""
    n = (len(calibration) // batch) * batch
    if n == 0:
        raise QuantizationError(
            f"{len(calibration)} calibration samples cannot fill one batch of {batch}",
            f"pass at least {batch} calibration samples",
        )
    from edgepack.accuracy.recipes import encoder_recipe

    float_info = read_model_bytes(float_bytes)
    order = _routes(engine, float_info)
    tried: list[dict[str, Any]] = []
    for k, eng in enumerate(order):
        route_info = _route_info(eng)
        name = route_info["engine"] + (" encoder recipe" if eng == ENCODER else "")
        refusal: QuantizationError | None = None
        kept: dict[str, Any] = {}
        try:
            with quiet_native() as log:
                try:
                    if eng == Int8Engine.CALIBRATOR:
                        result = _calibrate_full_int8(
                            float_bytes, calibration, io_dtype, io_layout, batch
                        )
                    elif eng == ENCODER:
                        enc = encoder_recipe(float_info)
                        assert enc is not None  # _routes lists it only then
                        kept = enc.record(float_info)
                        base = tuple(sorted(enc.kept))
                        result = _aeq_full_int8(float_bytes, calibration, io_dtype, io_layout, base)
                    else:
                        result = _aeq_full_int8(float_bytes, calibration, io_dtype, io_layout)
                except Exception as exc:
                    raise _failure(QuantMode.FULL_INT8, exc, log.text) from exc
        except QuantizationError as exc:
            refusal = exc
        if refusal is None:
            info = read_model_bytes(result)
            check_ranges(info, calibration)  # the data or a constant layer: no other route helps
            try:
                intended = frozenset(kept.get("tensors", []))
                check_route(info, QuantMode.FULL_INT8, io_dtype, intended)
            except QuantizationError as exc:
                refusal = exc
        if refusal is not None:
            tried.append({"engine": name, "outcome": "refused", "reason": refusal.message})
            if k + 1 < len(order):
                nxt = _route_info(order[k + 1])
                ctx.progress(
                    f"quantize: {name} refused ({refusal.message}); trying {nxt['engine']} "
                    f"{nxt.get('recipe', '')}".rstrip()
                )
                continue
            if len(tried) > 1:
                raise QuantizationError(
                    "no full-int8 route worked: "
                    + "; ".join(f"{t['engine']}: {t['reason']}" for t in tried),
                    refusal.hint,
                ) from refusal
            raise refusal
        tried.append({"engine": name, "outcome": "used"})
        route = {**route_info, "int8_engine": engine.value, "tried": tried}
        if kept:
            route["kept_float"] = kept
            ctx.progress(f"quantize: {kept_float_note(route)} (route {name})")
        elif len(tried) > 1:
            ctx.progress(f"quantize: full-int8 by {name} (zero float compute ops)")
        return result, info, route
    raise AssertionError("unreachable: int8_order is never empty")


def run(
    float_model: TFLiteArtifact,
    mode: QuantMode,
    io_dtype: IODtype,
    calibration: Dataset | None,
    ctx: StageContext,
    batch: int = 1,
    int8_engine: Int8Engine = Int8Engine.AUTO,
) -> TFLiteArtifact:
    out = ctx.stage_dir(NAME) / f"model_{mode.value}.tflite"
    route = route_for(mode, int8_engine)
    params: dict[str, Any] = {"mode": mode.value, "io_dtype": io_dtype.value, "route": route}
    ctx.progress(f"quantize: {mode.value} ({route['engine']})")
    float_bytes = float_model.path.read_bytes()
    intended: frozenset[str] = frozenset()
    with ctx.timed() as elapsed:
        if mode == QuantMode.FLOAT32:
            shutil.copyfile(float_model.path, out)
            info = read_model(out)
        elif mode == QuantMode.FULL_INT8:
            if calibration is None:
                raise QuantizationError(
                    "full-int8 needs calibration data",
                    "pass --calibration data.npz (a few hundred representative inputs)",
                )
            params["calibration_sha256"] = _data_hash(calibration)
            result, info, route = _full_int8(
                float_bytes, calibration, io_dtype, float_model.io_layout, batch, int8_engine, ctx
            )
            params["route"] = route
            # The samples really used: the calibrator is fed whole batches, the
            # ai-edge-quantizer route every sample.
            calibrator = INT8_ROUTES[Int8Engine.CALIBRATOR]["engine"]
            used = route["tried"][-1]["engine"] == calibrator
            intended = frozenset(route.get("kept_float", {}).get("tensors", []))
            params["calibration_samples"] = (
                (len(calibration) // batch) * batch if used else len(calibration)
            )
            out.write_bytes(result)
        else:
            with quiet_native() as log:
                try:
                    if mode == QuantMode.DYNAMIC_RANGE:
                        from ai_edge_quantizer import recipe

                        result = _aeq(float_bytes, recipe.dynamic_wi8_afp32())
                    else:
                        result = _aeq(float_bytes, FP16_RECIPE)
                except Exception as exc:
                    raise _failure(mode, exc, log.text) from exc
            out.write_bytes(result)
            info = read_model(out)
    check_result(info, mode, io_dtype, intended)
    ctx.record(
        NAME,
        params=params,
        outputs=[out],
        metrics={
            "bytes": info.size_bytes,
            "float_bytes": len(float_bytes),
            "ratio": round(info.size_bytes / max(1, len(float_bytes)), 4),
            "ops": info.op_counts(),
        },
        seconds=elapsed(),
    )
    return TFLiteArtifact(path=out, kind=mode.value, io_layout=float_model.io_layout, route=route)


def _data_hash(ds: Dataset) -> str:
    import hashlib

    h = hashlib.sha256()
    for x in ds.inputs:
        h.update(np.ascontiguousarray(x).tobytes())
    return h.hexdigest()


__all__ = [
    "ENCODER_ROUTE",
    "INT8_ROUTES",
    "check_ranges",
    "check_result",
    "check_route",
    "int8_order",
    "kept_float_note",
    "read_model_bytes",
    "route_for",
    "run",
    "to_boundary_layout",
]
