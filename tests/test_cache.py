"""The export/conversion cache: storage, keys, and real builds that hit, miss and rebuild."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from edgepack.cache import (
    DEFAULT_MAX_MB,
    ArtifactCache,
    convert_key,
    default_dir,
    default_max_bytes,
    export_key,
)
from edgepack.errors import UsageError
from edgepack.manifest import read_manifest
from edgepack.source import load_source

# ----------------------------------------------------------------------- the store


def _artifact(tmp_path: Path, name: str, data: bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


def test_put_then_get_returns_the_same_bytes(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path / "c", max_bytes=1 << 20)
    assert cache.get("k1", tmp_path / "out") is None  # empty: a miss
    assert cache.put("k1", _artifact(tmp_path, "a", b"abc" * 100), {"nodes": 7})
    hit = cache.get("k1", tmp_path / "out")
    assert hit is not None and hit.meta["nodes"] == 7 and hit.key == "k1"
    assert (tmp_path / "out").read_bytes() == b"abc" * 100


@pytest.mark.parametrize("damage", ["truncate", "flip", "meta"])
def test_a_damaged_entry_is_a_miss_and_is_deleted(tmp_path: Path, damage: str) -> None:
    cache = ArtifactCache(tmp_path / "c", max_bytes=1 << 20)
    cache.put("k1", _artifact(tmp_path, "a", b"0123456789" * 50))
    (entry,) = [e for _, _, e in cache.entries()]
    blob = entry / "artifact"
    if damage == "truncate":
        blob.write_bytes(blob.read_bytes()[:100])
    elif damage == "flip":
        data = bytearray(blob.read_bytes())
        data[10] ^= 0xFF
        blob.write_bytes(bytes(data))
    else:
        (entry / "meta.json").write_text("{not json")
    out = tmp_path / "out"
    assert cache.get("k1", out) is None
    assert not out.exists()  # no half-verified copy left behind
    assert not entry.exists() and cache.entries() == []


def test_least_recently_used_entries_are_evicted_over_the_cap(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path / "c", max_bytes=2500)
    for i, key in enumerate(("old", "used", "new")):
        cache.put(key, _artifact(tmp_path, key, bytes([i]) * 1000))
        for _, _, e in cache.entries():
            if e.name == key:  # distinct last-use times without sleeping
                os.utime(e / "meta.json", (1000 + i, 1000 + i))
    # "new" made it 3000 > 2500 bytes: the least recently used ("old") went.
    assert sorted(e.name for _, _, e in cache.entries()) == ["new", "used"]
    assert cache.get("used", tmp_path / "o") is not None  # refreshes its last use
    cache.put("newer", _artifact(tmp_path, "newer", b"x" * 1000))
    assert sorted(e.name for _, _, e in cache.entries()) == ["newer", "used"]
    # An artifact larger than the whole cache is not stored.
    assert not cache.put("huge", _artifact(tmp_path, "huge", b"x" * 3000))


def test_cache_folder_and_size_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EDGEPACK_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_dir() == tmp_path / "xdg" / "edgepack"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_dir() == tmp_path / "home" / ".cache" / "edgepack"
    monkeypatch.setenv("EDGEPACK_CACHE_DIR", str(tmp_path / "mine"))
    assert default_dir() == tmp_path / "mine"
    monkeypatch.delenv("EDGEPACK_CACHE_MAX_MB", raising=False)
    assert default_max_bytes() == DEFAULT_MAX_MB * 1024 * 1024
    monkeypatch.setenv("EDGEPACK_CACHE_MAX_MB", "1.5")
    assert default_max_bytes() == 1572864
    monkeypatch.setenv("EDGEPACK_CACHE_MAX_MB", "lots")
    with pytest.raises(UsageError) as exc:
        default_max_bytes()
    assert exc.value.message == "EDGEPACK_CACHE_MAX_MB='lots' is not a size in MB"
    assert "EDGEPACK_CACHE_MAX_MB=4096" in exc.value.hint


def test_the_session_never_uses_the_real_user_cache(_private_cache: Path) -> None:
    assert default_dir() == _private_cache


# ----------------------------------------------------------------------- keys

MODEL = """\
import torch
from torch import nn
from layers import Block


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = Block()
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        return self.head(self.block(x).mean(dim=(2, 3)))


