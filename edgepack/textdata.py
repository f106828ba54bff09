"""Text calibration / evaluation data for Hugging Face sources: .txt or .jsonl sentences.

- ``.txt``: one sentence per line (blank lines skipped), no labels;
- ``.jsonl``: one JSON object per line with a ``text`` string and an optional integer
  ``label`` (every line has one, or none does).

Sentences are tokenized with the model's own tokenizer (the source's folder, offline), padded
and truncated to the model's sequence length, into the arrays of its ``input_ids`` and
``attention_mask`` inputs (int64). The file's sha256 and the samples used are recorded like
an .npz's (:func:`edgepack.data.load_dataset`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgepack.errors import DataError
from edgepack.stages.base import InputSpec

TEXT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_MAX_PROBLEMS = 3


def read_sentences(path: Path, purpose: str) -> tuple[list[str], list[int] | None]:
    """The sentences of a .txt / .jsonl file and the .jsonl labels (None: unlabelled)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(
            f"{purpose} data {path} is not a readable UTF-8 text file: {exc}",
            "write one sentence per line (.txt) or one JSON object per line (.jsonl)",
        ) from exc
    lines = [(i, line) for i, line in enumerate(text.splitlines(), 1) if line.strip()]
    if path.suffix == ".txt":
        return [line.strip() for _, line in lines], None
    sentences: list[str] = []
    labels: list[int] = []
    problems: list[str] = []
    for number, line in lines:
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"line {number}: not JSON ({exc.msg})")
            continue
        if not isinstance(row, dict) or not isinstance(row.get("text"), str):
            problems.append(f'line {number}: no "text" string')
            continue
        sentences.append(row["text"])
        if "label" in row:
            label = row["label"]
            if isinstance(label, bool) or not isinstance(label, int) or label < 0:
                problems.append(f"line {number}: label {label!r} is not a class index (int >= 0)")
            else:
                labels.append(label)
    if labels and len(labels) != len(sentences) and not problems:
        problems.append(f"{len(labels)} of {len(sentences)} lines have a label (all or none)")
    if problems:
        shown = "; ".join(problems[:_MAX_PROBLEMS])
        more = (
            f" (and {len(problems) - _MAX_PROBLEMS} more)" if len(problems) > _MAX_PROBLEMS else ""
        )
        raise DataError(
            f"{purpose} data {path}: {shown}{more}",
            'write one JSON object per line: {"text": "a sentence", "label": 0}',
        )
    return sentences, labels or None


def load_text(
    path: Path, specs: Sequence[InputSpec], tokenizer: str | None, purpose: str
) -> tuple[tuple[np.ndarray, ...], np.ndarray | None]:
    """Tokenized arrays for ``specs`` (one per input, stacked on axis 0) and the labels."""
    names = [s.name for s in specs]
    if tokenizer is None or not names or any(n not in TEXT_INPUTS for n in names):
        raise DataError(
            f"{purpose} data {path} is text, and this model has no tokenizer "
            f"(inputs {', '.join(names)})",
            "text files feed Hugging Face text sources (hf:ORG/MODEL or hf:folder with its "
            "tokenizer files); for other models pass an .npz of arrays",
        )
    sentences, labels = read_sentences(path, purpose)
    if not sentences:
        raise DataError(f"{purpose} data {path} holds no sentences", "write one per line")
    tok = _tokenizer(tokenizer)
    length = int(specs[0].shape[-1])
    enc: Any = tok(
        sentences,
        padding="max_length",
        truncation=True,
        max_length=length,
        return_tensors="np",
    )
    arrays = []
    for s in specs:
        if s.name not in enc:
            raise DataError(
                f"the tokenizer in {tokenizer} gives no '{s.name}'",
                "build the model with the tokenizer it was trained with",
            )
        arrays.append(
            np.asarray(enc[s.name]).astype(np.int64).reshape(len(sentences), *s.shape[1:])
        )
    y = None if labels is None else np.asarray(labels, dtype=np.int64)
    return tuple(arrays), y


def _tokenizer(folder: str) -> Any:
    try:
        from transformers import AutoTokenizer
    except ImportError as exc:
        raise DataError(
            "text data needs the transformers package", "pip install 'edgepack[hf]'"
        ) from exc
    try:
        return AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except Exception as exc:
        raise DataError(
            f"cannot load the tokenizer from {folder}: {type(exc).__name__}",
            "save the tokenizer beside the model (tokenizer.save_pretrained(folder))",
        ) from exc
