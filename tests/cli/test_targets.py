from __future__ import annotations

import json


def test_targets_list(cli) -> None:  # type: ignore[no-untyped-def]
    r = cli("targets", "list")
    assert r.code == 0
    for name in (
        "host",
        "rpi4",
        "rpi5",
        "android-arm64",
        "android-gpu",
        "coral-usb",
        "coral-devboard",
    ):
        assert name in r.out
    data = json.loads(cli("targets", "list", "--json").out)
    assert {d["name"] for d in data} >= {"rpi4", "coral-usb"}


def test_targets_show(cli) -> None:  # type: ignore[no-untyped-def]
    r = cli("targets", "show", "coral-usb")
    assert (
        r.code == 0 and 'io_dtype = "uint8"' in r.out and "sha256 of the resolved profile" in r.out
    )
    d = json.loads(cli("targets", "show", "rpi4", "--json").out)
    assert d["runtime"]["threads"] == 4 and len(d["sha256"]) == 64


def test_targets_show_unknown(cli) -> None:  # type: ignore[no-untyped-def]
    r = cli("targets", "show", "coral")
    assert r.code == 2
    assert "error: unknown target 'coral'" in r.err
    assert "'coral-usb'" in r.err and "'coral-devboard'" in r.err


def test_a_profile_with_a_mistyped_mode_is_refused_before_any_work(cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from edgepack.targets import targets_dir

    text = (targets_dir() / "rpi4.toml").read_text()
    board = tmp_path / "board.toml"
    board.write_text(text.replace('"dynamic-range"]', '"dynamic_range"]'))
    r = cli("build", "model.py:build_model", "--target", board)
    assert r.code == 2
    assert (
        f"error: invalid target profile {board}: 'quantization.mode[1]': 'dynamic_range' is "
        "not one of 'float32', 'float16', 'dynamic-range', 'full-int8'; did you mean "
        "'dynamic-range'?"
    ) in r.err
    assert "Traceback" not in r.err
