"""Distillation stage: train the pruned model (student) to match the unpruned one (teacher).

loss = T^2 * KL(softmax(teacher / T) || softmax(student / T)) + alpha * CE(student, labels)

The KL term needs no labels (pure knowledge distillation); the cross entropy term is used only
when ``alpha > 0``, which then requires labelled training data. Weights that are exactly zero
in the student (magnitude pruning) stay zero: their gradients are masked after every step, so
distillation recovers accuracy without undoing the sparsity. Training is seeded with
``ctx.seed`` and deterministic on CPU.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgepack.data import Dataset, load_dataset
from edgepack.errors import CompressionError, DataError
from edgepack.stages import modelstats
from edgepack.stages.base import InputSpec, StageContext, TorchModel

if TYPE_CHECKING:
    import torch
    from torch import nn


@dataclass(frozen=True)
class DistillSpec:
    train: Path
    epochs: int = 5
    lr: float = 1e-3
    batch_size: int = 64
    temperature: float = 4.0
    alpha: float = 0.0  # weight of the hard-label cross entropy (0 = pure KD)
    device: str = "cpu"
    samples: int | None = None

    @classmethod
    def from_options(cls, train: Path | None, **kwargs: Any) -> DistillSpec:
        """Build a spec from CLI options; ``--distill`` without ``--train`` is an error."""
        if train is None:
            raise CompressionError(
                "distillation needs training data, but no --train was given",
                "pass --train data.npz (inputs 'x'; labels 'y' optional: pure distillation "
                "needs none)",
            )
        return cls(train=Path(train), **kwargs)

    def to_dict(self) -> dict[str, Any]:
        return {
            "train": str(self.train),
            "epochs": self.epochs,
            "lr": self.lr,
            "batch_size": self.batch_size,
            "temperature": self.temperature,
            "alpha": self.alpha,
            "device": self.device,
            "samples": self.samples,
        }


def validate_distill(spec: DistillSpec, inputs: tuple[InputSpec, ...]) -> None:
    """Check the options and the training data against the model's inputs (cheap, early).

    Raises CompressionError listing every bad option at once, or DataError for the data.
    """
    problems = []
    if spec.epochs < 1:
        problems.append(f"epochs must be >= 1 (got {spec.epochs})")
    if not (spec.lr > 0 and math.isfinite(spec.lr)):
        problems.append(f"learning rate must be > 0 (got {spec.lr})")
    if spec.batch_size < 1:
        problems.append(f"batch size must be >= 1 (got {spec.batch_size})")
    if not (spec.temperature > 0 and math.isfinite(spec.temperature)):
        problems.append(f"temperature must be > 0 (got {spec.temperature})")
    if not (spec.alpha >= 0 and math.isfinite(spec.alpha)):
        problems.append(f"alpha must be >= 0 (got {spec.alpha})")
    if spec.samples is not None and spec.samples < 1:
        problems.append(f"samples must be >= 1 (got {spec.samples})")
    device = spec.device.split(":")[0]
    if device not in ("cpu", "cuda"):
        problems.append(f"device must be cpu or cuda (got '{spec.device}')")
    elif device == "cuda":
        import torch

        if not torch.cuda.is_available():
            problems.append("device cuda was asked for but torch sees no CUDA device")
    if problems:
        raise CompressionError(
            "bad distillation options: " + "; ".join(problems),
            "e.g. --epochs 5 --lr 1e-3 --batch-size 64 --temperature 4 --alpha 0 --device cpu",
        )
    _load_train(spec, inputs)


def _load_train(spec: DistillSpec, inputs: tuple[InputSpec, ...]) -> Dataset:
    data = load_dataset(spec.train, inputs, purpose="training", samples=spec.samples)
    if spec.alpha > 0 and data.labels is None:
        raise DataError(
            f"training data {spec.train} has no labels, but alpha={spec.alpha:g} asks for the "
            "hard-label loss",
            "add labels as an array named 'y', or use --alpha 0 (pure distillation)",
        )
    return data


def run(
    student: TorchModel,
    teacher: TorchModel,
    spec: DistillSpec,
    ctx: StageContext,
    *,
    eval_data: Dataset | None = None,
) -> TorchModel:
    """Train a copy of ``student`` against ``teacher``; both inputs are left untouched."""
    import torch
    import torch.nn.functional as F

    if student.module is None or student.exported is not None or teacher.module is None:
        raise CompressionError(
            "distillation needs PyTorch modules, but this source is an exported program (.pt2)",
            "load the model from its factory (module:factory or file.py:factory)",
        )
    with ctx.timed() as elapsed:
        data = _load_train(spec, student.inputs)
        device = torch.device(spec.device)
        module = copy.deepcopy(student.module).to(device)
        tmodule = copy.deepcopy(teacher.module).to(device).eval()
        before = modelstats.summary(student.module, student.example_inputs, eval_data)
        masks = _zero_masks(module)

        deterministic = torch.are_deterministic_algorithms_enabled()
        # Deterministic kernels on CPU (CUDA would also need CUBLAS_WORKSPACE_CONFIG).
        torch.use_deterministic_algorithms(device.type == "cpu")
        rng_state = torch.random.get_rng_state()
        try:
            torch.manual_seed(ctx.seed)
            gen = torch.Generator().manual_seed(ctx.seed)
            xs = [torch.from_numpy(x) for x in data.inputs]
            ys = None if data.labels is None else torch.from_numpy(data.labels.astype("int64"))
            use_ce = spec.alpha > 0 and ys is not None
            probe = min(2, spec.batch_size)
            _check_logits(tmodule, module, [x[:probe].to(device) for x in xs])
            opt = torch.optim.Adam(module.parameters(), lr=spec.lr)
            steps = spec.epochs * math.ceil(len(data) / spec.batch_size)
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
            t2 = spec.temperature**2
            losses: list[float] = []
            for epoch in range(spec.epochs):
                module.train()
                perm = torch.randperm(len(data), generator=gen)
                total, count = 0.0, 0
                for start in range(0, len(data), spec.batch_size):
                    idx = perm[start : start + spec.batch_size]
                    batch = [x[idx].to(device) for x in xs]
                    with torch.no_grad():
                        t_logits = _logits(tmodule(*batch))
                    s_logits = _logits(module(*batch))
                    loss = t2 * F.kl_div(
                        F.log_softmax(s_logits / spec.temperature, dim=1),
                        F.log_softmax(t_logits / spec.temperature, dim=1),
                        reduction="batchmean",
                        log_target=True,
                    )
                    if use_ce and ys is not None:
                        loss = loss + spec.alpha * F.cross_entropy(s_logits, ys[idx].to(device))
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    sched.step()
                    _apply_masks(masks)
                    total += float(loss.detach()) * len(idx)
                    count += len(idx)
                losses.append(round(total / count, 5))
                ctx.progress(f"distill: epoch {epoch + 1}/{spec.epochs} loss {losses[-1]:.4f}")
        finally:
            torch.use_deterministic_algorithms(deterministic)
            torch.random.set_rng_state(rng_state)
        module = module.to("cpu").eval()
        after = modelstats.summary(module, student.example_inputs, eval_data)
        metrics = modelstats.before_after(before, after)
        metrics["loss_per_epoch"] = losses
        metrics["train_samples"] = len(data)
        metrics["hard_labels"] = use_ce
        metrics["kept_zero_weights"] = int(sum(int((~m).sum()) for _, m in masks))
        params = spec.to_dict()
        params["seed"] = ctx.seed
        ctx.record("distill", params, metrics=metrics, seconds=elapsed())
    return TorchModel(
        module=module,
        example_inputs=student.example_inputs,
        inputs=student.inputs,
        source=student.source,
        name=student.name,
    )


def _logits(out: Any) -> torch.Tensor:
    import torch

    if isinstance(out, torch.Tensor):
        return out
    raise CompressionError(
        f"distillation needs a model with one logits output, this one returns {type(out).__name__}",
        "wrap the model so forward() returns the logits tensor (N, classes)",
    )


def _check_logits(teacher: nn.Module, student: nn.Module, batch: list[torch.Tensor]) -> None:
    import torch

    try:
        with torch.no_grad():
            t, s = _logits(teacher(*batch)), _logits(student(*batch))
    except CompressionError:
        raise
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise CompressionError(
            f"distillation runs the model on batches of {len(batch[0])} samples, and it fails: "
            f"{first}",
            "the model must accept any batch size (no hard-coded batch in reshapes), or pass "
            "--batch-size 1",
        ) from exc
    if t.dim() < 2 or t.shape != s.shape:
        raise CompressionError(
            f"distillation needs teacher and student logits of the same shape (N, classes), "
            f"got {tuple(t.shape)} and {tuple(s.shape)}",
            "the final classifier must not be pruned; pass the unpruned model as the teacher",
        )


def _zero_masks(module: nn.Module) -> list[tuple[Any, torch.Tensor]]:
    """Masks (True = trainable) for Conv/Linear weights that hold exact zeros."""
    masks = []
    for _, m in modelstats.weight_layers(module):
        nonzero = m.weight.detach() != 0
        if not bool(nonzero.all()):
            masks.append((m.weight, nonzero))
    return masks


def _apply_masks(masks: list[tuple[Any, torch.Tensor]]) -> None:
    import torch

    with torch.no_grad():
        for p, mask in masks:
            p.mul_(mask)
