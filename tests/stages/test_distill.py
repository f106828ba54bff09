from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from edgepack.data import load_dataset
from edgepack.errors import CompressionError, DataError
from edgepack.stages import distill, prune
from edgepack.stages.base import InputSpec, StageContext, TorchModel
from edgepack.stages.distill import DistillSpec, validate_distill
from edgepack.stages.prune import parse_prune_spec
from tests.stages.compress_models import DIGITS, digits_model

INPUTS = (InputSpec("x", (1, 1, 32, 32)),)


@pytest.fixture(scope="module")
def teacher() -> TorchModel:
    return digits_model()


@pytest.fixture(scope="module")
def pruned(teacher: TorchModel, tmp_path_factory: pytest.TempPathFactory) -> TorchModel:
    ctx = StageContext(tmp_path_factory.mktemp("prune"))
    return prune.run(teacher, parse_prune_spec("channels:0.5"), ctx)


@pytest.fixture(scope="module")
def eval_data():  # type: ignore[no-untyped-def]
    return load_dataset(DIGITS / "eval.npz", INPUTS, purpose="evaluation", samples=300)


@pytest.fixture(scope="module")
def unlabelled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    with np.load(DIGITS / "train.npz") as z:
        x = z["x"][:320]
    path = tmp_path_factory.mktemp("data") / "unlabelled.npz"
    np.savez(path, x=x)
    return path


def _state(m: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in m.state_dict().items()}


@pytest.mark.slow
def test_pure_distillation_without_labels_recovers_accuracy(
    teacher: TorchModel, pruned: TorchModel, eval_data, unlabelled: Path, tmp_path: Path
) -> None:
    messages: list[str] = []
    ctx = StageContext(tmp_path, progress=messages.append, seed=3)
    t_state, s_state = _state(teacher.module), _state(pruned.module)
    spec = DistillSpec(train=unlabelled, epochs=2, lr=3e-3, batch_size=32)
    out = distill.run(pruned, teacher, spec, ctx, eval_data=eval_data)

    # inputs untouched, a new module returned
    assert out.module is not pruned.module
    for k, v in teacher.module.state_dict().items():
        assert torch.equal(v, t_state[k]), k
    for k, v in pruned.module.state_dict().items():
        assert torch.equal(v, s_state[k]), k

    rec = ctx.records[-1]
    assert rec.name == "distill"
    assert rec.params["seed"] == 3 and rec.params["epochs"] == 2 and rec.params["alpha"] == 0.0
    m = rec.metrics
    assert m["hard_labels"] is False and m["train_samples"] == 320
    assert m["top1_before"] < 30  # channel pruning without recovery is near chance
    assert m["top1_after"] > 85
    assert m["params_before"] == m["params_after"] == 24058
    losses = m["loss_per_epoch"]
    assert len(losses) == 2 and losses[1] < losses[0]
    assert messages == [
        f"distill: epoch 1/2 loss {losses[0]:.4f}",
        f"distill: epoch 2/2 loss {losses[1]:.4f}",
    ]


def test_distillation_is_seeded_and_deterministic(
    teacher: TorchModel, pruned: TorchModel, unlabelled: Path, tmp_path: Path
) -> None:
    spec = DistillSpec(train=unlabelled, epochs=1, batch_size=64, samples=128)
    a = distill.run(pruned, teacher, spec, StageContext(tmp_path, seed=0))
    b = distill.run(pruned, teacher, spec, StageContext(tmp_path, seed=0))
    c = distill.run(pruned, teacher, spec, StageContext(tmp_path, seed=1))
    sa, sb, sc = a.module.state_dict(), b.module.state_dict(), c.module.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_hard_labels_and_magnitude_zeros_are_kept(teacher: TorchModel, tmp_path: Path) -> None:
    ctx = StageContext(tmp_path)
    sparse = prune.run(teacher, parse_prune_spec("magnitude:0.7"), ctx)
    zeros = {n: (p == 0) for n, p in sparse.module.named_parameters() if n.endswith("weight")}
    spec = DistillSpec(train=DIGITS / "train.npz", epochs=1, alpha=0.5, samples=128)
    out = distill.run(sparse, teacher, spec, ctx)
    m = ctx.records[-1].metrics
    assert m["hard_labels"] is True
    assert m["sparsity_after"] == m["sparsity_before"] == pytest.approx(0.7, abs=0.002)
    after = dict(out.module.named_parameters())
    changed = False
    for n, z in zeros.items():
        if z.any() and n.rpartition(".")[0] in m_layers(out.module):
            assert bool((after[n][z] == 0).all()), n
        changed |= not torch.equal(after[n], dict(sparse.module.named_parameters())[n])
    assert changed  # training did update the remaining weights
    assert m["kept_zero_weights"] == sum(
        int(z.sum()) for n, z in zeros.items() if n.rpartition(".")[0] in m_layers(out.module)
    )


