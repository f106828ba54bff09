"""Model sources by name (edgepack/named.py), factory arguments, and the package's tensor names.

Everything here is real: torchvision, timm and transformers models built from their
libraries, converted by litert-torch and run by the TFLite interpreter. Pretrained weights
come from a cache folder the test fills (a random model's state_dict under the file name the
weights expect), never from the network.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from edgepack.cache import ArtifactCache, export_key
from edgepack.errors import DataError, ModelLoadError, UsageError
from edgepack.source import (
    SourceOptions,
    check_source,
    load_source,
    parse_factory_args,
    parse_factory_value,
)
from edgepack.stages import export
from edgepack.stages.base import StageContext

TV = "torchvision:mobilenet_v3_small"
SMALL = "1x3x64x64"
WORDS = [
    "the",
    "a",
    "cat",
    "dog",
    "sat",
    "on",
    "mat",
    "good",
    "bad",
    "movie",
    "is",
    "was",
    "very",
    "not",
    "fun",
]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BERT classifier (2 layers, hidden 32, 3 labels) and its WordPiece tokenizer,
    saved with save_pretrained: what hf:<folder> loads."""
    from edgepack._torchvision import import_torchvision

    import_torchvision()  # transformers' models import it (as hf: sources do first)
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    root = tmp_path_factory.mktemp("bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    vocab += [chr(c) for c in range(ord("a"), ord("z") + 1)]
    vocab += [f"##{chr(c)}" for c in range(ord("a"), ord("z") + 1)]
    (root / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tok = BertTokenizerFast(vocab=str(root / "vocab.txt"))
    cfg = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=3,
    )
    torch.manual_seed(0)
    folder = root / "tiny-bert"
    BertForSequenceClassification(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEPACK_OFFLINE", "1")


@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch.hub cache (TORCH_HOME), whatever the machine's cache holds."""
    home = tmp_path / "torch-home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    return home


@pytest.fixture
def hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hugging Face hub cache."""
    from huggingface_hub import constants

    folder = tmp_path / "hf-hub"
    folder.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(folder))
    return folder


def _sentences(folder: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    lines = [" ".join(rng.choice(WORDS, size=int(rng.integers(3, 12)))) for _ in range(24)]
    txt = folder / "calib.txt"
    txt.write_text("\n".join(lines) + "\n", encoding="utf-8")
    jsonl = folder / "eval.jsonl"
    jsonl.write_text(
        "".join(json.dumps({"text": s, "label": i % 3}) + "\n" for i, s in enumerate(lines[:12])),
        encoding="utf-8",
    )
    return txt, jsonl


# --------------------------------------------------------------------------- factory arguments


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("10", 10),
        ("-3", -3),
        ("0.25", 0.25),
        ("1e-3", 1e-3),
        ("true", True),
        ("False", False),
        ("none", None),
        ("null", None),
        ("[16, 32]", [16, 32]),
        ('{"a": 1}', {"a": 1}),
        ("relu", "relu"),
        ("nan", "nan"),  # not a number a factory can use: kept as text
    ],
)
def test_factory_values_are_typed(text: str, value: Any) -> None:
    got = parse_factory_value(text)
    assert got == value and type(got) is type(value)


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (["width"], "'width' is not key=value"),
        (["=3"], "'=3' is not key=value"),
        (["2x=3"], "'2x=3' is not key=value"),
        (["a=1", "a=2"], "'a' given twice"),
        (["w=[1, 2"], "not valid JSON"),
    ],
)
def test_malformed_factory_args(items: list[str], message: str) -> None:
    with pytest.raises(UsageError) as e:
        parse_factory_args(items)
    assert message in e.value.message
    assert "--factory-arg key=value" in e.value.hint


def _factory_file(tmp_path: Path) -> Path:
    path = tmp_path / "widths.py"
    path.write_text(
        "import torch\n\n"
        "def build(width=4, bias=True, scale=1.0, act=None, sizes=(2,)):\n"
        "    assert isinstance(width, int) and isinstance(bias, bool)\n"
        "    m = torch.nn.Sequential(torch.nn.Linear(3, width, bias=bias))\n"
        "    m.meta = (width, bias, scale, act, list(sizes))\n"
        "    return m\n",
        encoding="utf-8",
    )
    return path


def test_factory_args_reach_the_factory_and_the_record(tmp_path: Path) -> None:
    path = _factory_file(tmp_path)
    args = parse_factory_args(["width=8", "bias=false", "scale=0.5", "act=none", "sizes=[1,2]"])
    m = load_source(f"{path}:build", None, ["1x3"], SourceOptions(factory_args=args))
    assert m.module.meta == (8, False, 0.5, None, [1, 2])
    assert m.source["factory_args"] == {
        "act": None,
        "bias": False,
        "scale": 0.5,
        "sizes": [1, 2],
        "width": 8,
    }
    out = m.module(torch.zeros(1, 3))
    assert tuple(out.shape) == (1, 8)


def test_factory_args_never_share_a_cache_entry(tmp_path: Path) -> None:
    path = _factory_file(tmp_path)
    spec = f"{path}:build"

    def load(*items: str) -> Any:
        return load_source(
            spec, None, ["1x3"], SourceOptions(factory_args=parse_factory_args(items))
        )

    wide, narrow, wide_again = load("width=8"), load("width=6"), load("width=8")
    # same code and no weights file: only the arguments tell the exports apart
    assert export_key(wide) != export_key(narrow)
    assert export_key(wide) == export_key(wide_again)
    assert export_key(load("width=8", "bias=false")) != export_key(wide)
    cache = ArtifactCache(tmp_path / "cache")
    states = []
    for model in (wide, narrow, wide_again):
        ctx = StageContext(workdir=tmp_path / f"w{len(states)}")
        exported = export.run(model, ctx, cache)
        states.append(ctx.records[-1].cache["status"])
        program = torch.export.load(exported.path)
        weight = next(v for k, v in program.state_dict.items() if k.endswith("weight"))
        assert weight.shape[0] == model.module.meta[0]  # the entry holds this model's export
    assert states == ["miss", "miss", "hit"]


def test_factory_failing_with_args_names_them(tmp_path: Path) -> None:
    path = _factory_file(tmp_path)
    with pytest.raises(ModelLoadError) as e:
        load_source(f"{path}:build", None, ["1x3"], SourceOptions(factory_args=(("depth", 3),)))
    assert "build(depth=3) raised" in e.value.message
    assert "TypeError" in e.value.message


def test_named_only_options_on_a_factory_are_refused(tmp_path: Path) -> None:
    path = _factory_file(tmp_path)
    with pytest.raises(UsageError) as e:
        load_source(f"{path}:build", None, ["1x3"], SourceOptions(pretrained="DEFAULT", task="x"))
    assert "--pretrained applies to named sources" in e.value.message
    assert "--task applies to Hugging Face sources" in e.value.message


# --------------------------------------------------------------------------- torchvision


def test_torchvision_source_inputs_preprocess_and_seeded_init() -> None:
    m = load_source(TV, None, [SMALL])
    assert [(s.name, s.shape, s.dtype) for s in m.inputs] == [("image", (1, 3, 64, 64), "float32")]
    assert m.output_names == ("logits",)
    assert m.name == "mobilenet_v3_small"
    # the weights' transforms (resize 256, crop 224) scaled to the 64x64 input
    assert m.preprocess == {
        "resize": round(256 * 64 / 224),
        "crop": 64,
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "interpolation": "bilinear",
        "channel_order": "RGB",
        "layout": "NCHW",
        "value_range": [0, 1],
    }
    assert m.source["kind"] == "named" and m.source["library"] == "torchvision"
    # random init is seeded: the same seed gives the same weights (and cache key)
    again = load_source(TV, None, [SMALL])
    other = load_source(TV, None, [SMALL], seed=1)
    assert m.source["weights_sha256"] == again.source["weights_sha256"]
    assert m.source["weights_sha256"] != other.source["weights_sha256"]
    assert export_key(m) == export_key(again) != export_key(other)


def test_torchvision_default_input_is_the_weights_crop() -> None:
    m = load_source("torchvision:squeezenet1_1", options=SourceOptions())
    assert m.inputs[0].shape == (1, 3, 224, 224)
    assert m.preprocess is not None and m.preprocess["resize"] == 256


def test_torchvision_factory_args_go_to_the_builder() -> None:
    m = load_source(TV, None, [SMALL], SourceOptions(factory_args=(("num_classes", 7),)))
    assert tuple(m.module(torch.zeros(1, 3, 64, 64)).shape) == (1, 7)
    assert m.source["factory_args"] == {"num_classes": 7}


def _cached_checkpoint(torch_home: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    """A random mobilenet_v3_small's state_dict under the file name IMAGENET1K_V1 expects."""
    from edgepack._torchvision import import_torchvision
    from edgepack.named import tv_cache_file

    tv = import_torchvision()
    weights = tv.models.get_model_weights("mobilenet_v3_small").IMAGENET1K_V1
    path = tv_cache_file(weights)
    assert path.parent == torch_home / "hub" / "checkpoints"
    torch.manual_seed(123)
    state = tv.models.get_model("mobilenet_v3_small", weights=None).state_dict()
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    return path, state


@pytest.mark.parametrize("name", ["DEFAULT", "IMAGENET1K_V1"])
def test_pretrained_weights_come_from_the_torch_hub_cache(
    torch_home: Path, offline: None, name: str
) -> None:
    path, state = _cached_checkpoint(torch_home)
    m = load_source(TV, None, [SMALL], SourceOptions(pretrained=name))
    loaded = m.module.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
    assert m.source["pretrained"] == "IMAGENET1K_V1"
    assert m.source["weights"] == path.name
    assert m.source["weights_file_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    random = load_source(TV, None, [SMALL])
    assert export_key(m) != export_key(random)


def test_pretrained_offline_without_the_file_names_the_cache_path(
    torch_home: Path, offline: None, cli: Callable[..., Any]
) -> None:
    r = cli(
        "build",
        TV,
        "--pretrained",
        "--input-shape",
        SMALL,
        "-t",
        "rpi4",
        "--quantization",
        "float32",
        "-o",
        torch_home / "pkg",
    )
    assert r.code == 2
    want = torch_home / "hub" / "checkpoints" / "mobilenet_v3_small-047dcff4.pth"
    assert f"are not in torch.hub's cache ({want}) and edgepack is offline" in r.err
    assert "hint:" in r.err and "download https://download.pytorch.org/models/" in r.err
    assert "Traceback" not in r.err
    assert not (torch_home / "pkg").exists()


def test_unknown_weights_name_lists_the_weights() -> None:
    with pytest.raises(ModelLoadError) as e:
        check_source(TV, SourceOptions(pretrained="IMAGENET9K"))
    assert "unknown weights 'IMAGENET9K' for torchvision:mobilenet_v3_small" in e.value.message
    assert "IMAGENET1K_V1" in e.value.hint


# --------------------------------------------------------------------------- timm


def test_timm_source() -> None:
    m = load_source("timm:mobilenetv3_small_050", None, [SMALL])
    assert [(s.name, s.shape) for s in m.inputs] == [("image", (1, 3, 64, 64))]
    assert m.output_names == ("logits",)
    assert m.preprocess is not None
    assert m.preprocess["interpolation"] == "bicubic"  # timm's data config, not a default
    assert m.preprocess["crop"] == 64
    assert tuple(m.module(torch.zeros(1, 3, 64, 64)).shape) == (1, 1000)


def test_timm_pretrained_offline_without_cache(offline: None, hf_cache: Path) -> None:
    with pytest.raises(ModelLoadError) as e:
        load_source(
            "timm:mobilenetv3_small_050", None, [SMALL], SourceOptions(pretrained="DEFAULT")
        )
    want = hf_cache / "models--timm--mobilenetv3_small_050.lamb_in1k"
    assert f"not in the Hugging Face cache ({want}) and edgepack is offline" in e.value.message
    assert "hf download timm/mobilenetv3_small_050.lamb_in1k" in e.value.hint


def test_timm_pretrained_from_the_hub_cache(offline: None, hf_cache: Path) -> None:
    """A hub cache laid out as huggingface_hub writes it (refs/main -> snapshots/<rev>)."""
    import timm
    from safetensors.torch import save_file

    repo = hf_cache / "models--timm--mobilenetv3_small_050.lamb_in1k"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    snap = repo / "snapshots" / ("0" * 40)
    snap.mkdir(parents=True)
    torch.manual_seed(7)
    state = timm.create_model("mobilenetv3_small_050").state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, str(snap / "model.safetensors"))
    m = load_source(
        "timm:mobilenetv3_small_050", None, [SMALL], SourceOptions(pretrained="DEFAULT")
    )
    loaded = m.module.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
    assert m.source["weights"] == "model.safetensors"
    assert m.source["pretrained"] == "mobilenetv3_small_050.lamb_in1k"  # the DEFAULT tag


# --------------------------------------------------------------------------- Hugging Face


def test_hf_folder_text_model(bert_dir: Path) -> None:
    m = load_source(f"hf:{bert_dir}", options=SourceOptions(task="sequence-classification"))
    assert [(s.name, s.shape, s.dtype) for s in m.inputs] == [
        ("input_ids", (1, 64), "int64"),  # min(128, the model's 64 positions)
        ("attention_mask", (1, 64), "int64"),
    ]
    assert m.output_names == ("logits",)
    assert m.tokenizer == str(bert_dir.resolve())
    assert m.name == "tiny-bert"
    ids = torch.tensor([[2, 5, 7, 3] + [0] * 60])
    mask = (ids != 0).long()
    out = m.module(ids, mask)
    from transformers import AutoModelForSequenceClassification

    ref = AutoModelForSequenceClassification.from_pretrained(bert_dir).eval()
    torch.testing.assert_close(out, ref(input_ids=ids, attention_mask=mask).logits)


def test_hf_task_from_the_config_and_sequence_length(bert_dir: Path) -> None:
    m = load_source(f"hf:{bert_dir}", options=SourceOptions(sequence_length=16))
    assert m.source.get("task") is None and m.output_names == ("logits",)
    assert m.inputs[0].shape == (1, 16)
    emb = load_source(f"hf:{bert_dir}", options=SourceOptions(task="embedding", sequence_length=8))
    assert emb.output_names == ("last_hidden_state",)
    assert tuple(emb.module(*emb.example_inputs).shape) == (1, 8, 32)


def test_hf_unknown_task_lists_the_tasks(bert_dir: Path) -> None:
    with pytest.raises(UsageError) as e:
        check_source(f"hf:{bert_dir}", SourceOptions(task="sequence-clasification"))
    assert "unknown --task 'sequence-clasification'" in e.value.message
    assert "did you mean 'sequence-classification'?" in e.value.hint
    assert "feature-extraction" in e.value.hint and "image-classification" in e.value.hint


def test_hf_hub_id_offline_without_cache(offline: None, hf_cache: Path) -> None:
    with pytest.raises(ModelLoadError) as e:
        load_source("hf:someorg/tiny-model", options=SourceOptions(task="feature-extraction"))
    want = hf_cache / "models--someorg--tiny-model"
    assert f"is not in the Hugging Face cache ({want}) and edgepack is offline" in e.value.message
    assert "hf download someorg/tiny-model" in e.value.hint


def test_hf_folder_without_config(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError) as e:
        load_source(f"hf:{tmp_path}", options=SourceOptions(task="feature-extraction"))
    assert f"no config.json in {tmp_path}" in e.value.message


# --------------------------------------------------------------------------- bad input (CLI)


@pytest.mark.parametrize(
    ("args", "message", "hint"),
    [
        (["torchvison:resnet18"], "cannot import module 'torchvison'", "torchvision:NAME"),
        (
            ["torchvision:mobilenet_v3_smal"],
            "unknown torchvision model 'mobilenet_v3_smal'",
            "did you mean 'mobilenet_v3_small'",
        ),
        (["timm:mobilenetv3_smal_050"], "unknown timm model", "'mobilenetv3_small_050'"),
        (["torchvision:"], "no model name after 'torchvision:'", "torchvision:"),
        ([TV, "--task", "masked-lm"], "--task applies to Hugging Face sources", "drop"),
        ([TV, "--factory-arg", "width"], "invalid --factory-arg: 'width'", "key=value"),
    ],
)
def test_bad_named_sources_exit_2(
    cli: Callable[..., Any], args: list[str], message: str, hint: str
) -> None:
    r = cli("build", *args, "-t", "rpi4", "--quantization", "float32", "--dry-run")
    assert r.code == 2, r.err
    assert message in r.err
    assert hint in r.err.split("hint:", 1)[1]
    assert "Traceback" not in r.err


def test_missing_extra_says_what_to_install(
    cli: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "timm", None)  # as if timm were not installed
    r = cli(
        "build",
        "timm:mobilenetv3_small_050",
        "-t",
        "rpi4",
        "--quantization",
        "float32",
        "--dry-run",
    )
    assert r.code == 2
    assert "timm: sources need the timm package" in r.err
    assert "pip install 'edgepack[timm]'" in r.err


def test_dry_run_resolves_names_without_building(cli: Callable[..., Any], bert_dir: Path) -> None:
    for args in (
        [TV, "--pretrained", "IMAGENET1K_V1"],
        ["timm:mobilenetv3_small_050"],
        [f"hf:{bert_dir}", "--task", "sequence-classification", "--sequence-length", "16"],
    ):
        r = cli("build", *args, "-t", "rpi4", "--quantization", "float32", "--dry-run")
        assert r.code == 0, r.err
        assert "plan is valid" in r.out
    r = cli(
        "build",
        TV,
        "--pretrained",
        "-t",
        "rpi4",
        "--quantization",
        "float32",
        "--dry-run",
        "--json",
    )
    assert json.loads(r.out)["model"]["pretrained"] == "DEFAULT"  # --pretrained alone


def test_text_data_for_a_model_without_tokenizer(tmp_path: Path) -> None:
    from edgepack.data import load_dataset
    from edgepack.stages.base import InputSpec

    txt, _ = _sentences(tmp_path)
    with pytest.raises(DataError) as e:
        load_dataset(txt, [InputSpec("x", (1, 4))], purpose="calibration")
    assert "is text, and this model has no tokenizer" in e.value.message
    assert "Hugging Face text sources" in e.value.hint


# --------------------------------------------------------------------------- builds (slow)


def _signature(path: Path) -> tuple[dict[str, Any], list[str]]:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    return it.get_signature_list(), [d["name"] for d in it.get_input_details()]


@pytest.mark.slow
def test_build_torchvision_by_name(cli: Callable[..., Any], tmp_path: Path) -> None:
    out = tmp_path / "pkg"
    r = cli(
        "build",
        TV,
        "--input-shape",
        SMALL,
        "-t",
        "rpi4",
        "--quantization",
        "float32",
        "-o",
        out,
        "--json",
    )
    assert r.code == 0, r.err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["name"] == "mobilenet_v3_small"
    assert manifest["source"]["spec"] == TV
    assert manifest["source"]["preprocess"]["crop"] == 64
    sigs, names = _signature(out / "model.tflite")
    assert sigs == {"serving_default": {"inputs": ["image"], "outputs": ["logits"]}}
    assert names == ["serving_default_image"]
    assert manifest["model"]["inputs"][0]["name"] == "serving_default_image"
    # the package computes what the seeded torchvision model computes
    from ai_edge_litert.interpreter import Interpreter

    ref = load_source(TV, None, [SMALL]).module
    x = np.random.default_rng(0).standard_normal((1, 3, 64, 64)).astype(np.float32)
    runner = Interpreter(model_path=str(out / "model.tflite")).get_signature_runner()
    got = runner(image=x)["logits"]
    want = ref(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-5 * max(1.0, np.abs(want).max()))


@pytest.mark.slow
def test_build_tiny_bert_by_name_with_text_data(
    cli: Callable[..., Any], bert_dir: Path, tmp_path: Path
) -> None:
    txt, jsonl = _sentences(tmp_path)
    out = tmp_path / "pkg"
    r = cli(
        "build",
        f"hf:{bert_dir}",
        "--task",
        "sequence-classification",
        "--sequence-length",
        "16",
        "-t",
        "rpi4",
        "--calibration",
        txt,
        "--eval",
        jsonl,
        "--no-accuracy-gate",
        "-o",
        out,
    )
    assert r.code == 0, r.err
    manifest = json.loads((out / "manifest.json").read_text())
    data = manifest["data"]
    assert data["calibration"]["sha256"] == hashlib.sha256(txt.read_bytes()).hexdigest()
    assert data["calibration"]["of"] == 24
    assert data["evaluation"]["file"] == "eval.jsonl" and data["evaluation"]["of"] == 12
    assert manifest["source"]["task"] == "sequence-classification"
    sigs, names = _signature(out / "model.tflite")
    # the signature lists its inputs sorted by name; the graph keeps the model's order
    assert sigs["serving_default"] == {
        "inputs": ["attention_mask", "input_ids"],
        "outputs": ["logits"],
    }
    assert [n.removeprefix("serving_default_") for n in names] == ["input_ids", "attention_mask"]
    # the float model in the package reads the tokenized sentences like the PyTorch model
    from ai_edge_litert.interpreter import Interpreter
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(bert_dir)
    enc = tok(
        ["the cat sat on the mat", "a very bad movie"],
        padding="max_length",
        max_length=16,
        truncation=True,
        return_tensors="np",
    )
    ref = AutoModelForSequenceClassification.from_pretrained(bert_dir).eval()
    float_model = out / manifest.get("reference_model", "model.tflite")
    runner = Interpreter(model_path=str(float_model)).get_signature_runner()
    for i in range(2):
        ids = enc["input_ids"][i : i + 1].astype(np.int32)
        mask = enc["attention_mask"][i : i + 1].astype(np.int32)
        got = runner(input_ids=ids, attention_mask=mask)["logits"]
        want = (
            ref(
                input_ids=torch.from_numpy(ids).long(), attention_mask=torch.from_numpy(mask).long()
            )
            .logits.detach()
            .numpy()
        )
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4)


# --------------------------------------------------------------------------- config and API


def test_edgepack_toml_takes_the_source_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: Callable[..., Any]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "edgepack.toml").write_text(
        "schema = 1\n"
        "[model]\n"
        f'source = "{TV}"\n'
        "pretrained = true\n"
        'input_shapes = ["1x3x64x64"]\n'
        "factory_args = { num_classes = 10, dropout = 0.1 }\n"
        "[[targets]]\n"
        'target = "rpi4"\n'
        'quantization = "float32"\n',
        encoding="utf-8",
    )
    r = cli("build", "--dry-run", "--json")
    assert r.code == 0, r.err
    model = json.loads(r.out)["model"]
    assert model["pretrained"] == "DEFAULT"
    assert model["factory_args"] == {"dropout": 0.1, "num_classes": 10}
    # the command line wins over the file
    r = cli("build", "--dry-run", "--json", "--factory-arg", "num_classes=3")
    assert json.loads(r.out)["model"]["factory_args"] == {"num_classes": 3}
    (tmp_path / "edgepack.toml").write_text(
        "schema = 1\n[model]\n"
        f'source = "{TV}"\nsequence_length = 0\n[[targets]]\ntarget = "rpi4"\n',
        encoding="utf-8",
    )
    r = cli("build", "--dry-run")
    assert r.code == 2 and "sequence_length" in r.err