def build_model():
    torch.manual_seed(0)
    return Net()
"""

LAYERS = """\
from torch import nn


class Block(nn.Sequential):
    def __init__(self):
        super().__init__(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
"""


def _project(tmp_path: Path) -> Path:
    (tmp_path / "model.py").write_text(MODEL)
    (tmp_path / "layers.py").write_text(LAYERS)
    return tmp_path / "model.py"


def _key(
    model_py: Path, weights: Path | None = None, shape: str = "1x3x8x8", fresh: bool = True
) -> str | None:
    if fresh:  # as in a new process: the neighbour module is imported again
        sys.modules.pop("layers", None)
    return export_key(load_source(f"{model_py}:build_model", weights, (shape,)))


def test_the_key_follows_the_code_the_weights_and_the_inputs(tmp_path: Path) -> None:
    import torch

    model_py = _project(tmp_path)
    base = _key(model_py)
    assert base is not None and len(base) == 64
    assert _key(model_py) == base  # stable: same code, same inputs
    assert _key(model_py, shape="1x3x16x16") != base
    # The factory's own file changes (a comment is a change too: keys never guess).
    model_py.write_text(MODEL.replace("torch.manual_seed(0)", "torch.manual_seed(1)  # v2"))
    assert _key(model_py) not in (None, base)
    model_py.write_text(MODEL)
    assert _key(model_py) == base
    # A neighbour the model imports changes. Held in memory from before the edit (a
    # long-running process): the file no longer says what runs, so there is no key.
    (tmp_path / "layers.py").write_text(LAYERS.replace("nn.ReLU()", "nn.ReLU6()"))
    assert _key(model_py, fresh=False) is None
    assert _key(model_py) not in (None, base)
    (tmp_path / "layers.py").write_text(LAYERS)
    # Weights: their sha256, not their name.
    weights = tmp_path / "w.pt"
    state = load_source(f"{model_py}:build_model", None, ("1x3x8x8",)).module.state_dict()
    torch.save(state, weights)
    with_w = _key(model_py, weights)
    assert with_w not in (None, base)
    torch.save({k: v + 1 for k, v in state.items()}, weights)
    assert _key(model_py, weights) not in (None, base, with_w)
    # The conversion key adds the layout.
    assert convert_key(base, "nchw") != convert_key(base, "nhwc")


def test_a_pt2_source_is_keyed_by_its_bytes(tmp_path: Path) -> None:
    import torch

    model_py = _project(tmp_path)
    model = load_source(f"{model_py}:build_model", None, ("1x3x8x8",))
    ep = torch.export.export(model.module, model.example_inputs, strict=False)
    torch.export.save(ep, tmp_path / "a.pt2")
    k = export_key(load_source(str(tmp_path / "a.pt2")))
    assert k is not None
    assert export_key(load_source(str(tmp_path / "a.pt2"))) == k
    model.module.head.bias.data += 1
    torch.export.save(torch.export.export(model.module, model.example_inputs), tmp_path / "a.pt2")
    assert export_key(load_source(str(tmp_path / "a.pt2"))) != k


# ----------------------------------------------------------------------- real builds


def _build(cli: Callable[..., object], model_py: Path, out: Path, *extra: str | Path) -> dict:
    sys.modules.pop("layers", None)  # each build as in a new process
    res = cli(
        "build",
        f"{model_py}:build_model",
        "--input-shape",
        "1x3x8x8",
        "--latency-runs",
        "0",
        "-o",
        out,
        *extra,
    )
    assert res.code == 0, res.err  # type: ignore[attr-defined]
    m = read_manifest(out)
    m["_stderr"] = res.err  # type: ignore[attr-defined]
    return m


def _status(m: dict) -> tuple[str, str]:
    c = m["build"]["cache"]
    return c["export"]["status"], c["convert"]["status"]


def _entries(root: Path) -> dict[str, str]:
    """Cache entry key -> artifact kind."""
    return {
        p.parent.name: json.loads(p.read_text())["artifact"] for p in root.glob("v*/*/meta.json")
    }


@pytest.mark.slow
def test_second_build_takes_export_and_conversion_from_the_cache_byte_identical(
    cli: Callable[..., object], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGEPACK_CACHE_DIR", str(tmp_path / "cache"))
    model_py = _project(tmp_path)

    cold = _build(cli, model_py, tmp_path / "host", "--target", "host")
    assert _status(cold) == ("miss", "miss")
    key = cold["build"]["cache"]["export"]["key"]
    assert "export: torch.export" in cold["_stderr"]
    assert sorted(_entries(tmp_path / "cache").values()) == ["convert", "export"]

    # Another target and mode: both steps from the cache, and progress says so.
    warm = _build(
        cli, model_py, tmp_path / "rpi4", "--target", "rpi4", "--quantization", "dynamic-range"
    )
    assert _status(warm) == ("hit", "hit")
    assert warm["build"]["cache"]["export"]["key"] == key
    assert f"export: cache hit (key {key[:12]})" in warm["_stderr"]
    assert "convert: cache hit (key " in warm["_stderr"]
    assert "torch.export" not in warm["_stderr"] and "litert-torch" not in warm["_stderr"]

    # The same build without the cache: the same bytes, the same manifest outside "build".
    fresh = _build(
        cli,
        model_py,
        tmp_path / "rpi4-fresh",
        "--target",
        "rpi4",
        "--quantization",
        "dynamic-range",
        "--no-cache",
    )
    assert fresh["build"]["cache"]["export"] == {"status": "off", "reason": "--no-cache"}
    for f in ("model.tflite", "model_float32.tflite", "summary.md"):
        assert (tmp_path / "rpi4" / f).read_bytes() == (tmp_path / "rpi4-fresh" / f).read_bytes()

    def core(m: dict) -> dict:
        return {k: v for k, v in m.items() if k not in ("build", "_stderr")}

    assert core(fresh) == core(warm)
    assert len(_entries(tmp_path / "cache")) == 2  # --no-cache stored nothing


@pytest.mark.slow
def test_changed_code_or_weights_miss_and_a_damaged_entry_is_rebuilt(
    cli: Callable[..., object], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    cache_dir = tmp_path / "cache"
    monkeypatch.setenv("EDGEPACK_CACHE_DIR", str(cache_dir))
    model_py = _project(tmp_path)
    weights = tmp_path / "weights.pt"
    state = load_source(f"{model_py}:build_model", None, ("1x3x8x8",)).module.state_dict()
    torch.save(state, weights)

    def float_bytes(out: Path) -> bytes:
        return (out / "model_float32.tflite").read_bytes()

    first = _build(cli, model_py, tmp_path / "a", "--target", "host", "--weights", weights)
    assert _status(first) == ("miss", "miss")

    # The factory's code changes (same file, same name): a miss and a different model.
    model_py.write_text(
        MODEL.replace(
            "return self.head(self.block(x).mean(dim=(2, 3)))",
            "return torch.tanh(self.head(self.block(x).mean(dim=(2, 3))))",
        )
    )
    code = _build(cli, model_py, tmp_path / "b", "--target", "host", "--weights", weights)
    assert _status(code) == ("miss", "miss")
    assert code["build"]["cache"]["export"]["key"] != first["build"]["cache"]["export"]["key"]
    assert float_bytes(tmp_path / "b") != float_bytes(tmp_path / "a")
    assert "TANH" in code["model"]["ops"] and "TANH" not in first["model"]["ops"]
    model_py.write_text(MODEL)

    # New weights under the same file name: a miss and a different model.
    torch.save({k: v * 0.5 for k, v in state.items()}, weights)
    new_w = _build(cli, model_py, tmp_path / "c", "--target", "host", "--weights", weights)
    assert _status(new_w) == ("miss", "miss")
    assert float_bytes(tmp_path / "c") != float_bytes(tmp_path / "a")

    # Back to the first weights: a hit, then a truncated entry is detected and rebuilt.
    torch.save(state, weights)
    again = _build(cli, model_py, tmp_path / "d", "--target", "host", "--weights", weights)
    assert _status(again) == ("hit", "hit")
    assert float_bytes(tmp_path / "d") == float_bytes(tmp_path / "a")
    ckey = again["build"]["cache"]["convert"]["key"]
    blob = next(cache_dir.glob(f"v*/{ckey}/artifact"))
    blob.write_bytes(blob.read_bytes()[: blob.stat().st_size // 2])
    fixed = _build(cli, model_py, tmp_path / "e", "--target", "host", "--weights", weights)
    assert _status(fixed) == ("hit", "miss")
    assert float_bytes(tmp_path / "e") == float_bytes(tmp_path / "a")
    assert (tmp_path / "e" / "model.tflite").read_bytes() == (
        tmp_path / "a" / "model.tflite"
    ).read_bytes()
    assert blob.stat().st_size == len(float_bytes(tmp_path / "a"))  # stored again, whole


# ----------------------------------------------------------------------- options


def test_no_cache_and_the_config_key_reach_every_target(tmp_path: Path) -> None:
    from edgepack.release.config import Overrides, parse_config, resolve
    from tests.release.conftest import CONFIG, make_project

    project = make_project(tmp_path / "repo")
    cfg = parse_config(CONFIG, "edgepack.toml")
    on = resolve(cfg, project / "edgepack.toml", Overrides())
    assert [t.plan.cache for t in on.targets] == [True, True, True]
    off = resolve(cfg, project / "edgepack.toml", Overrides(no_cache=True))
    assert [t.plan.cache for t in off.targets] == [False, False, False]
    text = CONFIG.replace("[build]\n", "[build]\ncache = false\n")
    assert "cache = false" in text
    from_file = resolve(parse_config(text, "edgepack.toml"), project / "edgepack.toml", Overrides())
    assert [t.plan.cache for t in from_file.targets] == [False, False, False]


def test_a_bad_cache_size_is_an_input_error_before_the_model_loads(
    cli: Callable[..., object], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGEPACK_CACHE_MAX_MB", "-5")
    (tmp_path / "model.py").write_text("raise RuntimeError('the model was imported')\n")
    args = ["build", f"{tmp_path}/model.py:f", "--input-shape", "1x3", "--target", "host"]
    res = cli(*args, "-o", tmp_path / "out")
    assert res.code == 2  # type: ignore[attr-defined]
    err = res.err  # type: ignore[attr-defined]
    assert "error: EDGEPACK_CACHE_MAX_MB='-5' is not a size in MB" in err
    assert "hint: set it to a number >= 0" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()
    # --no-cache does not read the setting: the build gets as far as the model.
    res = cli(*args, "-o", tmp_path / "out", "--no-cache")
    assert res.code == 2 and "the model was imported" in res.err  # type: ignore[attr-defined]


def test_a_second_writer_of_the_same_key_keeps_the_first_entry(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path / "c", max_bytes=1 << 20)
    assert cache.put("k", _artifact(tmp_path, "a", b"first"))
    assert not cache.put("k", _artifact(tmp_path, "b", b"second"))
    hit = cache.get("k", tmp_path / "out")
    assert hit is not None and (tmp_path / "out").read_bytes() == b"first"
    assert [p.name for p in (tmp_path / "c" / "v1").iterdir()] == ["k"]  # no temp left


def test_temp_folders_of_killed_builds_are_cleaned_up(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path / "c", max_bytes=1 << 20)
    cache.put("k", _artifact(tmp_path, "a", b"x"))
    old, fresh = tmp_path / "c" / "v1" / ".tmp-old", tmp_path / "c" / "v1" / ".tmp-fresh"
    for d in (old, fresh):
        d.mkdir()
        (d / "artifact").write_bytes(b"partial")
    os.utime(old, (0, 0))
    assert [e.name for _, _, e in cache.entries()] == ["k"]
    assert not old.exists() and fresh.exists()  # a build may still be writing this one
