"""Apply a rule table to a model: per-op verdicts, then partitioning, then MAC shares."""

from __future__ import annotations

from math import prod
from pathlib import Path

from edgepack.compat.macs import op_macs
from edgepack.compat.report import CompatReport, OpPlacement, Placement, Reason, TableResult
from edgepack.compat.rules import Partitioning, RuleTable, load_table
from edgepack.tflite import ModelInfo, Operator, Tensor, read_model

FLOATS = ("FLOAT32", "FLOAT16", "FLOAT64")
Verdict = tuple[Reason, str] | None  # None: the op is supported


def _present(model: ModelInfo, indices: tuple[int, ...]) -> list[Tensor]:
    return [model.tensors[i] for i in indices if i >= 0]


def _runtime(tensors: list[Tensor]) -> list[Tensor]:
    return [t for t in tensors if not t.is_constant]


def _tname(t: Tensor) -> str:
    """A short tensor label for messages: index and the last part of its name."""
    short = t.name.split("/")[-1].split(";")[0][:40]
    return f"#{t.index} '{short}'" if short else f"#{t.index}"


def _nonunit(shape: tuple[int, ...]) -> int:
    return sum(1 for d in shape if d != 1)


def _dtypes_label(model: ModelInfo, op: Operator) -> str:
    ins = sorted({t.dtype for t in _runtime(_present(model, op.inputs))})
    outs = sorted({t.dtype for t in _present(model, op.outputs)})
    a, b = "/".join(ins), "/".join(outs)
    return a if a == b or not a else (b if not b else f"{a}->{b}")


def _axes(model: ModelInfo, op: Operator, rank: int) -> list[int] | None:
    """Reduction / split axes of an op, normalised to non-negative values."""
    if op.op == "PACK":
        return [int(op.options.get("axis", 0)) % max(rank + 1, 1)]
    pos = 0 if op.op == "SPLIT" else 1
    if len(op.inputs) <= pos or op.inputs[pos] < 0:
        return None
    data = model.tensors[op.inputs[pos]].int_data
    if not data:
        return None
    return [a % rank if rank else a for a in data]


def _dequantized_constant(model: ModelInfo, tensor: int) -> bool:
    """The tensor is the output of a DEQUANTIZE of a constant (FP16 weights, unpacked once)."""
    for o in model.operators:
        if tensor in o.outputs:
            return (
                o.op == "DEQUANTIZE"
                and bool(o.inputs)
                and o.inputs[0] >= 0
                and model.tensors[o.inputs[0]].is_constant
            )
    return False


def _check_dtypes(table: RuleTable, model: ModelInfo, op: Operator) -> Verdict:
    rule = table.ops[op.op]
    allowed = tuple(rule.get("tensor_dtypes", table.tensor_dtypes))
    ins = _present(model, op.inputs)
    runtime = _runtime(ins) + _present(model, op.outputs)
    for t in runtime:
        if t.dtype in allowed:
            continue
        if t.dtype in FLOATS and not any(a in FLOATS for a in allowed):
            return Reason.NOT_QUANTIZED, f"{t.dtype} tensor {_tname(t)}"
        return Reason.DTYPE, f"{t.dtype} tensor {_tname(t)} (takes {'/'.join(allowed)})"
    consts = [t for t in ins if t.is_constant]
    for t in consts:
        if t.dtype not in table.const_dtypes:
            if t.dtype in FLOATS and not any(a in FLOATS for a in table.const_dtypes):
                return Reason.NOT_QUANTIZED, f"{t.dtype} constant {_tname(t)}"
            return Reason.DTYPE, f"{t.dtype} constant {_tname(t)}"
    hybrid_ok = bool(rule.get("allow_hybrid", False))
    if table.reject_hybrid and not hybrid_ok and any(t.dtype in FLOATS for t in runtime):
        weights = [t for t in consts if t.dtype in ("INT8", "INT4") and t.quantization.scales]
        if weights:
            return (
                Reason.DTYPE,
                f"dynamic-range op: {weights[0].dtype} weights with float activations",
            )
    return None


