"""Text calibration / evaluation data (.txt, .jsonl) tokenized with the model's tokenizer."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from edgepack.data import load_dataset
from edgepack.errors import DataError
from edgepack.stages.base import InputSpec
from edgepack.textdata import read_sentences

SPECS = (InputSpec("input_ids", (1, 8), "int64"), InputSpec("attention_mask", (1, 8), "int64"))
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "on", "mat"]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> str:
    from transformers import BertTokenizerFast

    root = tmp_path_factory.mktemp("tok")
    (root / "vocab.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    folder = root / "tokenizer"
    BertTokenizerFast(vocab=str(root / "vocab.txt")).save_pretrained(folder)
    return str(folder)


def test_txt_is_tokenized_padded_and_truncated(tmp_path: Path, tokenizer: str) -> None:
    path = tmp_path / "calib.txt"
    path.write_text("the cat sat\n\nthe cat sat on the mat on the mat\n", encoding="utf-8")
    ds = load_dataset(path, SPECS, purpose="calibration", tokenizer=tokenizer)
    ids, mask = ds.inputs
    assert ids.dtype == np.int64 and mask.dtype == np.int64
    cls, sep, the, cat, sat, on, mat = 2, 3, 5, 6, 7, 8, 9
    assert ids.tolist() == [
        [cls, the, cat, sat, sep, 0, 0, 0],  # padded to the model's length
        [cls, the, cat, sat, on, the, mat, sep],  # truncated to it
    ]
    assert mask.tolist() == [[1, 1, 1, 1, 1, 0, 0, 0], [1] * 8]
    assert ds.labels is None
    assert ds.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert ds.record()["samples"] == 2


def test_jsonl_labels(tmp_path: Path, tokenizer: str) -> None:
    path = tmp_path / "eval.jsonl"
    rows = [{"text": "the cat", "label": 1}, {"text": "the mat", "label": 0}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    ds = load_dataset(path, SPECS, purpose="evaluation", tokenizer=tokenizer, require_labels=True)
    assert ds.labels is not None and ds.labels.tolist() == [1, 0]
    assert ds.inputs[0][0, :4].tolist() == [2, 5, 6, 3]


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (["{not json"], "line 1: not JSON"),
        (['{"txt": "a"}'], 'line 1: no "text" string'),
        (['{"text": "a", "label": -1}'], "line 1: label -1 is not a class index"),
        (['{"text": "a", "label": "pos"}'], "label 'pos' is not a class index"),
        (['{"text": "a", "label": 1}', '{"text": "b"}'], "1 of 2 lines have a label"),
    ],
)
def test_bad_jsonl(tmp_path: Path, lines: list[str], message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError) as e:
        read_sentences(path, "evaluation")
    assert message in e.value.message
    assert '{"text": "a sentence", "label": 0}' in e.value.hint


def test_empty_text_file(tmp_path: Path, tokenizer: str) -> None:
    path = tmp_path / "empty.txt"
    path.write_text("\n\n", encoding="utf-8")
    with pytest.raises(DataError, match="holds no sentences"):
        load_dataset(path, SPECS, purpose="calibration", tokenizer=tokenizer)
