"""Calibration / evaluation / training data: .npz, .npy, or a folder of .npy files.

Conventions
- ``.npz``: inputs under the model's input names, or ``x`` / ``inputs`` (one input), or
  ``x0``, ``x1``, ... (several inputs); labels, when present, under ``y`` or ``labels``.
- ``.npy``: one array holding every sample of a single-input model.
- a folder: one ``.npy`` file per sample (sorted by file name), single input.

Each input array is (N, *input_shape[1:]) — samples stacked on the batch axis — or, for a
folder, one sample per file with or without its batch axis. Shapes, dtypes and finiteness are
checked against the model's inputs before any expensive work, and every problem is reported
at once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgepack.errors import DataError
from edgepack.manifest import sha256_file
from edgepack.stages.base import InputSpec

LABEL_KEYS = ("y", "labels", "label")


@dataclass(frozen=True)
class Dataset:
    """Samples for every model input (stacked on axis 0) and optional integer labels.

    ``sha256`` identifies the data file (a folder: its .npy files' names and hashes);
    ``selection`` says which of its samples these are (set by :meth:`select`).
    """

    inputs: tuple[np.ndarray, ...]
    labels: np.ndarray | None
    path: str
    sha256: str | None = None
    selection: dict[str, Any] | None = None
    # A folder of images (edgepack.images): the files used (relative path, sha256), the
    # class names of its subfolders, and the preprocessing that made the inputs.
    files: tuple[tuple[str, str], ...] = ()
    classes: tuple[str, ...] | None = None
    preprocess: dict[str, Any] | None = None

    def __len__(self) -> int:
        return int(self.inputs[0].shape[0])

    def select(self, n: int | None, seed: int = 0) -> Dataset:
        """At most ``n`` samples. All of them, in the file's order, when ``n`` is None or at
        least the file's size; else a seeded shuffle, stratified by label when there are
        labels (every class in proportion), kept in the file's order."""
        idx, record = selection(len(self), n, seed, self.labels)
        if record["selection"] == "all":
            return replace(self, selection=record)
        return Dataset(
            tuple(x[idx] for x in self.inputs),
            None if self.labels is None else self.labels[idx],
            self.path,
            self.sha256,
            record,
        )

    def record(self) -> dict[str, Any]:
        """What the manifest says about this data: the file and which samples were used.

        For a folder of images also: the files used (relative path and sha256; up to
        FILES_LISTED of them, beyond that their sha256 alone), its classes and the
        preprocessing."""
        rec = {"file": Path(self.path).name, "sha256": self.sha256, **(self.selection or {})}
        if self.preprocess is None:
            return rec
        rec["format"] = "images"
        rec["classes"] = None if self.classes is None else list(self.classes)
        rec["preprocess"] = dict(self.preprocess)
        if len(self.files) <= FILES_LISTED:
            rec["files"] = [{"path": p, "sha256": h} for p, h in self.files]
        return rec


FILES_LISTED = 1000  # image files listed one by one in the manifest (beyond: their sha256)


def selection(
    total: int, n: int | None, seed: int, labels: np.ndarray | None
) -> tuple[np.ndarray, dict[str, Any]]:
    """Which of ``total`` samples to use (:meth:`Dataset.select`) and the manifest record."""
    if n is None or n >= total:
        idx = np.arange(total)
        how = "all"
    else:
        idx = sample_indices(total, n, seed, labels)
        how = "shuffled" if labels is None else "stratified"
    return idx, {
        "samples": int(idx.size),
        "of": total,
        "selection": how,
        "seed": None if how == "all" else seed,
        "indices_sha256": indices_sha256(idx),
    }


def sample_indices(total: int, n: int, seed: int, labels: np.ndarray | None = None) -> np.ndarray:
    """``n`` of ``total`` sample indices (sorted), drawn with a seeded shuffle.

    With labels, stratified: each class gets its share ``n * count / total`` rounded by
    largest remainder (ties to the lower class), drawn from a seeded shuffle of its samples.
    numpy's default generator (PCG64) gives the same draw on every platform.
    """
    rng = np.random.default_rng(seed)
    if labels is None:
        return np.sort(rng.permutation(total)[:n])
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * n / total
    quota = np.floor(exact).astype(np.int64)
    short = n - int(quota.sum())
    order = sorted(range(len(classes)), key=lambda i: (-(exact[i] - quota[i]), i))
    for i in order[:short]:
        quota[i] += 1
    picked = [
        rng.permutation(np.flatnonzero(labels == c))[:q]
        for c, q in zip(classes, quota, strict=True)
    ]
    return np.sort(np.concatenate(picked))


def indices_sha256(idx: np.ndarray) -> str:
    """sha256 of sample indices (little-endian int64): which samples a build used."""
    return hashlib.sha256(np.asarray(idx, dtype="<i8").tobytes()).hexdigest()


def _data_sha256(p: Path, files: Sequence[Path] = ()) -> str:
    """A data file's sha256; a folder's: over its .npy files' names and sha256s."""
    if not files:
        return sha256_file(p)
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f.name}|{sha256_file(f)}\n".encode())
    return h.hexdigest()


