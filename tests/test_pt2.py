"""A .pt2 file is data: crafted archives that make torch.export.load run code are refused.

Each crafted file is a real torch.export .pt2 of a small model with one entry rewritten so
that loading it runs ``touch MARKER``. The first test shows torch itself runs every one of
them (so the marker check can fail); the others show edgepack refuses them, exits 2 with the
reason, writes nothing and the marker never appears.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

from edgepack.errors import ModelLoadError
from edgepack.pt2 import load_program
from edgepack.source import load_source


class _Touch:
    """A pickle that runs ``touch <marker>`` when unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch '{self.marker}'",))


class _Small(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.bn(self.conv(x)).mean((2, 3)))


def _real_pt2(path: Path) -> Path:
    torch.manual_seed(0)
    ep = torch.export.export(_Small().eval(), (torch.zeros(1, 1, 6, 6),))
    torch.export.save(ep, path)
    return path


def _rewrite(src: Path, dst: Path, edit: Callable[[str, bytes], bytes | None]) -> Path:
    """Copy the archive; edit(relative name, data) returns the new data or None to drop it."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        top = zin.namelist()[0].split("/", 1)[0]
        for info in zin.infolist():
            new = edit(info.filename.split("/", 1)[1], zin.read(info.filename))
            if new is not None:
                zout.writestr(info.filename, new)
        extra = edit("<add>", b"")
        if extra:
            name, _, data = extra.partition(b"\0")
            zout.writestr(f"{top}/{name.decode()}", data)
    return dst


def _pickle(marker: Path) -> bytes:
    buf = io.BytesIO()
    torch.save(_Touch(marker), buf)
    return buf.getvalue()


def _evil_sample_inputs(marker: Path) -> Callable[[str, bytes], bytes | None]:
    # torch tries weights_only=True on the example inputs, then falls back to a full unpickle
    def edit(name: str, data: bytes) -> bytes | None:
        return _pickle(marker) if name == "data/sample_inputs/model.pt" else data

    return edit


def _evil_pickled_weight(marker: Path) -> Callable[[str, bytes], bytes | None]:
    def edit(name: str, data: bytes) -> bytes | None:
        if name == "data/weights/model_weights_config.json":
            config = json.loads(data)
            config["config"]["conv.weight"]["use_pickle"] = True
            return json.dumps(config).encode()
        if name == "data/weights/" + _weight_file("conv.weight"):
            return _pickle(marker)
        return data

    return edit


def _evil_symbolic_shape(marker: Path) -> Callable[[str, bytes], bytes | None]:
    # shape expressions go through sympy.sympify, which is Python eval
    def edit(name: str, data: bytes) -> bytes | None:
        if name == "models/model.json":
            program = json.loads(data)
            tensor = next(iter(program["graph_module"]["graph"]["tensor_values"].values()))
            code = f"__import__('os').system('touch {marker}')"
            tensor["sizes"][0] = {"as_expr": {"expr_str": code, "hint": {"as_int": 1}}}
            return json.dumps(program).encode()
        return data

    return edit


def _evil_opaque_constant(marker: Path) -> Callable[[str, bytes], bytes | None]:
    # constants named opaque_obj_* are read with pickle.loads, even when not marked use_pickle
    import pickle

    payload = pickle.dumps(_Touch(marker))
    payload += b"\0" * (-len(payload) % 4)  # pickle ignores bytes after its STOP

    def edit(name: str, data: bytes) -> bytes | None:
        if name == "data/constants/model_constants_config.json":
            meta = {"path_name": "opaque_obj_0", "is_param": False, "use_pickle": False}
            meta["tensor_meta"] = _WEIGHT_META["conv.weight"]
            return json.dumps({"config": {"thing": meta}}).encode()
        if name == "<add>":
            return b"data/constants/opaque_obj_0\0" + payload
        return data

    return edit


# Filled by the real_pt2 fixture: the weights table of the real archive.
_WEIGHT_FILES: dict[str, str] = {}
_WEIGHT_META: dict[str, object] = {}


def _weight_file(fqn: str) -> str:
    return _WEIGHT_FILES[fqn]


@pytest.fixture(scope="module")
def real_pt2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = _real_pt2(tmp_path_factory.mktemp("pt2") / "small.pt2")
    with zipfile.ZipFile(path) as z:
        name = next(n for n in z.namelist() if n.endswith("model_weights_config.json"))
        for fqn, meta in json.loads(z.read(name))["config"].items():
            _WEIGHT_FILES[fqn] = meta["path_name"]
            _WEIGHT_META[fqn] = meta["tensor_meta"]
    return path


CRAFTED = {
    "pickled example inputs": (_evil_sample_inputs, "its example inputs are not plain tensors"),
    "pickled weight": (_evil_pickled_weight, "'conv.weight' is stored as a pickle"),
    "symbolic shape expression": (_evil_symbolic_shape, "it has symbolic (dynamic) shapes"),
    "opaque constant": (_evil_opaque_constant, "'thing' is not a tensor"),
}


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_torch_itself_runs_the_crafted_file(real_pt2: Path, tmp_path: Path, case: str) -> None:
    """The crafted files are real exploits: plain torch.export.load runs their code."""
    marker = tmp_path / "ran"
    evil = _rewrite(real_pt2, tmp_path / "evil.pt2", CRAFTED[case][0](marker))
    with contextlib.suppress(Exception):  # the payload runs before torch notices anything
        torch.export.load(evil)
    assert marker.exists()


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_build_refuses_crafted_pt2(cli, real_pt2: Path, tmp_path: Path, case: str) -> None:  # type: ignore[no-untyped-def]
    marker = tmp_path / "ran"
    craft, reason = CRAFTED[case]
    evil = _rewrite(real_pt2, tmp_path / "evil.pt2", craft(marker))
    out = tmp_path / "pkg"
    r = cli("build", evil, "--target", "host", "-o", out)
    assert r.code == 2, r.err
    assert f"error: {evil}: refused to load this .pt2: {reason}" in r.err
    assert "hint: " in r.err and "Traceback" not in r.err
    assert not marker.exists()
    assert not out.exists()


def test_legacy_and_compiled_entries_refused(real_pt2: Path, tmp_path: Path) -> None:
    def add_so(name: str, data: bytes) -> bytes | None:
        return b"data/aotinductor/model/model.so\0\x7fELF" if name == "<add>" else data

    with pytest.raises(
        ModelLoadError, match=r"unexpected entries data/aotinductor/model/model\.so"
    ):
        load_program(_rewrite(real_pt2, tmp_path / "aoti.pt2", add_so))

    def legacy(name: str, data: bytes) -> bytes | None:
        if name == "<add>":
            return b"version\x001"
        return None if name == "models/model.json" else data

    with pytest.raises(ModelLoadError, match=r"the old pickled torch\.export format"):
        load_program(_rewrite(real_pt2, tmp_path / "legacy.pt2", legacy))


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("truncated", "is not a .pt2 archive (not a valid zip file)"),
        ("random bytes", "is not a .pt2 archive (not a valid zip file)"),
        ("empty", "is not a .pt2 archive (not a valid zip file)"),
        ("no program", "is not a complete torch.export archive: missing models/model.json"),
        ("bad weights table", "model_weights_config.json is not a valid payload table"),
    ],
)
def test_corrupt_pt2_is_a_clean_error(  # type: ignore[no-untyped-def]
    cli, real_pt2: Path, tmp_path: Path, case: str, message: str
) -> None:
    path = tmp_path / "bad.pt2"
    data = real_pt2.read_bytes()
    if case == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif case == "random bytes":
        path.write_bytes(bytes(range(256)) * 8)
    elif case == "empty":
        path.write_bytes(b"")
    elif case == "no program":
        _rewrite(real_pt2, path, lambda n, d: None if n == "models/model.json" else d)
    else:
        _rewrite(real_pt2, path, lambda n, d: b"{" if n.endswith("weights_config.json") else d)
    r = cli("build", path, "--target", "host", "-o", tmp_path / "pkg")
    assert r.code == 2, r.err
    assert f"error: {path} {message}" in r.err or f"error: {path}: {message}" in r.err
    assert "hint: the file is damaged or not a .pt2" in r.err
    assert "Traceback" not in r.err and not (tmp_path / "pkg").exists()


def test_real_programs_still_load(real_pt2: Path) -> None:
    """A plain torch.export.save file (weights and batch-norm buffers) loads and runs the same."""
    torch.manual_seed(0)
    ref = _Small().eval()
    model = load_source(str(real_pt2))
    x = torch.randn(1, 1, 6, 6)
    with torch.no_grad():
        assert torch.allclose(model.module(x), ref(x), atol=1e-6)
    assert model.inputs[0].shape == (1, 1, 6, 6)
