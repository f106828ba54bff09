from __future__ import annotations

from pathlib import Path

import pytest

from edgepack.errors import ProfileError
from edgepack.targets import IODtype, QuantMode, builtin_names, load_target, parse_profile

REQUIRED = {"host", "rpi4", "rpi5", "android-arm64", "android-gpu", "coral-usb", "coral-devboard"}


def test_builtin_profiles_all_validate() -> None:
    names = set(builtin_names())
    assert names >= REQUIRED
    for n in names:
        p = load_target(n)
        assert p.name == n
        assert len(p.sha256) == 64


def test_profile_defaults_match_device_needs() -> None:
    coral = load_target("coral-usb")
    assert coral.quantization.mode == QuantMode.FULL_INT8
    assert coral.quantization.io_dtype == IODtype.UINT8
    assert coral.quantization.io_layout.value == "nhwc"
    assert coral.runtime.delegate.value == "edgetpu"
    assert load_target("android-gpu").quantization.mode == QuantMode.FLOAT16
    assert load_target("android-arm64").bench.transport.value == "adb"
    assert load_target("rpi4").bench.transport.value == "ssh"
    assert load_target("host").bench.transport.value == "local"


def test_unknown_target_lists_close_names_and_never_picks() -> None:
    with pytest.raises(ProfileError) as e:
        load_target("rpi")
    assert e.value.message == "unknown target 'rpi'"
    assert "'rpi4'" in e.value.hint and "'rpi5'" in e.value.hint
    with pytest.raises(ProfileError) as e:
        load_target("zzzzzz")
    assert "known targets:" in e.value.hint and "coral-usb" in e.value.hint


def _rpi4_text() -> str:
    from edgepack.targets import targets_dir

    return (targets_dir() / "rpi4.toml").read_text()


def test_unknown_key_rejected_with_its_name() -> None:
    text = _rpi4_text().replace("[runtime]", "[runtime]\nthread = 4")
    with pytest.raises(ProfileError) as e:
        parse_profile(text, "board.toml")
    assert "unknown key 'runtime.thread'" in e.value.message


def test_invalid_values_all_reported() -> None:
    text = (
        _rpi4_text()
        .replace('mode = "full-int8"', 'mode = "int4"')
        .replace("cores = 4", "cores = 0")
    )
    with pytest.raises(ProfileError) as e:
        parse_profile(text, "board.toml")
    assert "quantization.mode" in e.value.message and "device.cores" in e.value.message


def test_int_io_requires_full_int8() -> None:
    text = (
        _rpi4_text()
        .replace('mode = "full-int8"', 'mode = "dynamic-range"')
        .replace('io_dtype = "float32"', 'io_dtype = "uint8"')
    )
    with pytest.raises(ProfileError, match="io_dtype 'uint8' needs mode 'full-int8'"):
        parse_profile(text, "board.toml")


def test_bad_toml_names_the_file() -> None:
    with pytest.raises(ProfileError) as e:
        parse_profile("name = ", "mine.toml")
    assert "mine.toml is not valid TOML" in e.value.message


def test_user_profile_file(tmp_path: Path) -> None:
    p = tmp_path / "myboard.toml"
    p.write_text(_rpi4_text().replace('name = "rpi4"', 'name = "myboard"'))
    prof = load_target(str(p))
    assert prof.name == "myboard"
    assert prof.sha256 != load_target("rpi4").sha256
    with pytest.raises(ProfileError, match="target profile file not found"):
        load_target(str(tmp_path / "missing.toml"))


def test_hash_ignores_comments_and_formatting() -> None:
    text = _rpi4_text()
    a = parse_profile(text, "a")
    b = parse_profile("# a comment\n" + text.replace(" = ", "="), "b")
    assert a.sha256 == b.sha256


def test_every_stock_profile_carries_the_default_accuracy_guard() -> None:
    """A build with --eval data is gated even when the user sets no limit (docs/targets.md)."""
    for n in builtin_names():
        b = load_target(n).budgets
        assert b.max_accuracy_drop == 2.0 and b.min_fidelity == 0.98, n