def test_python_api_takes_the_source_options() -> None:
    from edgepack.api import _plan_fields

    fields = _plan_fields(
        {"factory_args": {"num_classes": 10}, "pretrained": True, "task": "embedding"}
    )
    assert fields["factory_args"] == (("num_classes", 10),)
    assert fields["pretrained"] == "DEFAULT"
    assert fields["task"] == "embedding"
    assert _plan_fields({"pretrained": "IMAGENET1K_V1"})["pretrained"] == "IMAGENET1K_V1"
    with pytest.raises(UsageError, match="invalid factory_args key"):
        _plan_fields({"factory_args": {"2bad": 1}})


@pytest.mark.slow
def test_build_timm_by_name_channels_last(cli: Callable[..., Any], tmp_path: Path) -> None:
    """timm by name, through the channels-last route (litert-torch's public convert): the
    signature is named there too, and the package computes what the seeded model does."""
    out = tmp_path / "pkg"
    spec = "timm:mobilenetv3_small_050"
    r = cli(
        "build",
        spec,
        "--input-shape",
        SMALL,
        "-t",
        "rpi4",
        "--quantization",
        "float32",
        "--io-layout",
        "nhwc",
        "--factory-arg",
        "num_classes=5",
        "-o",
        out,
    )
    assert r.code == 0, r.err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["source"]["factory_args"] == {"num_classes": 5}
    assert manifest["source"]["preprocess"]["interpolation"] == "bicubic"
    sigs, names = _signature(out / "model.tflite")
    assert sigs == {"serving_default": {"inputs": ["image"], "outputs": ["logits"]}}
    assert names == ["serving_default_image"]
    from ai_edge_litert.interpreter import Interpreter

    ref = load_source(spec, None, [SMALL], SourceOptions(factory_args=(("num_classes", 5),)))
    x = np.random.default_rng(1).standard_normal((1, 3, 64, 64)).astype(np.float32)
    runner = Interpreter(model_path=str(out / "model.tflite")).get_signature_runner()
    got = runner(image=x.transpose(0, 2, 3, 1))["logits"]
    want = ref.module(torch.from_numpy(x)).detach().numpy()
    assert got.shape == (1, 5)
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4 * max(1.0, np.abs(want).max()))


