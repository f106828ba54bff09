"""`edgepack build` without --quantization: the profile's preference list, and size limits
checked as soon as the quantized model exists (before validation)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgepack.targets import targets_dir
from tests.conftest import digits_build_args

pytestmark = pytest.mark.slow


def test_digits_default_rpi4_build_keeps_full_int8_in_one_attempt(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "digits-rpi4"
    r = cli(*digits_build_args("rpi4", "-o", out))
    assert r.code == 0, r.err
    m = json.loads((out / "manifest.json").read_text())
    q = m["quantization"]
    assert q["mode"] == "full-int8" and q["preference"] == ["full-int8", "dynamic-range"]
    drop = m["metrics"]["accuracy"]["drop_points"]
    assert q["attempts"] == [
        {
            "mode": "full-int8",
            "outcome": "chosen",
            "reason": f"passed its checks and max_accuracy_drop {round(drop, 4)} <= 2.0",
        }
    ]
    assert "chosen from the rpi4 profile's list" not in r.err
    assert "quantization choice" not in (out / "summary.md").read_text()
    assert [s["name"] for s in m["stages"]].count("quantize") == 1
    # No release cap in the stock profile: the RAM limit is the board's (1 GB Pi 4).
    gates = {g["gate"]: g for g in m["metrics"]["gates"]}
    assert "max_model_kb" not in gates
    assert gates["max_ram_mb"]["limit"] == 1024.0 and gates["max_ram_mb"]["passed"] is True


def test_size_limit_fails_before_validation(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A user's board profile with a 1 KB cap (and the older one-mode form): the build stops
    right after quantization, names the size, and never runs validation."""
    board = tmp_path / "tiny.toml"
    text = (targets_dir() / "rpi4.toml").read_text()
    text = text.replace('name = "rpi4"', 'name = "tiny"')
    text = text.replace('mode = ["full-int8", "dynamic-range"]', 'mode = "full-int8"')
    board.write_text(text.replace("[budgets]\n", "[budgets]\nmax_model_kb = 1\n"))
    out = tmp_path / "p"
    r = cli(*digits_build_args(str(board), "-o", out))  # not --quiet: progress on stderr
    assert r.code == 3, r.err
    assert "  quantize: full-int8" in r.err
    assert "validate:" not in r.err and "preflight" not in r.err
    size_kb = float(r.err.split("error: budget gate failed: max_model_kb ")[1].split(" ")[0])
    assert size_kb > 1.0
    assert (
        f"error: budget gate failed: max_model_kb {size_kb} > 1.0 (model size of the full-int8 "
        f"model is {size_kb} KB; the limit is the tiny profile's budget); checked before "
        "validation, no package was written"
    ) in r.err
    assert "hint: " in r.err and "Traceback" not in r.err
    assert not out.exists()


def test_a_mode_missing_the_accuracy_guard_hands_over_to_the_next(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """host's list is dynamic-range, then float32: with a cosine limit dynamic-range cannot
    meet (int8 weights; ~0.9995 on digits), float32 ships and the refusal says why."""
    out = tmp_path / "p"
    r = cli(*digits_build_args("host", "-o", out, "--min-fidelity", "0.9999", "--quiet"))
    assert r.code == 0, r.err
    m = json.loads((out / "manifest.json").read_text())
    q = m["quantization"]
    assert q["mode"] == "float32" and q["preference"] == ["dynamic-range", "float32"]
    refused, chosen = q["attempts"]
    assert refused["mode"] == "dynamic-range" and refused["outcome"] == "refused"
    assert refused["reason"].startswith("fidelity gate failed: output cosine vs the float model")
    assert "< 0.9999" in refused["reason"] and "for dynamic-range" in refused["reason"]
    cos = m["metrics"]["fidelity"]["cosine"]
    assert cos >= 0.9999
    assert chosen["mode"] == "float32" and chosen["outcome"] == "chosen"
    assert chosen["reason"] == f"passed its checks and min_fidelity {cos} >= 0.9999"
    assert "quantization: float32 chosen from the host profile's list" in r.err
