from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from edgepack.errors import ModelLoadError, UsageError
from edgepack.source import default_name, load_source, parse_input_shape
from tests.conftest import DIGITS

MODEL_PY = f"{DIGITS}/model.py"


def test_file_factory_with_weights() -> None:
    m = load_source(f"{MODEL_PY}:build_model", DIGITS / "weights.pt", ["1x1x32x32"])
    assert m.inputs[0].shape == (1, 1, 32, 32)
    assert m.inputs[0].name == "x"  # from forward()'s signature
    assert m.source["weights_sha256"] and len(m.source["weights_sha256"]) == 64
    assert not m.module.training
    assert m.name == "digits"


def test_factory_returning_example_inputs_needs_no_shape() -> None:
    m = load_source(f"{MODEL_PY}:build_model_with_inputs")
    assert m.inputs[0].shape == (1, 1, 32, 32)


def test_no_shape_anywhere_is_an_error() -> None:
    with pytest.raises(UsageError, match="no input shape"):
        load_source(f"{MODEL_PY}:build_model")


def test_module_path_factory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "mypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "nets.py").write_text("import torch\n\ndef make():\n    return torch.nn.Linear(4, 2)\n")
    monkeypatch.chdir(tmp_path)
    m = load_source("mypkg.nets:make", None, ["1x4"])
    assert m.inputs[0].shape == (1, 4)
    assert default_name("mypkg.nets:make") == "nets"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nofile.py:build", "model file not found: nofile.py"),
        ("no_such_module_xyz:build", "cannot import module 'no_such_module_xyz'"),
        ("justtext", "invalid model source 'justtext'"),
        (f"{MODEL_PY}:nope", "'nope' is not a callable"),
    ],
)
def test_bad_sources(spec: str, message: str) -> None:
    with pytest.raises(ModelLoadError) as e:
        load_source(spec, None, ["1x1x32x32"])
    assert message in e.value.message
    assert e.value.hint


def test_missing_factory_lists_callables() -> None:
    with pytest.raises(ModelLoadError) as e:
        load_source(f"{MODEL_PY}:nope", None, ["1x1x32x32"])
    assert "build_model" in e.value.hint


def test_factory_raising_names_the_line(tmp_path: Path) -> None:
    f = tmp_path / "broken.py"
    f.write_text("def build():\n    x = 1\n    raise ValueError('bad config')\n")
    with pytest.raises(ModelLoadError) as e:
        load_source(f"{f}:build", None, ["1x4"])
    assert "raised at broken.py:3: ValueError: bad config" in e.value.message


def test_factory_returning_non_module(tmp_path: Path) -> None:
    f = tmp_path / "m.py"
    f.write_text("def build():\n    return 42\n")
    with pytest.raises(ModelLoadError, match=r"returned int, not a torch\.nn\.Module"):
        load_source(f"{f}:build", None, ["1x4"])


def test_pickled_whole_model_refused(tmp_path: Path) -> None:
    whole = tmp_path / "whole.pt"
    torch.save(nn.Linear(4, 2), whole)
    with pytest.raises(ModelLoadError) as e:
        load_source(f"{MODEL_PY}:build_model", whole, ["1x1x32x32"])
    assert "pickled Python object" in e.value.message
    assert "unpickling runs arbitrary code" in e.value.message
    assert "state_dict" in e.value.hint and "--weights" in e.value.hint
    with pytest.raises(ModelLoadError, match="pickled Python object"):
        load_source(str(whole))


def test_state_dict_as_source_explains(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError) as e:
        load_source(str(DIGITS / "weights.pt"))
    assert "is a weights file, not a model source" in e.value.message
    assert "--weights" in e.value.hint


def test_weights_that_do_not_match(tmp_path: Path) -> None:
    w = tmp_path / "w.pt"
    torch.save(nn.Linear(4, 2).state_dict(), w)
    with pytest.raises(ModelLoadError) as e:
        load_source(f"{MODEL_PY}:build_model", w, ["1x1x32x32"])
    assert "do not match the model" in e.value.message
    assert "missing keys" in e.value.message and "unexpected keys" in e.value.message


def test_wrong_input_shape() -> None:
    with pytest.raises(ModelLoadError) as e:
        load_source(f"{MODEL_PY}:build_model", None, ["1x3x32x32"])
    assert "fails on inputs of shape 1x3x32x32" in e.value.message
    assert "--input-shape" in e.value.hint


@pytest.mark.parametrize("text", ["1x", "axb", "1x0x3", "1x3:float99", ""])
def test_bad_input_shape_text(text: str) -> None:
    with pytest.raises(UsageError, match="--input-shape"):
        parse_input_shape(text)


def test_input_shape_forms() -> None:
    assert parse_input_shape("1x3x8x8") == (None, (1, 3, 8, 8), "float32")
    assert parse_input_shape("ids=1x16:int64") == ("ids", (1, 16), "int64")


def test_exported_program_source(tmp_path: Path) -> None:
    m = load_source(f"{MODEL_PY}:build_model", DIGITS / "weights.pt", ["1x1x32x32"])
    ep = torch.export.export(m.module, m.example_inputs)
    path = tmp_path / "digits.pt2"
    torch.export.save(ep, path)
    loaded = load_source(str(path))
    assert loaded.inputs[0].shape == (1, 1, 32, 32)
    assert loaded.exported is not None
    x = torch.randn(2, 1, 1, 32, 32)
    with torch.no_grad():
        assert torch.allclose(loaded.module(x[0]), m.module(x[0]), atol=1e-5)
    with pytest.raises(UsageError, match="does not match the shapes"):
        load_source(str(path), None, ["1x1x16x16"])
    with pytest.raises(UsageError, match="--weights cannot be used"):
        load_source(str(path), DIGITS / "weights.pt")
    bad = tmp_path / "bad.pt2"
    bad.write_bytes(b"not a zip")
    with pytest.raises(
        ModelLoadError, match=r"bad\.pt2 is not a \.pt2 archive \(not a valid zip file\)"
    ):
        load_source(str(bad))