def test_timm_first_in_a_fresh_process() -> None:
    """timm imports torchvision itself: named sources import it first the way that works
    beside any torch (edgepack._torchvision), so timm loads wherever torchvision's C++
    extension does not."""
    import subprocess

    code = (
        "from edgepack.source import load_source\n"
        "m = load_source('timm:mobilenetv3_small_050', None, ['1x3x32x32'])\n"
        "print(m.inputs[0].name, tuple(m.module(*m.example_inputs).shape))\n"
    )
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root
    ).stdout.split()
    assert out == ["image", "(1,", "1000)"]


@pytest.mark.parametrize(
    ("args", "want"),
    [
        (["torchvision:x", "--pretrained"], ["torchvision:x", "--pretrained=DEFAULT"]),
        (["--pretrained", "-t", "rpi4"], ["--pretrained=DEFAULT", "-t", "rpi4"]),
        (["--pretrained", "timm:x"], ["--pretrained=DEFAULT", "timm:x"]),
        (["--pretrained", "IMAGENET1K_V1"], ["--pretrained", "IMAGENET1K_V1"]),
        (["--", "--pretrained"], ["--", "--pretrained"]),
    ],
)
def test_pretrained_value_may_be_omitted(args: list[str], want: list[str]) -> None:
    from edgepack.cli.build import fill_optional_values

    assert fill_optional_values(args) == want