def _input_keys(keys: Sequence[str], specs: Sequence[InputSpec]) -> list[str] | None:
    names = [s.name for s in specs]
    if all(n in keys for n in names):
        return names
    if len(specs) == 1:
        for k in ("x", "inputs", "input"):
            if k in keys:
                return [k]
        data_keys = [k for k in keys if k not in LABEL_KEYS]
        if len(data_keys) == 1:
            return data_keys
        return None
    numbered = [f"x{i}" for i in range(len(specs))]
    if all(k in keys for k in numbered):
        return numbered
    return None


def load_dataset(
    path: str | Path,
    specs: Sequence[InputSpec],
    *,
    purpose: str,
    samples: int | None = None,
    require_labels: bool = False,
    seed: int = 0,
    preprocess: dict[str, Any] | None = None,
    class_names: Sequence[str] | None = None,
    tokenizer: str | None = None,
) -> Dataset:
    """Load and validate data for a model with inputs ``specs``.

    ``purpose`` ("calibration", "evaluation", "training") names the data in messages.
    ``samples`` of them are used, drawn with ``seed`` (:meth:`Dataset.select`).
    A folder of images is preprocessed with ``preprocess`` (edgepack.images; its labels
    follow ``class_names`` when given, else its sorted subfolders).
    ``tokenizer``: the model's tokenizer folder, for text files (:mod:`edgepack.textdata`).
    """
    p = Path(path)
    if not p.exists():
        raise DataError(
            f"{purpose} data not found: {p}",
            "pass an existing .npz, .npy, folder of images or folder of .npy files",
        )
    labels: np.ndarray | None = None
    files: list[Path] = []
    if p.is_dir():
        from edgepack import images

        folder = images.scan_folder(p, purpose, class_names)
        if folder is not None:
            return _load_images(folder, specs, purpose, samples, require_labels, seed, preprocess)
        files = sorted(p.glob("*.npy"))
        if not files:
            raise DataError(f"{purpose} data folder {p} holds no .npy files", _FORMAT_HINT)
        if len(specs) != 1:
            raise DataError(
                f"{purpose} data folder {p} can only feed a single-input model "
                f"(this one has {len(specs)} inputs)",
                "use an .npz with one array per input name (or x0, x1, ...)",
            )
        want = tuple(specs[0].shape[1:])
        arrays = []
        for f in files:
            a = _load_npy(f, purpose)
            if a.shape == want:
                a = a[None]
            arrays.append(a)
        try:
            inputs: tuple[np.ndarray, ...] = (np.concatenate(arrays, axis=0),)
        except ValueError as exc:
            raise DataError(
                f"{purpose} data folder {p} holds .npy files of different shapes", _FORMAT_HINT
            ) from exc
    elif p.suffix == ".npy":
        if len(specs) != 1:
            raise DataError(
                f"{purpose} data {p} is a single .npy but the model has {len(specs)} inputs",
                "use an .npz with one array per input name (or x0, x1, ...)",
            )
        inputs = (_load_npy(p, purpose),)
    elif p.suffix == ".npz":
        try:
            with np.load(p, allow_pickle=False) as z:
                content = {k: z[k] for k in z.files}
        except Exception as exc:
            raise DataError(
                f"{purpose} data {p} is not a readable .npz: {exc}", _FORMAT_HINT
            ) from exc
        keys = _input_keys(list(content), specs)
        if keys is None:
            expected = ", ".join(s.name for s in specs)
            raise DataError(
                f"{purpose} data {p} has arrays [{', '.join(sorted(content))}] but none named "
                f"for the model's inputs [{expected}]",
                "name the input array 'x' (one input) or after each input (or x0, x1, ...)",
            )
        inputs = tuple(content[k] for k in keys)
        for k in LABEL_KEYS:
            if k in content:
                labels = content[k]
                break
    elif p.suffix in (".txt", ".jsonl"):
        from edgepack.textdata import load_text

        inputs, labels = load_text(p, specs, tokenizer, purpose)
    else:
        raise DataError(f"{purpose} data {p} has an unsupported format '{p.suffix}'", _FORMAT_HINT)

    problems = []
    n = None
    fixed = []
    for spec, x in zip(specs, inputs, strict=True):
        if x.dtype.kind not in "fiub":
            problems.append(f"input '{spec.name}' has dtype {x.dtype} (numeric expected)")
            fixed.append(x)
            continue
        if x.ndim == 0:
            problems.append(f"input '{spec.name}' is a single number (a 0-d array), not samples")
            fixed.append(x)
            continue
        want = tuple(spec.shape[1:])
        if x.ndim == len(spec.shape) - 1 and tuple(x.shape) == want:
            x = x[None]
        if tuple(x.shape[1:]) != want:
            problems.append(
                f"input '{spec.name}' has samples of shape {tuple(x.shape[1:])}, "
                f"the model takes {want} (full shape {tuple(spec.shape)})"
            )
        if spec.dtype.startswith("float"):
            if x.dtype.kind == "f" and not np.isfinite(x).all():
                bad = int((~np.isfinite(x)).sum())
                problems.append(f"input '{spec.name}' holds {bad} NaN/inf values")
            x = x.astype(np.float32, copy=False)
        if n is None:
            n = x.shape[0]
        elif x.shape[0] != n:
            problems.append(f"input '{spec.name}' has {x.shape[0]} samples, the first has {n}")
        fixed.append(x)
    if labels is not None:
        if labels.ndim != 1 or labels.dtype.kind not in "iu":
            problems.append(f"labels must be a 1-D integer array, got {labels.dtype}{labels.shape}")
        elif n is not None and labels.shape[0] != n:
            problems.append(f"{labels.shape[0]} labels for {n} samples")
        elif labels.size and int(labels.min()) < 0:
            problems.append(f"{int((labels < 0).sum())} negative labels (class indices start at 0)")
    elif require_labels:
        problems.append("no labels (an array named 'y' or 'labels')")
    if n == 0:
        problems.append("no samples")
    if problems:
        raise DataError(
            f"{purpose} data {p} does not fit the model: " + "; ".join(problems),
            "samples are stacked on axis 0 with the model's input shape after it; see docs/data.md",
        )
    if samples is not None and samples < 1:
        raise DataError(f"sample count must be >= 1, got {samples}", "pass e.g. --samples 200")
    return Dataset(tuple(fixed), labels, str(p), _data_sha256(p, files)).select(samples, seed)