def _check_shapes(table: RuleTable, model: ModelInfo, op: Operator) -> Verdict:
    tensors = _runtime(_present(model, op.inputs)) + _present(model, op.outputs)
    if table.static_shapes:
        for t in tensors:
            if t.is_dynamic:
                return Reason.DYNAMIC_SHAPE, f"{_tname(t)} has shape {list(t.shape_signature)}"
    for t in tensors:
        if table.max_rank and len(t.shape) > table.max_rank:
            return Reason.RANK_LIMIT, f"{_tname(t)} is {len(t.shape)}-D (max {table.max_rank}-D)"
        n = table.innermost_nonunit_dims
        if n and len(t.shape) > n and any(d != 1 for d in t.shape[: len(t.shape) - n]):
            return (
                Reason.RANK_LIMIT,
                f"{_tname(t)} shape {list(t.shape)}: only the {n} innermost dims may be > 1",
            )
    return None


def _check_op(table: RuleTable, model: ModelInfo, op: Operator) -> Verdict:
    rule = table.ops[op.op]
    opts = op.options
    ins = _present(model, op.inputs)
    outs = _present(model, op.outputs)
    first = model.tensors[op.inputs[0]] if op.inputs and op.inputs[0] >= 0 else None
    rank = len(first.shape) if first else 0

    max_version = rule.get("max_version")
    if max_version is not None and op.version > max_version:
        return Reason.PARAM, f"op version {op.version} (supported up to v{max_version})"
    acts = rule.get("fused_activations")
    act = opts.get("fused_activation_function")
    if acts is not None and act is not None and act not in acts:
        return Reason.PARAM, f"fused activation {act} (takes {'/'.join(acts)})"
    if rule.get("equal_dilation") and opts.get("dilation_h_factor") != opts.get(
        "dilation_w_factor"
    ):
        return Reason.PARAM, (
            f"dilation {opts.get('dilation_h_factor')}x{opts.get('dilation_w_factor')} "
            "differs in x and y"
        )
    for key, want in (rule.get("option_equals") or {}).items():
        if key in opts and opts[key] != want:
            return Reason.PARAM, f"{key}={opts[key]} (needs {want})"
    for key in rule.get("zero_options") or ():
        if opts.get(key, 0):
            return Reason.PARAM, f"{key}={opts[key]} (must be 0)"
    n_in = rule.get("num_inputs")
    if n_in is not None and len(ins) not in n_in:
        return Reason.PARAM, f"{len(ins)} inputs (takes {n_in})"
    n_out = rule.get("num_outputs")
    if n_out is not None and len(outs) not in n_out:
        return Reason.PARAM, f"{len(outs)} outputs (takes {n_out})"
    ranks = rule.get("input_ranks")
    if ranks is not None and first is not None and rank not in ranks:
        return Reason.RANK_LIMIT, f"{rank}-D input (takes {ranks}-D)"
    for pos in rule.get("static_inputs") or ():
        if pos < len(op.inputs) and op.inputs[pos] >= 0:
            t = model.tensors[op.inputs[pos]]
            if not t.is_constant and not (
                rule.get("static_dequantized") and _dequantized_constant(model, t.index)
            ):
                return Reason.PARAM, f"input {pos} {_tname(t)} is not a constant"
    if rule.get("requires_bias") and (len(op.inputs) < 3 or op.inputs[2] < 0):
        return Reason.PARAM, "no bias (bias is mandatory)"
    if rule.get("output_nonunit_dims_max") is not None and outs:
        limit = rule.get("output_nonunit_dims_max")
        if _nonunit(outs[0].shape) > limit:
            return Reason.RANK_LIMIT, f"output shape {list(outs[0].shape)} is not {limit}-D"
    if first is not None:
        if rule.get("max_nonunit_input_dims") is not None:
            limit = rule.get("max_nonunit_input_dims")
            if _nonunit(first.shape) > limit:
                return Reason.RANK_LIMIT, f"input shape {list(first.shape)} is not {limit}-D"
        limit = rule.get("max_input_elements")
        if limit is not None and prod(first.shape) > limit:
            return Reason.RANK_LIMIT, f"{prod(first.shape)} input elements (max {limit})"
    if rule.get("no_batch_axis") and first is not None:
        if op.op in ("PAD", "PADV2", "MIRROR_PAD"):
            pads = model.tensors[op.inputs[1]].int_data if len(op.inputs) > 1 else ()
            if pads[:2] and any(pads[:2]):
                return Reason.PARAM, f"pads the batch dimension by {list(pads[:2])}"
        else:
            axes = _axes(model, op, rank)
            if axes is not None and 0 in axes:
                return Reason.PARAM, f"operates on the batch dimension (axes {axes})"
    z = rule.get("z_reduction_multiple")
    if z and first is not None and rank:
        axes = _axes(model, op, rank)
        if axes is not None and rank - 1 in axes and first.shape[-1] % z:
            return Reason.PARAM, f"reduction over {first.shape[-1]} channels (needs % {z})"
    allowed_axes = rule.get("allowed_axes")
    if allowed_axes is not None:
        axes = _axes(model, op, rank)
        if axes is None or axes not in allowed_axes:
            return Reason.PARAM, f"reduction axes {axes} (takes {allowed_axes})"
    if rule.get("strides_all_one") and len(op.inputs) > 3:
        strides = model.tensors[op.inputs[3]].int_data
        if not strides or any(s != 1 for s in strides):
            return Reason.PARAM, f"strides {list(strides) or 'not constant'} (must be all 1)"
    unmapped = rule.get("unmapped_perms")
    if unmapped and len(op.inputs) > 1 and op.inputs[1] >= 0:
        perm = list(model.tensors[op.inputs[1]].int_data)
        if perm in unmapped:
            return Reason.PARAM, f"permutation {perm} (an NCHW/NHWC layout change) is not mapped"
    if rule.get("const_input_zero_pad"):
        consts = [t for t in ins if t.is_constant]
        if consts and len(ins) != 2:
            return Reason.PARAM, f"constant input with {len(ins)} inputs (only 2 allowed)"
    if rule.get("alpha_innermost_only") and len(ins) > 1 and _nonunit(ins[1].shape[:-1]):
        return Reason.PARAM, f"alpha shape {list(ins[1].shape)} (only innermost dim may be > 1)"
    if rule.get("depth_multiplier_one_or_c1") and first is not None:
        mult = int(opts.get("depth_multiplier", 1))
        if mult != 1 and first.shape[-1] != 1:
            return Reason.PARAM, f"depth_multiplier {mult} with {first.shape[-1]} input channels"
    if rule.get("per_tensor_input") and first is not None and len(first.quantization.scales) > 1:
        return Reason.PARAM, "per-channel quantized input"
    pool_1x1 = (opts.get("filter_height"), opts.get("filter_width")) == (1, 1)
    strided = opts.get("stride_h", 1) != 1 or opts.get("stride_w", 1) != 1
    if rule.get("no_1x1_strided_pool") and pool_1x1 and strided:
        return Reason.PARAM, "1x1 pooling with a non-unit stride"
    if rule.get("same_signedness") and first is not None and outs:
        a, b = first.dtype, outs[0].dtype
        if a not in FLOATS and {a, b} == {"INT8", "UINT8"}:
            return Reason.DTYPE, f"{a}->{b} requantization changes signedness"
    ratio = rule.get("input_output_scale_ratio")
    if ratio and outs and outs[0].quantization.is_quantized and outs[0].dtype not in FLOATS:
        out_scale = outs[0].quantization.scales[0]
        for pos, t in enumerate(ins):
            if not t.quantization.is_quantized or out_scale <= 0:
                continue
            r = t.quantization.scales[0] / out_scale
            if not ratio[0] <= r < ratio[1]:
                return Reason.PARAM, (
                    f"input {pos} {_tname(t)} scale / output scale {r:.3g} "
                    f"(takes [{ratio[0]:.3g}, {ratio[1]:.3g}))"
                )
    return None