def m_layers(module: torch.nn.Module) -> set[str]:
    return {
        n for n, m in module.named_modules() if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)
    }


# ---- errors -------------------------------------------------------------------------------


def test_distillation_without_training_data() -> None:
    with pytest.raises(CompressionError, match="distillation needs training data") as e:
        DistillSpec.from_options(None, epochs=5)
    assert "--train" in e.value.hint
    assert DistillSpec.from_options(Path("t.npz"), epochs=2) == DistillSpec(Path("t.npz"), 2)


def test_training_data_that_does_not_match_the_model(tmp_path: Path) -> None:
    bad = tmp_path / "small.npz"
    np.savez(bad, x=np.zeros((10, 1, 28, 28), np.float32), y=np.zeros(10, np.int64))
    with pytest.raises(DataError) as e:
        validate_distill(DistillSpec(train=bad), INPUTS)
    assert e.value.message == (
        f"training data {bad} does not fit the model: input 'x' has samples of shape "
        "(1, 28, 28), the model takes (1, 32, 32) (full shape (1, 1, 32, 32))"
    )
    with pytest.raises(DataError, match=r"training data not found: .*missing\.npz$"):
        validate_distill(DistillSpec(train=tmp_path / "missing.npz"), INPUTS)


def test_hard_label_loss_needs_labels(unlabelled: Path) -> None:
    validate_distill(DistillSpec(train=unlabelled), INPUTS)  # pure KD: fine
    with pytest.raises(DataError, match=r"has no labels, but alpha=0\.5 asks") as e:
        validate_distill(DistillSpec(train=unlabelled, alpha=0.5), INPUTS)
    assert "--alpha 0" in e.value.hint


def test_bad_options_are_reported_at_once() -> None:
    spec = DistillSpec(train=DIGITS / "train.npz", epochs=0, lr=-1, temperature=0, device="tpu")
    with pytest.raises(CompressionError) as e:
        validate_distill(spec, INPUTS)
    assert e.value.message == (
        "bad distillation options: epochs must be >= 1 (got 0); learning rate must be > 0 "
        "(got -1); temperature must be > 0 (got 0); device must be cpu or cuda (got 'tpu')"
    )


def test_student_with_pruned_classifier_is_refused(teacher: TorchModel, tmp_path: Path) -> None:
    student = copy.deepcopy(teacher)
    student.module = copy.deepcopy(teacher.module)
    student.module.classifier = torch.nn.Linear(128, 5)
    spec = DistillSpec(train=DIGITS / "train.npz", epochs=1, samples=16)
    with pytest.raises(CompressionError, match=r"same shape .*got \(2, 10\) and \(2, 5\)"):
        distill.run(student, teacher, spec, StageContext(tmp_path))


class _FixedBatch(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3)
        self.fc = torch.nn.Linear(4 * 30 * 30, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).reshape(1, -1))  # batch 1 hard-coded


def test_model_with_a_hard_coded_batch(tmp_path: Path) -> None:
    torch.manual_seed(0)
    m = TorchModel(_FixedBatch().eval(), (torch.zeros(1, 1, 32, 32),), INPUTS, {})
    spec = DistillSpec(train=DIGITS / "train.npz", epochs=1, samples=4)
    with pytest.raises(CompressionError, match="batches of 2 samples, and it fails") as e:
        distill.run(m, m, spec, StageContext(tmp_path))
    assert "--batch-size 1" in e.value.hint
    spec = DistillSpec(train=DIGITS / "train.npz", epochs=1, samples=4, batch_size=1)
    distill.run(m, m, spec, StageContext(tmp_path))  # works one sample at a time
