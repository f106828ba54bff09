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
    # Accelerators get the one mode they run; CPUs a preference list with a float fallback.
    modes = {n: [m.value for m in load_target(n).quantization.modes] for n in builtin_names()}
    assert modes["coral-usb"] == modes["coral-devboard"] == ["full-int8"]
    assert modes["rpi4"] == modes["rpi5"] == ["full-int8", "dynamic-range"]
    assert modes["android-gpu"] == ["float16", "float32"]
    assert modes["host"] == ["dynamic-range", "float32"]
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
        .replace('mode = ["full-int8", "dynamic-range"]', 'mode = "int4"')
        .replace("cores = 4", "cores = 0")
    )
    with pytest.raises(ProfileError) as e:
        parse_profile(text, "board.toml")
    assert "quantization.mode" in e.value.message and "device.cores" in e.value.message


def test_int_io_requires_full_int8() -> None:
    text = (
        _rpi4_text()
        .replace('mode = ["full-int8", "dynamic-range"]', 'mode = "dynamic-range"')
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


def _with_modes(value: str) -> str:
    text = _rpi4_text()
    assert 'mode = ["full-int8", "dynamic-range"]' in text
    return text.replace('mode = ["full-int8", "dynamic-range"]', f"mode = {value}")


def test_quantization_list_and_single_mode_forms() -> None:
    listed = parse_profile(_rpi4_text(), "rpi4.toml").quantization
    assert listed.modes == [QuantMode.FULL_INT8, QuantMode.DYNAMIC_RANGE]
    assert listed.mode == QuantMode.FULL_INT8  # the preferred one
    single = parse_profile(_with_modes('"dynamic-range"'), "old.toml")  # the older form
    assert single.quantization.modes == [QuantMode.DYNAMIC_RANGE]
    # one mode is written back as a string: a profile hash recorded before lists stays valid
    assert single.to_dict()["quantization"]["mode"] == "dynamic-range"
    assert parse_profile(_with_modes('["dynamic-range"]'), "x").sha256 == single.sha256
    # A manifest's copy of the profile (list form) reads back to the same profile.
    assert type(single).from_dict(single.to_dict()).sha256 == single.sha256


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            '["full-int8", "dynamc-range"]',
            "'quantization.mode[1]': 'dynamc-range' is not one of 'float32', 'float16', "
            "'dynamic-range', 'full-int8'; did you mean 'dynamic-range'?",
        ),
        (
            '"full_int8"',
            "'quantization.mode': 'full_int8' is not one of 'float32', 'float16', "
            "'dynamic-range', 'full-int8'; did you mean 'full-int8'?",
        ),
        ("[]", "'quantization.mode': must list at least one value, got []"),
        ('["float16", "float16"]', "'quantization.mode': 'float16' listed more than once"),
    ],
)
def test_bad_quantization_list_rejected_with_the_closest_name(value: str, message: str) -> None:
    with pytest.raises(ProfileError) as e:
        parse_profile(_with_modes(value), "board.toml")
    assert e.value.message == f"invalid target profile board.toml: {message}"
    assert "docs/targets.md" in e.value.hint


def test_integer_io_needs_a_full_int8_only_list() -> None:
    text = _rpi4_text().replace('io_dtype = "float32"', 'io_dtype = "int8"')
    with pytest.raises(ProfileError) as e:
        parse_profile(text, "board.toml")
    assert "io_dtype 'int8' needs mode 'full-int8' only (the list has 'dynamic-range')" in (
        e.value.message
    )


def test_stock_profiles_hold_physical_limits_not_release_caps() -> None:
    """No stock size cap or RAM budget: the board's RAM is the limit (device.ram_mb)."""
    for n in builtin_names():
        p = load_target(n)
        assert p.budgets.max_model_kb is None and p.budgets.max_ram_mb is None, n
    assert load_target("rpi4").device.ram_mb == 1024  # the 1 GB Pi 4, the smallest variant
