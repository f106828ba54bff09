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
