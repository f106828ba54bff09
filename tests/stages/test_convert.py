"""Stage `convert`: one torch.export per model (litert-torch does not trace it again)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgepack.stages.convert import convert_program


@pytest.mark.slow
def test_the_exported_program_is_converted_without_a_second_export(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 4),
        nn.Softmax(dim=-1),
    ).eval()
    args = (torch.randn(1, 3, 16, 16),)
    pt2 = tmp_path / "model.pt2"
    torch.export.save(torch.export.export(model, args, strict=False), pt2)

    calls: list[str] = []
    real = torch.export.export

    def counting(*a: object, **k: object) -> object:
        calls.append("export")
        return real(*a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(torch.export, "export", counting)
    public = convert_program(torch.export.load(pt2), args, direct=False)
    assert calls == ["export"]  # litert_torch.convert traces the module again
    direct = convert_program(torch.export.load(pt2), args)
    assert calls == ["export"]  # ... the direct route does not
    public.export(str(tmp_path / "public.tflite"))
    direct.export(str(tmp_path / "direct.tflite"))
    a = (tmp_path / "public.tflite").read_bytes()
    assert a == (tmp_path / "direct.tflite").read_bytes()
    assert len(a) > 1000  # a real model, not two empty files


@pytest.mark.slow
def test_a_program_handed_over_in_memory_converts_to_the_bytes_of_the_saved_one(
    tmp_path: Path,
) -> None:
    """A single build without the cache skips the .pt2 save/load round trip: the program goes
    to the conversion in memory, once, and the model the validation runs is left untouched."""
    import pickle

    import torch
    from torch import nn

    from edgepack.source import load_module
    from edgepack.stages import convert, export
    from edgepack.stages.base import StageContext
    from edgepack.targets import IOLayout

    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 4),
    )
    with torch.no_grad():  # non-trivial BatchNorm statistics: a folding pass would change them
        net[1].running_mean.uniform_(-1, 1)
        net[1].running_var.uniform_(0.5, 2)
    model = load_module(net, input_shapes=["1x3x16x16"])
    before = {k: v.clone() for k, v in model.module.state_dict().items()}

    def build(folder: str, keep: bool) -> tuple[Path, bytes]:
        ctx = StageContext(workdir=tmp_path / folder)
        exported = export.run(model, ctx, None, keep_program=keep)
        assert (exported.program is not None) == keep
        assert pickle.loads(pickle.dumps(exported)).program is None  # never sent to a worker
        float_model = convert.run(exported, IOLayout.NCHW, ctx)
        assert exported.program is None  # taken once: a second conversion reads the file
        return exported.path, float_model.path.read_bytes()

    saved_pt2, saved = build("saved", keep=False)
    memory_pt2, memory = build("memory", keep=True)
    assert saved_pt2.is_file() and not memory_pt2.exists()
    assert memory == saved and len(memory) > 1000
    after = model.module.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