def test_hf_image_model_takes_its_processor(tmp_path: Path) -> None:
    from edgepack._torchvision import import_torchvision

    import_torchvision()  # transformers' vision models import it (as hf: sources do first)
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    cfg = ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=4,
    )
    torch.manual_seed(0)
    folder = tmp_path / "tiny-vit"
    ViTForImageClassification(cfg).save_pretrained(folder)
    ViTImageProcessor(
        size={"height": 32, "width": 32},
        image_mean=[0.1, 0.2, 0.3],
        image_std=[0.4, 0.5, 0.6],
        resample=3,
    ).save_pretrained(folder)
    m = load_source(f"hf:{folder}", options=SourceOptions(task="image-classification"))
    assert [(s.name, s.shape) for s in m.inputs] == [("image", (1, 3, 32, 32))]
    assert m.output_names == ("logits",)
    assert m.preprocess is not None
    assert (m.preprocess["crop"], m.preprocess["interpolation"]) == (32, "bicubic")
    assert m.preprocess["mean"] == pytest.approx([0.1, 0.2, 0.3])
    assert m.preprocess["std"] == pytest.approx([0.4, 0.5, 0.6])
    x = torch.randn(1, 3, 32, 32)
    ref = ViTForImageClassification.from_pretrained(folder).eval()
    torch.testing.assert_close(m.module(x), ref(pixel_values=x).logits)


def test_source_class_names_from_pretrained_weights_and_id2label() -> None:
    """Labels for the package come from what the source knows: a pretrained torchvision
    weights' categories (none for a random init or another class count), an HF id2label
    unless it is transformers' LABEL_i placeholder."""
    from types import SimpleNamespace

    from edgepack._torchvision import import_torchvision
    from edgepack.named import _hf_labels, _tv_categories

    tv = import_torchvision()
    w = tv.models.get_model_weights("mobilenet_v3_small").DEFAULT
    names = _tv_categories(w, {})
    assert names is not None and len(names) == 1000 and names == tuple(w.meta["categories"])
    assert _tv_categories(None, {}) is None
    assert _tv_categories(w, {"num_classes": 10}) is None
    cfg = SimpleNamespace(id2label={0: "neg", 1: "pos"})
    assert _hf_labels(cfg, ("logits",)) == ("neg", "pos")
    assert _hf_labels(SimpleNamespace(id2label={0: "LABEL_0", 1: "LABEL_1"}), ("logits",)) is None
    assert _hf_labels(cfg, ("last_hidden_state",)) is None
