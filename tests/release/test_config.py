"""edgepack.toml: schema errors, resolution, overrides, --dry-run, `edgepack init` (fast)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgepack.errors import UsageError
from edgepack.release.config import Overrides, parse_config, render_template, resolve
from edgepack.targets import QuantMode
from tests.release.conftest import CONFIG, make_project, run_cli


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(tmp_path / "repo")


def test_dry_run_prints_the_resolved_plan_as_json(project: Path) -> None:
    code, out, err = run_cli(["build", "--dry-run", "--json"], project)
    assert code == 0, err
    plan = json.loads(out)
    assert plan["dry_run"] is True and plan["jobs"] == 2
    assert plan["model"] == {
        "source": "model.py:build_model",
        "name": "digits",
        "weights": "weights.pt",
        "input_shapes": ["1x1x32x32"],
    }
    by_id = {t["id"]: t for t in plan["targets"]}
    assert list(by_id) == ["rpi4", "host", "tiny"]
    # the profile's preference list, tried in order (docs/targets.md)
    assert by_id["rpi4"]["quantization"] == "full-int8, dynamic-range"
    assert by_id["host"]["quantization"] == "dynamic-range, float32"
    assert by_id["rpi4"]["output"] == "dist/digits-rpi4"
    # [gates] applies to every target; [targets.gates] adds to / overrides it.
    assert by_id["rpi4"]["gates"]["max_accuracy_drop"] == 1.0
    assert by_id["rpi4"]["gates"]["max_model_kb"] == 200
    assert "max_model_kb" not in by_id["host"]["gates"]
    assert not (project / "dist").exists()  # nothing built


def test_dry_run_table(project: Path) -> None:
    code, out, _ = run_cli(["build", "--dry-run"], project)
    assert code == 0
    assert "plan is valid (nothing built: --dry-run)" in out
    assert "rpi4    full-int8" in out and "model_kb<=200.0" in out


def test_command_line_flags_override_the_file(project: Path) -> None:
    code, out, err = run_cli(
        [
            "build",
            "--dry-run",
            "--json",
            "--quantization",
            "float16",
            "--target",
            "rpi4",
            "--target",
            "host",
            "--output-dir",
            "out",
            "--max-accuracy-drop",
            "0.5",
            "--jobs",
            "1",
        ],
        project,
    )
    assert code == 0, err
    plan = json.loads(out)
    assert plan["jobs"] == 1
    assert [t["id"] for t in plan["targets"]] == ["rpi4", "host"]
    assert {t["quantization"] for t in plan["targets"]} == {"float16"}
    assert [t["output"] for t in plan["targets"]] == ["out/digits-rpi4", "out/digits-host"]
    assert {t["gates"]["max_accuracy_drop"] for t in plan["targets"]} == {0.5}


def test_unknown_key_names_the_closest_valid_one(project: Path) -> None:
    cfg = CONFIG.replace('target = "host"', 'target = "host"\nquantisation = "float16"')
    (project / "edgepack.toml").write_text(cfg)
    code, _, err = run_cli(["build", "--dry-run"], project)
    assert code == 2
    assert "unknown key 'targets[1].quantisation' (did you mean 'quantization'?)" in err
    assert "Traceback" not in err


def test_bad_values_are_reported_with_what_is_accepted(project: Path) -> None:
    cfg = CONFIG.replace('target = "host"', 'target = "host"\nquantization = "int4"')
    cfg = cfg.replace("jobs = 2", "jobs = 0")
    (project / "edgepack.toml").write_text(cfg)
    code, _, err = run_cli(["build", "--dry-run"], project)
    assert code == 2
    assert "'targets[1].quantization': 'int4' is not one of 'float32', 'float16'," in err
    assert "'build.jobs': Input should be greater than or equal to 1" in err


def test_every_problem_is_reported_at_once(project: Path) -> None:
    cfg = CONFIG.replace('target = "host"', 'target = "rpi"').replace(
        'calibration = "calib.npz"', 'calibration = "missing.npz"'
    )
    (project / "edgepack.toml").write_text(cfg)
    (project / "dist" / "digits-rpi4").mkdir(parents=True)
    code, _, err = run_cli(["build", "--dry-run"], project)
    assert code == 2
    assert "problem(s) in edgepack.toml" in err
    assert "targets[1] (rpi): unknown target 'rpi' (did you mean 'rpi5' or 'rpi4'?" in err
    assert "targets[0] (rpi4): --calibration file not found: missing.npz" in err
    assert "targets[0] (rpi4): destination dist/digits-rpi4 already exists (pass --force)" in err


def test_full_int8_without_calibration_and_duplicate_targets(project: Path) -> None:
    cfg = CONFIG.replace('calibration = "calib.npz"\n', "").replace(
        'target = "host"', 'target = "rpi4"'
    )
    (project / "edgepack.toml").write_text(cfg)
    code, _, err = run_cli(["build", "--dry-run"], project)
    assert code == 2
    assert "full-int8 for target 'rpi4' needs --calibration data" in err
    assert "targets[1] (rpi4): the same target twice; give each entry its own 'variant'" in err


def test_variants_build_one_target_in_two_modes(project: Path) -> None:
    cfg = CONFIG.replace(
        'target = "host"', 'target = "rpi4"\nvariant = "fp16"\nquantization = "float16"'
    )
    (project / "edgepack.toml").write_text(cfg)
    code, out, err = run_cli(["build", "--dry-run", "--json", "--target", "rpi4"], project)
    assert code == 0, err
    ids = [(t["id"], t["quantization"], t["output"]) for t in json.loads(out)["targets"]]
    assert ids == [
        ("rpi4", "full-int8, dynamic-range", "dist/digits-rpi4"),
        ("rpi4-fp16", "float16", "dist/digits-rpi4-fp16"),
    ]


def test_target_not_in_the_config(project: Path) -> None:
    code, _, err = run_cli(["build", "--dry-run", "--target", "coral-usb"], project)
    assert code == 2
    assert "--target coral-usb is not in the config's [[targets]]" in err
    assert "the config builds: rpi4, host, tiny" in err


def test_output_with_several_targets_is_refused(project: Path) -> None:
    code, _, err = run_cli(["build", "--dry-run", "-o", "x"], project)
    assert code == 2
    assert "--output names one package folder but 3 targets are built" in err
    assert "--output-dir" in err


def test_build_without_source_or_config(tmp_path: Path) -> None:
    code, _, err = run_cli(["build"], tmp_path)
    assert code == 2
    assert "no model source given and no edgepack.toml in the current folder" in err
    assert "edgepack init" in err


def test_build_with_a_source_still_needs_a_target(tmp_path: Path) -> None:
    code, _, err = run_cli(["build", "model.py:build_model"], tmp_path)
    assert code == 2
    assert "error: missing --target" in err


def test_config_paths_are_relative_to_the_file(project: Path, tmp_path: Path) -> None:
    code, out, err = run_cli(
        ["build", "--dry-run", "--json", "--config", str(project / "edgepack.toml")], tmp_path
    )
    assert code == 0, err
    plan = json.loads(out)
    # Relative to the file, shown relative to the working folder.
    assert plan["model"]["weights"] == "repo/weights.pt"
    assert plan["model"]["source"] == "repo/model.py:build_model"
    assert plan["targets"][0]["output"] == "repo/dist/digits-rpi4"


def test_compression_section_is_parsed_and_resolved(project: Path) -> None:
    cfg = CONFIG.replace("[gates]", '[compression]\nprune = "channels:0.5"\n\n[gates]')
    cfg_obj = parse_config(cfg, "edgepack.toml")
    assert cfg_obj.compression.prune == "channels:0.5"
    plan = resolve(cfg_obj, project / "edgepack.toml", Overrides())
    prunes = {job.id: job.plan.prune for job in plan.targets}
    assert list(prunes) == ["rpi4", "host", "tiny"]
    for spec in prunes.values():
        assert (spec.method.value, spec.sparsity) == ("channels", 0.5)
    assert all(job.plan.distill is None for job in plan.targets)
    bad = CONFIG.replace("[gates]", '[compression]\nprune = "half"\n\n[gates]')
    with pytest.raises(UsageError, match=r"'compression.prune': String should match pattern"):
        parse_config(bad, "edgepack.toml")


def test_resolve_from_the_command_line_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgepack.release.config import ReleasePlan
    from tests.conftest import REPO

    # Packages go to ./dist: run where none exist yet (a `make demo` leaves some in the repo).
    (tmp_path / "examples").symlink_to(REPO / "examples")
    monkeypatch.chdir(tmp_path)
    plan = resolve(
        None,
        None,
        Overrides(
            source="examples/digits/model.py:build_model",
            targets=("host", "android-gpu"),
            quantization=QuantMode.FLOAT32,
        ),
    )
    assert isinstance(plan, ReleasePlan)
    assert [(t.id, t.plan.mode.value) for t in plan.targets] == [
        ("host", "float32"),
        ("android-gpu", "float32"),
    ]
    assert plan.name == "digits" and plan.jobs == 2


# --------------------------------------------------------------------------- init


def test_init_writes_a_commented_config_that_builds(tmp_path: Path) -> None:
    project = make_project(tmp_path / "repo")
    (project / "edgepack.toml").unlink()
    code, out, err = run_cli(
        [
            "init",
            "model.py:build_model",
            "--weights",
            "weights.pt",
            "--input-shape",
            "1x1x32x32",
            "--target",
            "rpi4",
            "--target",
            "host",
            "--calibration",
            "calib.npz",
            "--eval",
            "eval.npz",
        ],
        project,
    )
    assert code == 0, err
    text = (project / "edgepack.toml").read_text()
    assert text.count("\n#") > 20  # commented
    assert 'source = "model.py:build_model"' in text and "max_accuracy_drop = 1.0" in text
    code, out, err = run_cli(["build", "--dry-run", "--json"], project)
    assert code == 0, err
    plan = json.loads(out)
    assert [t["id"] for t in plan["targets"]] == ["rpi4", "host"]
    assert plan["model"]["name"] == "repo"  # from the folder of model.py
    # Never overwritten without --force.
    code, _, err = run_cli(["init"], project)
    assert code == 2 and "edgepack.toml already exists" in err and "--force" in err
    code, _, _ = run_cli(["init", "--force"], project)
    assert code == 0
    assert 'source = "model.py:build_model"' in (project / "edgepack.toml").read_text()
    assert "# TODO: point this at your model." in (project / "edgepack.toml").read_text()


def test_init_dry_run_json_and_paths_relative_to_the_output(tmp_path: Path) -> None:
    project = make_project(tmp_path / "repo")
    code, out, err = run_cli(
        [
            "init",
            "model.py:f",
            "--weights",
            "weights.pt",
            "-o",
            "ci/edgepack.toml",
            "--dry-run",
            "--json",
        ],
        project,
    )
    assert code == 0, err
    doc = json.loads(out)
    assert doc["path"] == "ci/edgepack.toml"
    assert doc["config"]["model"]["source"] == "../model.py:f"
    assert doc["config"]["model"]["weights"] == "../weights.pt"
    assert not (project / "ci").exists()


def test_init_rejects_an_unknown_target(tmp_path: Path) -> None:
    code, _, err = run_cli(["init", "--target", "coral"], tmp_path)
    assert code == 2 and "unknown target 'coral'" in err and "coral-usb" in err
    assert not (tmp_path / "edgepack.toml").exists()


def test_every_template_parses() -> None:
    for kwargs in ({}, {"source": "a.b:c", "targets": ("rpi4",), "eval_data": "e.npz"}):
        cfg = parse_config(render_template(**kwargs), "t")
        assert cfg.targets[0].target == (kwargs.get("targets") or ("host",))[0]


def test_every_commented_model_key_of_the_template_is_a_real_key() -> None:
    """The [model] keys a user uncomments (a named source's options, factory arguments)
    parse and land in the model section."""
    keys = ("factory_args", "pretrained", "task", "sequence_length")
    text = render_template(source="torchvision:resnet18")
    lines = text.splitlines()
    start = lines.index("[model]")
    end = lines.index("[data]")
    for i in range(start, end):
        if lines[i].startswith(tuple(f"# {k} = " for k in keys)):
            lines[i] = lines[i][2:].split("  #")[0]
    cfg = parse_config("\n".join(lines), "t")
    assert cfg.model is not None
    assert cfg.model.factory_args == {"num_classes": 10}
    assert cfg.model.pretrained is True and cfg.model.task == "sequence-classification"
    assert cfg.model.sequence_length == 128
    if any(ln.startswith("# " + k) for ln in lines for k in keys):
        raise AssertionError("a commented key was left")


def test_compression_section_reaches_every_target(tmp_path: Path) -> None:
    import shutil

    from tests.conftest import DIGITS

    cfg = CONFIG.replace(
        "[gates]",
        '[compression]\nprune = "channels:0.5"\nround_to = 8\n'
        "distill = { epochs = 2, temperature = 3.0 }\n\n[gates]",
    ).replace('eval = "eval.npz"', 'eval = "eval.npz"\ntrain = "train.npz"')
    project = make_project(tmp_path / "repo", cfg)
    shutil.copyfile(DIGITS / "train.npz", project / "train.npz")
    plan = resolve(parse_config(cfg, "edgepack.toml"), project / "edgepack.toml", Overrides())
    for job in plan.targets:
        assert job.plan.prune.method.value == "channels" and job.plan.prune.sparsity == 0.5
        assert job.plan.prune.round_to == 8
        assert job.plan.distill.epochs == 2 and job.plan.distill.temperature == 3.0
        assert job.plan.distill.train == project / "train.npz"
    # the command line wins over the file
    over = Overrides(prune="magnitude:0.7", distill_options=(("epochs", 4),))
    plan = resolve(parse_config(cfg, "edgepack.toml"), project / "edgepack.toml", over)
    assert plan.targets[0].plan.prune.method.value == "magnitude"
    assert plan.targets[0].plan.distill.epochs == 4


def test_compression_section_errors_are_reported(tmp_path: Path) -> None:
    cfg = CONFIG.replace("[gates]", '[compression]\nprune = "channels:1.5"\n\n[gates]')
    project = make_project(tmp_path / "repo", cfg)
    with pytest.raises(UsageError) as e:
        resolve(parse_config(cfg, "edgepack.toml"), project / "edgepack.toml", Overrides())
    assert "[compression]" in e.value.message and "1.5" in e.value.message
    cfg = CONFIG.replace("[gates]", "[compression]\ndistill = { epochs = 2 }\n\n[gates]")
    project = make_project(tmp_path / "repo2", cfg)
    with pytest.raises(UsageError) as e:
        resolve(parse_config(cfg, "edgepack.toml"), project / "edgepack.toml", Overrides())
    assert "distillation needs training data" in e.value.message


def test_gate_opt_outs_are_explicit_and_resolved(project: Path) -> None:
    """Both opt-outs default to the closed gate; the file or the CLI turns them off."""
    code, out, err = run_cli(["build", "--dry-run", "--json"], project)
    assert code == 0, err
    gates = {t["id"]: t["gates"] for t in json.loads(out)["targets"]}
    assert gates["rpi4"]["accuracy_gate"] is True
    assert gates["rpi4"]["allow_missing_latency"] is False
    cfg = CONFIG.replace(
        "max_accuracy_drop = 1.0", "accuracy_gate = false\nallow_missing_latency = true"
    )
    (project / "edgepack.toml").write_text(cfg)
    code, out, err = run_cli(["build", "--dry-run", "--json"], project)
    assert code == 0, err
    gates = {t["id"]: t["gates"] for t in json.loads(out)["targets"]}
    assert gates["host"]["accuracy_gate"] is False and gates["host"]["allow_missing_latency"]
    # An opted-out accuracy gate and a limit of one's own contradict each other.
    code, _, err = run_cli(["build", "--dry-run", "--max-accuracy-drop", "1"], project)
    assert code == 2 and "--no-accuracy-gate (accuracy_gate = false) turns the accuracy" in err
    # On the command line --no-accuracy-gate wins over the file's limits (CLI over file).
    (project / "edgepack.toml").write_text(CONFIG)
    code, out, err = run_cli(["build", "--dry-run", "--json", "--no-accuracy-gate"], project)
    assert code == 0, err
    gates = {t["id"]: t["gates"] for t in json.loads(out)["targets"]}
    assert gates["rpi4"]["accuracy_gate"] is False and "max_accuracy_drop" not in gates["rpi4"]
    argv = ["build", "--dry-run", "--no-accuracy-gate", "--min-fidelity", "0.9"]
    code, _, err = run_cli(argv, project)
    assert code == 2 and "turns the accuracy gate off, but" in err


def test_a_profile_latency_budget_becomes_the_latency_gate(project: Path) -> None:
    tiny = (project / "boards" / "tiny.toml").read_text()
    (project / "boards" / "tiny.toml").write_text(
        tiny.replace("max_model_kb = 10", "max_model_kb = 10\nmax_latency_ms = 7")
    )
    code, out, err = run_cli(["build", "--dry-run", "--json"], project)
    assert code == 0, err
    gates = {t["id"]: t["gates"] for t in json.loads(out)["targets"]}
    assert gates["tiny"]["max_latency_ms"] == 7 and gates["rpi4"]["max_latency_ms"] == 1000
    assert "max_latency_ms" not in gates["host"]


def test_host_latency_bounds_from_the_file_and_the_command_line(project: Path) -> None:
    cfg = CONFIG.replace("latency_runs = 20", "latency_runs = 20\nlatency_budget_s = 0.5")
    plan = resolve(parse_config(cfg, "edgepack.toml"), project / "edgepack.toml", Overrides())
    assert {(j.plan.latency_runs, j.plan.latency_budget_s) for j in plan.targets} == {(20, 0.5)}
    over = Overrides(latency_runs=0, latency_budget_s=3.0)  # --no-host-latency, --latency-budget
    plan = resolve(parse_config(cfg, "edgepack.toml"), project / "edgepack.toml", over)
    assert {(j.plan.latency_runs, j.plan.latency_budget_s) for j in plan.targets} == {(0, 3.0)}
    plan = resolve(parse_config(CONFIG, "edgepack.toml"), project / "edgepack.toml", Overrides())
    assert {j.plan.latency_budget_s for j in plan.targets} == {2.0}  # the default
    bad = CONFIG.replace("latency_runs = 20", "latency_budget_s = 0")
    with pytest.raises(UsageError) as e:
        parse_config(bad, "edgepack.toml")
    assert "latency_budget_s" in e.value.message