_FORMAT_HINT = (
    "use .npz (arrays 'x' and optional 'y'), .npy (samples stacked on axis 0), "
    "a folder of images or a folder of .npy files (one sample each)"
)


def _load_images(
    folder: Any,  # edgepack.images.ImageFolder
    specs: Sequence[InputSpec],
    purpose: str,
    samples: int | None,
    require_labels: bool,
    seed: int,
    preprocess: dict[str, Any] | None,
) -> Dataset:
    """The selected images of ``folder``, decoded and preprocessed (only those are read)."""
    from edgepack import images

    where = f"{purpose} data {folder.root}"
    if len(specs) != 1:
        raise DataError(
            f"{where} is a folder of images, but the model has {len(specs)} inputs",
            "image folders feed single-input models; use an .npz with one array per input",
        )
    spec = images.fit_spec(preprocess, specs[0], where)
    if require_labels and folder.labels is None:
        raise DataError(
            f"{where} holds unlabelled images (no class subfolders)",
            "put each class's images in a subfolder named after the class",
        )
    if samples is not None and samples < 1:
        raise DataError(f"sample count must be >= 1, got {samples}", "pass e.g. --samples 200")
    idx, record = selection(len(folder.files), samples, seed, folder.labels)
    xs, used = [], []
    for rel, data, digest in images.read_files(folder, idx):
        xs.append(images.decode(data, folder.root / rel, spec, purpose))
        used.append((rel, digest))
    return Dataset(
        (np.stack(xs),),
        None if folder.labels is None else folder.labels[idx],
        str(folder.root),
        images.files_sha256(used),
        record,
        files=tuple(used),
        classes=folder.classes,
        preprocess={k: spec[k] for k in images.SPEC_KEYS},
    )


