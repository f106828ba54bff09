"""--shard I/N and [[models]]: the slices of a matrix, and every bad input (fast: dry runs,
no build)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgepack.errors import UsageError
from edgepack.release.shard import Shard, assign, parse_shard
from tests.release.conftest import make_project, run_cli

TINY_MODEL = """\
import torch
from torch import nn


def build_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 15 * 15, 10)
    ).eval()
"""

MODELS = """\
schema = 1

[data]
calibration = "calib.npz"

[build]
jobs = 1
latency_runs = 3

[[models]]
name = "digits"
source = "model.py:build_model"
weights = "weights.pt"
input_shapes = ["1x1x32x32"]
data = {{ eval = "eval.npz" }}

[[models]]
name = "tiny"
source = "tiny.py:build_model"
input_shapes = ["1x1x32x32"]
{tiny_targets}
{targets}"""

TWO_TARGETS = """
[[targets]]
target = "rpi4"

[[targets]]
target = "host"
"""

THREE_TARGETS = (
    TWO_TARGETS
    + """
[[targets]]
target = "host"
variant = "f16"
quantization = "float16"
"""
)


def models_project(
    root: Path, targets: str = TWO_TARGETS, tiny_targets: str = 'targets = ["host", "rpi4"]'
) -> Path:
    """Two models (the digits CNN and a tiny seeded CNN) in one edgepack.toml."""
    project = make_project(root, MODELS.format(targets=targets, tiny_targets=tiny_targets))
    (project / "tiny.py").write_text(TINY_MODEL)
    return project


def dry_run(project: Path, *args: str) -> dict:
    code, out, err = run_cli(["build", "--dry-run", "--json", *args], project)
    assert code == 0, err
    return json.loads(out)


def test_models_times_targets_times_variants(tmp_path: Path) -> None:
    project = models_project(tmp_path / "repo", THREE_TARGETS, tiny_targets="")
    plan = dry_run(project)
    assert [m["name"] for m in plan["models"]] == ["digits", "tiny"]
    # Each model's data: the top-level [data] with the model's own keys on top.
    assert plan["models"][0]["data"]["eval"] == "eval.npz"
    assert plan["models"][1]["data"]["eval"] is None
    assert plan["models"][1]["data"]["calibration"] == "calib.npz"
    ids = [(t["id"], t["model"], t["output"]) for t in plan["targets"]]
    assert ids == [
        ("digits/rpi4", "digits", "dist/digits-rpi4"),
        ("digits/host", "digits", "dist/digits-host"),
        ("digits/host-f16", "digits", "dist/digits-host-f16"),
        ("tiny/rpi4", "tiny", "dist/tiny-rpi4"),
        ("tiny/host", "tiny", "dist/tiny-host"),
        ("tiny/host-f16", "tiny", "dist/tiny-host-f16"),
    ]
    # targets = [...] picks entries by id or by target name (all its variants).
    project2 = models_project(tmp_path / "repo2", THREE_TARGETS, 'targets = ["host-f16"]')
    assert [t["id"] for t in dry_run(project2)["targets"]][3:] == ["tiny/host-f16"]
    # --target selects among each model's entries.
    assert [t["id"] for t in dry_run(project, "--target", "rpi4")["targets"]] == [
        "digits/rpi4",
        "tiny/rpi4",
    ]


def _slices(project: Path, n: int) -> list[list[str]]:
    return [
        [t["id"] for t in dry_run(project, "--shard", f"{i}/{n}")["targets"]]
        for i in range(1, n + 1)
    ]


def test_shards_cover_the_matrix_once_and_are_stable(tmp_path: Path) -> None:
    project = models_project(tmp_path / "repo", THREE_TARGETS, tiny_targets="")
    full = [t["id"] for t in dry_run(project)["targets"]]
    assert len(full) == 6
    for n in (1, 2, 3, 4):
        slices = _slices(project, n)
        flat = [j for s in slices for j in s]
        assert sorted(flat) == sorted(full) and len(flat) == len(set(flat)), n  # no overlap
        sizes = [len(s) for s in slices]
        assert max(sizes) - min(sizes) <= 1, (n, sizes)  # balanced
        assert _slices(project, n) == slices  # the same slices on a second call
    # A model's targets stay together: with 2 shards each shard exports one model.
    assert [sorted({j.split("/")[0] for j in s}) for s in _slices(project, 2)] == [
        ["digits"],
        ["tiny"],
    ]
    # The plan says which shard it is and what the other shards build.
    plan = dry_run(project, "--shard", "2/3")
    assert plan["shard"] == {"index": 2, "count": 3}
    assert {t["shard"] for t in plan["targets"]} == {2}
    skipped = {s["id"]: s["shard"] for s in plan["skipped"]}
    assert sorted(skipped) == sorted(set(full) - {t["id"] for t in plan["targets"]})
    assert set(skipped.values()) == {1, 3}
    code, out, _ = run_cli(["build", "--dry-run", "--shard", "2/3"], project)
    assert code == 0
    assert "shard 2/3: 2 of 6 job(s) of the matrix here" in out
    # Sorted by (model, target, variant), cut into 3 slices of 2: digits' host variants,
    # then digits/rpi4 + tiny/host, then tiny's host-f16 and rpi4.
    assert [t["id"] for t in plan["targets"]] == ["digits/rpi4", "tiny/host"]
    assert (
        "skipped (other shards): digits/host (1/3), digits/host-f16 (1/3), tiny/rpi4 (3/3), "
        "tiny/host-f16 (3/3)\n"
    ) in out


def test_more_shards_than_jobs_leaves_empty_slices(tmp_path: Path) -> None:
    project = models_project(tmp_path / "repo")  # 4 jobs
    slices = _slices(project, 6)
    assert [len(s) for s in slices] == [1, 1, 1, 1, 0, 0]
    # An empty slice is a valid plan (its CI job builds nothing and says so).
    assert dry_run(project, "--shard", "6/6")["targets"] == []


def test_assign_is_a_pure_function_of_the_sort_keys() -> None:
    class Job:
        def __init__(self, key: str) -> None:
            self.sort_key = (key,)

    jobs = [Job(k) for k in "edcba"]
    got = [(s, j.sort_key[0]) for s, j in assign(jobs, 2)]
    assert got == [(1, "a"), (1, "b"), (1, "c"), (2, "d"), (2, "e")]
    assert parse_shard(" 2 / 3 ") == Shard(2, 3) and str(Shard(2, 3)) == "2/3"
    with pytest.raises(UsageError, match="is not I/N"):
        parse_shard("1/3/4")


SHARD_ERRORS = [
    ("0/0", "--shard 0/0: N must be at least 1"),
    ("3/2", "--shard 3/2: I must be between 1 and 2"),
    ("0/2", "--shard 0/2: I must be between 1 and 2"),
    ("x/y", "--shard 'x/y' is not I/N (two whole numbers)"),
    ("2", "--shard '2' is not I/N (two whole numbers)"),
    ("-1/2", "--shard '-1/2' is not I/N (two whole numbers)"),
]


@pytest.mark.parametrize(("value", "message"), SHARD_ERRORS)
def test_bad_shard_values(tmp_path: Path, value: str, message: str) -> None:
    project = models_project(tmp_path / "repo")
    code, _, err = run_cli(["build", "--dry-run", f"--shard={value}"], project)
    assert code == 2
    assert f"error: {message}" in err
    assert "hint: --shard I/N builds slice I of N (1 <= I <= N)" in err
    assert "Traceback" not in err


MODEL_ERRORS = [
    (  # the same name twice
        lambda t: t.replace('name = "tiny"', 'name = "digits"'),
        "models[1].name: 'digits' is also models[0]'s name",
    ),
    (
        lambda t: t.replace('targets = ["host", "rpi4"]', 'targets = ["host", "rpi-4"]'),
        "models[1].targets (tiny): 'rpi-4' is not a [[targets]] entry (did you mean 'rpi4'?); "
        "entries: rpi4, host",
    ),
    (
        lambda t: t.replace('source = "tiny.py:build_model"', 'sorce = "tiny.py:build_model"'),
        "unknown key 'models[1].sorce' (did you mean 'source'?)",
    ),
    (lambda t: t.replace('name = "tiny"\n', ""), "missing key 'models[1].name'"),
    (
        lambda t: t.replace('name = "tiny"', 'name = "Tiny Net"'),
        "'models[1].name': String should match pattern",
    ),
    (
        lambda t: t.replace(
            "schema = 1\n", 'schema = 1\n[model]\nsource = "model.py:build_model"\n'
        ),
        "both 'model' and 'models' given",
    ),
    (lambda t: t.replace("[[models]]", "[[other]]", 1), "unknown key 'other'"),
    (
        lambda t: t.replace('source = "tiny.py:build_model"', 'source = "nope.py:build_model"'),
        "models[1] (tiny) model file not found: nope.py",
    ),
    (
        lambda t: t + '\n[[targets]]\ntarget = "coral-usb"\noutput = "out/coral"\n',
        "models[0] (digits) targets[2] (coral-usb): 'output' names one folder, but [[models]] "
        "builds the entry for each model",
    ),
]


@pytest.mark.parametrize(("edit", "message"), MODEL_ERRORS)
def test_bad_models_configs(tmp_path: Path, edit, message: str) -> None:  # type: ignore[no-untyped-def]
    project = models_project(tmp_path / "repo")
    cfg = project / "edgepack.toml"
    cfg.write_text(edit(cfg.read_text()))
    code, _, err = run_cli(["build", "--dry-run"], project)
    assert code == 2, err
    assert message in err and err.startswith("error: ")
    assert "hint: " in err and "Traceback" not in err


def test_one_model_flags_are_refused_with_several_models(tmp_path: Path) -> None:
    project = models_project(tmp_path / "repo")
    code, _, err = run_cli(["build", "--dry-run", "--name", "x", "--weights", "w.pt"], project)
    assert code == 2
    assert "error: --weights, --name set(s) one model, but edgepack.toml lists 2 [[models]]" in err
    assert "hint: set source, weights, input_shapes and name in each [[models]] entry" in err


def test_shard_destination_check_covers_only_its_slice(tmp_path: Path) -> None:
    project = models_project(tmp_path / "repo")
    (project / "dist" / "tiny-host").mkdir(parents=True)  # another shard's package
    assert dry_run(project, "--shard", "1/2")["shard"]["index"] == 1
    code, _, err = run_cli(["build", "--dry-run", "--shard", "2/2"], project)
    assert (
        code == 2 and "tiny/host: destination dist/tiny-host already exists (pass --force)" in err
    )