def evaluate_op(table: RuleTable, model: ModelInfo, op: Operator) -> Verdict:
    """Why ``op`` cannot run on the table's accelerator, or None if it can."""
    if op.op.startswith("CUSTOM:") and op.op[len("CUSTOM:") :] in table.custom_ops:
        return None  # already compiled for this accelerator
    if op.op not in table.ops:
        return Reason.OP_NOT_SUPPORTED, f"{op.op} is not in the {table.accelerator} op table"
    return (
        _check_dtypes(table, model, op)
        or _check_shapes(table, model, op)
        or _check_op(table, model, op)
    )


def _ready_initial(model: ModelInfo) -> set[int]:
    return set(model.inputs) | {t.index for t in model.tensors if t.is_constant}


def _partition_multi(model: ModelInfo, supported: list[bool]) -> list[list[int]]:
    """Delegate partitions the way TFLite forms node subsets.

    Walk the execution plan repeatedly, growing one subset of a single kind (supported or
    not) with every node whose inputs are ready; when nothing more can join, start a subset of
    the other kind. Returns the supported subsets (node indices) in creation order.
    """
    ready = _ready_initial(model)
    done = [False] * len(model.operators)
    parts: list[list[int]] = []
    while not all(done):
        kind: bool | None = None
        subset: list[int] = []
        progress = True
        while progress:
            progress = False
            for i, op in enumerate(model.operators):
                if done[i] or not all(t in ready for t in op.inputs if t >= 0):
                    continue
                if kind is None:
                    kind = supported[i]
                if supported[i] != kind:
                    continue
                done[i] = True
                subset.append(i)
                ready.update(t for t in op.outputs if t >= 0)
                progress = True
        if not subset:  # inputs never become ready (malformed graph): stop
            break
        if kind:
            parts.append(sorted(subset))
    return parts