def _load_npy(p: Path, purpose: str) -> np.ndarray:
    try:
        return np.load(p, allow_pickle=False)
    except Exception as exc:
        raise DataError(f"{purpose} data {p} is not a readable .npy: {exc}", _FORMAT_HINT) from exc


# ------------------------------------------------------------------ data given in memory


def memory_arrays(value: object, purpose: str) -> dict[str, np.ndarray] | None:
    """Data passed to the Python API in memory, as the arrays of an .npz; None for a path.

    Accepted: an array (the samples of a single-input model), a dict of arrays (the .npz
    convention: input names or x / x0, x1, ...; labels under y), or an ``(x, y)`` tuple
    (x an array, or a tuple/list of arrays for several inputs; y the integer labels).
    The arrays are then checked by :func:`load_dataset` like a file's.
    """
    if value is None or isinstance(value, (str, Path)):
        return None
    bad = DataError(
        f"{purpose} data is a {type(value).__name__}: pass a numpy array, a dict of arrays, "
        "an (x, y) tuple, or a path",
        "e.g. calibration=x (samples stacked on axis 0), eval=(x, y), or 'calib.npz'",
    )
    if isinstance(value, np.ndarray):
        return {"x": value}
    if isinstance(value, dict):
        if not value or not all(isinstance(k, str) for k in value):
            raise bad
        arrays = {k: np.asarray(v) for k, v in value.items()}
    elif isinstance(value, tuple) and len(value) == 2:
        x, y = value
        xs = tuple(x) if isinstance(x, (tuple, list)) else (x,)
        if len(xs) == 1:
            arrays = {"x": np.asarray(xs[0])}
        else:
            arrays = {f"x{i}": np.asarray(a) for i, a in enumerate(xs)}
        arrays["y"] = np.asarray(y)
    else:
        raise bad
    if any(a.dtype == object for a in arrays.values()):
        raise DataError(
            f"{purpose} data holds Python objects, not numbers",
            "pass numeric numpy arrays (np.stack your samples)",
        )
    return arrays


def arrays_sha256(arrays: dict[str, np.ndarray]) -> str:
    """sha256 over named arrays (name, dtype, shape, bytes; sorted by name): the identity of
    data given in memory, recorded in the manifest as a file's sha256 would be."""
    import hashlib

    h = hashlib.sha256()
    for k in sorted(arrays):
        a = np.ascontiguousarray(arrays[k])
        h.update(f"{k}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()
