"""Several models in one matrix, built whole and as two --shard CI jobs whose dist folders
`edgepack report` and `edgepack verify` merge (real builds: 2 models x 2 targets)."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from edgepack.manifest import read_manifest
from tests.release.conftest import run_cli
from tests.release.test_shard import models_project

pytestmark = pytest.mark.slow

PACKAGES = ["digits-host", "digits-rpi4", "tiny-host", "tiny-rpi4"]


@dataclass(frozen=True)
class Built:
    project: Path
    full: dict  # `edgepack build --json` of the whole matrix
    shards: list[dict]  # ... of --shard 1/2 and 2/2

    @property
    def ci(self) -> Path:
        """The downloaded artifacts of the two CI jobs, one folder each."""
        return self.project / "ci"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    project = models_project(tmp_path_factory.mktemp("models") / "repo")
    # Two workers: each model's targets build while the next model exports.
    code, out, err = run_cli(["build", "--jobs", "2", "--json"], project)
    assert code == 0, err
    full = json.loads(out)
    shards = []
    for i in (1, 2):
        code, out, err = run_cli(
            ["build", "--shard", f"{i}/2", "--output-dir", f"ci/shard-{i}", "--json"], project
        )
        assert code == 0, err
        shards.append(json.loads(out))
    return Built(project, full, shards)


def test_every_model_is_exported_once_for_its_targets(built: Built) -> None:
    dist = built.project / "dist"
    assert sorted(p.name for p in dist.iterdir() if p.is_dir()) == PACKAGES
    assert [(t["id"], t["status"]) for t in built.full["targets"]] == [
        ("digits/rpi4", "ok"),
        ("digits/host", "ok"),
        ("tiny/rpi4", "ok"),
        ("tiny/host", "ok"),
    ]
    exports = built.full["exports"]
    assert [(e["model"], e["targets"]) for e in exports] == [
        ("digits", ["digits/rpi4", "digits/host"]),
        ("tiny", ["tiny/rpi4", "tiny/host"]),
    ]
    for e in exports:
        ms = [read_manifest(dist / f"{e['model']}-{t}") for t in ("rpi4", "host")]
        # One export: both packages carry its cache key and its load/export timings.
        assert {m["build"]["cache"]["export"]["key"] for m in ms} == {e["cache_key"]}
        for stage in ("load", "export"):
            assert ms[0]["build"]["stage_seconds"][stage] == ms[1]["build"]["stage_seconds"][stage]
        assert {m["name"] for m in ms} == {e["model"]}
    assert exports[0]["cache_key"] != exports[1]["cache_key"]
    # Each model with its own data: digits was evaluated, tiny has no eval data.
    assert read_manifest(dist / "digits-host")["metrics"]["accuracy"]["quantized"] > 90
    assert read_manifest(dist / "tiny-host")["metrics"]["accuracy"]["measured"] is False
    # The sha of the models differ (two models, not one built twice).
    shas = {read_manifest(dist / p)["model"]["sha256"] for p in PACKAGES}
    assert len(shas) == 4


def test_shards_build_their_slices_and_say_so(built: Built) -> None:
    s1, s2 = built.shards
    assert s1["shard"] == {"index": 1, "count": 2} and s2["shard"] == {"index": 2, "count": 2}
    assert [t["id"] for t in s1["targets"]] == ["digits/rpi4", "digits/host"]
    assert [(t["id"], t["shard"]) for t in s1["skipped"]] == [("tiny/rpi4", 2), ("tiny/host", 2)]
    # The shard export came from the cache the whole-matrix build filled.
    (e1,) = s1["exports"]
    assert e1["cache_key"] == built.full["exports"][0]["cache_key"]
    m = read_manifest(built.ci / "shard-1" / "digits-rpi4")
    assert m["build"]["cache"]["export"]["status"] == "hit"
    for i, names in ((1, ["digits-host", "digits-rpi4"]), (2, ["tiny-host", "tiny-rpi4"])):
        folder = built.ci / f"shard-{i}"
        assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == names
        summary = json.loads((folder / f"edgepack-shard-{i}-of-2.json").read_text())
        assert summary["schema"] == "edgepack.shard-summary/1"
        assert [(j["package"], j["shard"]) for j in summary["matrix"]] == [
            ("digits-rpi4", 1),
            ("digits-host", 1),
            ("tiny-rpi4", 2),
            ("tiny-host", 2),
        ]
        for p in names:  # reproducible: the shard built the same model bytes
            assert (folder / p / "model.tflite").read_bytes() == (
                built.project / "dist" / p / "model.tflite"
            ).read_bytes()
    # The final table names the shard and the jobs left to the other one.
    code, out, err = run_cli(
        ["build", "--shard", "2/2", "--output-dir", "again", "--quiet", "--target", "host"],
        built.project,
    )
    assert code == 0, err
    assert "shard 2/2: 1 of 2 job(s) of the matrix here" in out
    assert "skipped (other shards): digits/host (1/2)" in out
    assert "shard summary: again/edgepack-shard-2-of-2.json" in out


def test_report_and_verify_merge_the_shards(built: Built, tmp_path: Path) -> None:
    shard1, shard2 = built.ci / "shard-1", built.ci / "shard-2"
    for inputs in ([shard1, shard2], [built.ci]):  # the dist folders, or their parent
        code, out, err = run_cli(
            ["report", *map(str, inputs), "-o", str(tmp_path / "r.html"), "--json"], built.project
        )
        assert code == 0, err
        data = json.loads(out)
        assert sorted(p["id"] for p in data["packages"]) == PACKAGES
        assert data["shards"]["found"] == [1, 2] and data["shards"]["missing"] == []
    html = (tmp_path / "r.html").read_text()
    assert "merged from shard(s) 1/2, 2/2 of 2" in html
    code, out, err = run_cli(["verify", str(shard1), str(shard2), "--json"], built.project)
    assert code == 0, err
    doc = json.loads(out)
    assert doc["ok"] is True
    assert sorted(Path(r["package"]).name for r in doc["packages"]) == PACKAGES
    assert [c["check"] for c in doc["release"]] == ["shards"]
    code, out, err = run_cli(["verify", str(built.ci)], built.project)
    assert code == 0, err
    assert "4 package(s) verified" in out


def _copy(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    return dest


def test_merge_problems(built: Built, tmp_path: Path) -> None:
    shard1, shard2 = built.ci / "shard-1", built.ci / "shard-2"
    html = str(tmp_path / "r.html")

    # A shard missing: named with the packages it builds.
    code, _, err = run_cli(["report", str(shard1), "-o", html], built.project)
    assert code == 2
    assert "error: shard 2/2 missing: tiny-host, tiny-rpi4 not built" in err
    assert "--allow-missing-shards" in err
    code, out, err = run_cli(
        ["report", str(shard1), "-o", html, "--allow-missing-shards"], built.project
    )
    assert code == 0 and "warning: shard 2/2 missing: tiny-host, tiny-rpi4 not built" in err
    assert "2 package(s) from shard(s) 1 of 2" in out
    page = Path(html).read_text()
    assert '<p class="shards missing">shard 2/2 missing: tiny-host, tiny-rpi4 not built</p>' in page
    code, _, err = run_cli(["verify", str(shard1)], built.project)
    assert code == 6 and "shard 2/2 missing: tiny-host, tiny-rpi4 not built" in err

    # The same shard downloaded twice: identical bytes merge.
    again = _copy(shard1, tmp_path / "again")
    code, out, err = run_cli(
        ["report", str(shard1), str(again), str(shard2), "-o", html, "--json"], built.project
    )
    assert code == 0, err
    assert len(json.loads(out)["packages"]) == 4

    # The same package with other bytes: one of them is not what the matrix built.
    other = _copy(shard1, tmp_path / "other")
    (other / "digits-host" / "summary.md").write_text("edited\n")
    code, _, err = run_cli(
        ["report", str(shard1), str(other), str(shard2), "-o", html], built.project
    )
    assert code == 2
    assert (
        f"error: the dist folders do not merge: digits-host is in {shard1} and {other} "
        "with different bytes"
    ) in err
    code, _, err = run_cli(["verify", str(shard1), str(other), str(shard2)], built.project)
    assert code == 6 and "digits-host is in" in err and "with different bytes" in err

    # A package of a present shard is gone (the shard summary lists it).
    partial = _copy(shard2, tmp_path / "partial")
    shutil.rmtree(partial / "tiny-host")
    code, _, err = run_cli(["verify", str(shard1), str(partial)], built.project)
    assert code == 6
    assert "tiny-host: no package (not in the artifacts of shard 2/2)" in err

    # Shards of two different matrices (another N) do not merge.
    mixed = _copy(shard2, tmp_path / "mixed")
    summary = mixed / "edgepack-shard-2-of-2.json"
    doc = json.loads(summary.read_text())
    doc["shard"]["count"] = 3
    summary.write_text(json.dumps(doc))
    code, _, err = run_cli(["report", str(shard1), str(mixed), "-o", html], built.project)
    assert code == 2 and "are shards of different matrices (3 vs 2 shards, or other jobs)" in err


def test_a_model_that_fails_to_load_fails_only_its_targets(tmp_path: Path) -> None:
    project = models_project(tmp_path / "repo", tiny_targets='targets = ["host"]')
    (project / "tiny.py").write_text("def build_model():\n    raise ValueError('no such net')\n")
    cfg = project / "edgepack.toml"
    cfg.write_text(
        cfg.read_text().replace(
            'weights = "weights.pt"', 'weights = "weights.pt"\ntargets = ["host"]'
        )
    )
    code, out, err = run_cli(["build", "--json"], project)
    assert code == 2, err
    res = json.loads(out)
    assert [(t["id"], t["status"]) for t in res["targets"]] == [
        ("digits/host", "ok"),
        ("tiny/host", "failed"),
    ]
    assert res["targets"][1]["message"].startswith("model tiny: ")
    assert "no such net" in res["targets"][1]["message"]
    assert [e["model"] for e in res["exports"]] == ["digits"]
    assert (project / "dist" / "digits-host" / "manifest.json").is_file()
    assert not (project / "dist" / "tiny-host").exists()