def _place(
    table: RuleTable, model: ModelInfo, verdicts: list[Verdict]
) -> tuple[list[Placement], list[Verdict], list[int | None]]:
    n = len(model.operators)
    placement = [Placement.CPU] * n
    final = list(verdicts)
    part_of: list[int | None] = [None] * n
    if table.partitioning is Partitioning.SINGLE_SEGMENT:
        producer = {t: i for i, op in enumerate(model.operators) for t in op.outputs if t >= 0}
        tainted: set[int] = set()  # tensors that depend on a CPU op placed after the segment
        started = False
        for i, op in enumerate(model.operators):
            ins = [t for t in op.inputs if t >= 0]
            if any(t in tainted for t in ins):
                if final[i] is None:
                    final[i] = (
                        Reason.AFTER_SPLIT,
                        "depends on an op the accelerator does not run; "
                        f"{table.accelerator} maps one subgraph",
                    )
                tainted.update(t for t in op.outputs if t >= 0)
                continue
            if final[i] is None:
                placement[i] = Placement.ACCELERATOR
                part_of[i] = 0
                started = True
                continue
            reads_accel = any(
                t in producer and placement[producer[t]] is Placement.ACCELERATOR for t in ins
            )
            if started and reads_accel:
                tainted.update(t for t in op.outputs if t >= 0)
        return placement, final, part_of
    parts = _partition_multi(model, [v is None for v in verdicts])
    keep = list(range(len(parts)))
    if table.max_partitions and len(parts) > table.max_partitions:
        order = sorted(range(len(parts)), key=lambda k: (-len(parts[k]), k))
        keep = sorted(order[: table.max_partitions])
    for k, nodes in enumerate(parts):
        for i in nodes:
            if k in keep:
                placement[i] = Placement.ACCELERATOR
                part_of[i] = keep.index(k)
            else:
                final[i] = (
                    Reason.PARTITION_LIMIT,
                    f"supported, but in a partition of {len(nodes)} op(s) the delegate skips "
                    f"(max_delegated_partitions={table.max_partitions})",
                )
    return placement, final, part_of


def check_model(model: ModelInfo, table: RuleTable) -> TableResult:
    verdicts = [evaluate_op(table, model, op) for op in model.operators]
    placement, final, part_of = _place(table, model, verdicts)
    producer = {t: i for i, op in enumerate(model.operators) for t in op.outputs if t >= 0}
    split = None
    for i, op in enumerate(model.operators):
        if placement[i] is Placement.CPU and any(
            t in producer and placement[producer[t]] is Placement.ACCELERATOR
            for t in op.inputs
            if t >= 0
        ):
            split = i
            break
    warnings = []
    ops = []
    for i, op in enumerate(model.operators):
        v = final[i]
        ops.append(
            OpPlacement(
                index=i,
                op=op.op,
                dtypes=_dtypes_label(model, op),
                placement=placement[i],
                reason=v[0] if v else None,
                detail=v[1] if v else "",
                macs=op_macs(model, op),
                partition=part_of[i],
            )
        )
        rule = table.ops.get(op.op)
        note = rule.get("warning") if rule else None
        if note and placement[i] is Placement.ACCELERATOR:
            warnings.append(f"op {i} {op.op}: {note}")
    n_parts = len({p for p in part_of if p is not None})
    return TableResult(
        rules=table.name,
        accelerator=table.accelerator,
        version=table.version,
        applies_to=table.applies_to,
        source=table.source,
        ops=tuple(ops),
        partitions=n_parts,
        split_index=split,
        warnings=tuple(warnings),
    )


def check(model_path: str | Path, rules: list[str]) -> CompatReport:
    """Pre-flight ``model_path`` (a .tflite) against the named rule tables."""
    tables = [load_table(name) for name in rules]
    model = read_model(model_path)
    return CompatReport(
        model=Path(model_path).name,
        sha256=model.sha256,
        results=tuple(check_model(model, t) for t in tables),
    )
