"""Fuzz: mutated .tflite and TOML files through the real CLI never crash it.

Seeded, so a failure reproduces. Every run must end with exit 0 or the exit code of an
EdgepackError (a clean `error:` line and a hint), never an unexpected exception or a traceback.
The seed model is tests/fixtures/tiny_int8.tflite (a real litert-torch full-int8 build, see
tests/fixtures/README.md); the TOML seeds are a built-in target profile and the edgepack.toml of
the release tests. The counts (cases, exit-code histogram) are printed (`pytest -s`) and
checked: most mutations must reach the parsers, not all fail the same way.
"""

from __future__ import annotations

import random
import struct
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from edgepack.errors import EdgepackError
from tests.conftest import REPO, CliResult
from tests.release.conftest import CONFIG, make_project

SEED_MODEL = REPO / "tests" / "fixtures" / "tiny_int8.tflite"
PROFILE = REPO / "targets" / "rpi4.toml"
N_TFLITE = 300
N_TOML = 300
CLEAN_CODES = (
    {0} | {cls.exit_code for cls in (EdgepackError, *EdgepackError.__subclasses__())} | {6}
)  # 6: VerifyError (a PackageError subclass)


def _crash(res: CliResult | BaseException) -> str | None:
    """Why a run is a crash (None: a clean outcome)."""
    if isinstance(res, BaseException):
        return f"{type(res).__name__}: {res}"
    if "Traceback" in res.err or "Traceback" in res.out:
        return "traceback in the output: " + res.err[-300:]
    if res.code not in CLEAN_CODES:
        return f"exit {res.code}: {res.err[-300:]}"
    if res.code != 0 and not res.err.startswith(("error: ", "Usage: ")):
        return f"exit {res.code} without an error line: {res.err[-300:]}"
    return None


def _run(cli: Callable[..., CliResult], *args: str | Path) -> CliResult | BaseException:
    try:
        return cli(*args)
    except BaseException as exc:  # recording the crash is the point
        return exc


# --------------------------------------------------------------------------- .tflite


def _mutate_bytes(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    b = bytearray(data)
    kind = rng.choice(["flip", "truncate", "offset", "word", "splice"])
    if kind == "flip":  # a few random bits
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
    elif kind == "truncate":
        b = b[: rng.randrange(len(b))]
    elif kind in ("offset", "word"):  # a 4-byte field (offset, length, index) set to junk
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(0, len(b) - 4, 4)
            value = rng.choice(
                [0, 1, -1, 0x7FFFFFFF, -0x80000000, len(b), len(b) * 4, rng.getrandbits(32)]
            )
            b[i : i + 4] = struct.pack("<I", value & 0xFFFFFFFF)
    else:  # a chunk repeated or dropped
        i, j = sorted(rng.randrange(len(b)) for _ in range(2))
        b = b[:i] + b[j:] if rng.random() < 0.5 else b[:j] + b[i:j] + b[j:]
    if rng.random() < 0.9 and len(b) >= 8:
        b[4:8] = b"TFL3"  # most cases get past the identifier check to the parser
    return kind, bytes(b)


def test_fuzz_tflite_inspect_and_check(cli: Callable[..., CliResult], tmp_path: Path) -> None:
    rng = random.Random(1234)
    seed = SEED_MODEL.read_bytes()
    assert cli("inspect", SEED_MODEL).code == 0  # the seed itself is fine
    codes: Counter[int | str] = Counter()
    kinds: Counter[str] = Counter()
    crashes: list[str] = []
    for n in range(N_TFLITE):
        kind, data = _mutate_bytes(seed, rng)
        kinds[kind] += 1
        f = tmp_path / f"m{n}.tflite"
        f.write_bytes(data)
        target = ("coral-usb", "rpi4", "host")[n % 3]
        for args in (("inspect", f), ("check", f, "--target", target)):
            res = _run(cli, *args)
            why = _crash(res)
            codes[res.code if isinstance(res, CliResult) else "crash"] += 1
            if why:
                crashes.append(f"case {n} ({kind}) {args[0]}: {why}")
        f.unlink()
    print(f"\nfuzz .tflite: {N_TFLITE} files, {sum(codes.values())} runs; exit codes {dict(codes)}")
    print(f"mutations: {dict(kinds)}")
    assert not crashes, "\n".join(crashes[:10])
    # The mutations reach the parser: some files still read (exit 0), many do not (exit 2).
    assert codes[0] > 0 and codes[2] > 0


# --------------------------------------------------------------------------- TOML

_JUNK_VALUES = [
    '""',
    "-1",
    "0",
    "1e309",
    "nan",
    "true",
    "[]",
    "{}",
    "[1, 2]",
    '"x" ',
    "1979-05-27T07:32:00Z",
    "9999999999999999999999",
    '"\\u0000"',
    "'''\n'''",
]


def _mutate_toml(text: str, rng: random.Random) -> tuple[str, bytes]:
    lines = text.splitlines()
    kind = rng.choice(["value", "key", "drop", "dup", "table", "bytes", "encoding", "nest"])
    kv = [i for i, ln in enumerate(lines) if "=" in ln and not ln.lstrip().startswith("#")]
    if kind == "value" and kv:  # a value of another type
        i = rng.choice(kv)
        lines[i] = lines[i].split("=", 1)[0] + "= " + rng.choice(_JUNK_VALUES)
    elif kind == "key" and kv:  # an unknown or misspelt key
        i = rng.choice(kv)
        key, val = lines[i].split("=", 1)
        lines[i] = rng.choice([key.strip() + "x", "é", '"a.b"', "x.y.z", " "]) + " =" + val
    elif kind == "drop" and lines:
        del lines[rng.randrange(len(lines))]
    elif kind == "dup" and lines:
        i = rng.randrange(len(lines))
        lines.insert(i, lines[i])
    elif kind == "table":
        lines.insert(
            rng.randrange(len(lines) + 1),
            rng.choice(["[device]", "[[targets]]", "[budgets.x]", "[", "[[", "[a]]"]),
        )
    elif kind == "nest":  # deeply nested arrays or inline tables
        depth = rng.choice([50, 500, 5000])
        value = (
            "[" * depth + "]" * depth if rng.random() < 0.5 else "{a=" * depth + "1" + "}" * depth
        )
        lines.insert(rng.randrange(len(lines) + 1), f"deep = {value}")
    raw = "\n".join(lines).encode("utf-8")
    if kind == "bytes":  # random bytes flipped anywhere
        b = bytearray(raw)
        for _ in range(rng.randint(1, 6)):
            i = rng.randrange(len(b))
            b[i] = rng.randrange(256)
        raw = bytes(b)
    elif kind == "encoding":  # latin-1, UTF-16 or a stray byte
        choice = rng.random()
        if choice < 0.33:
            raw = text.replace("description", "# café\ndescription").encode("latin-1")
        elif choice < 0.66:
            raw = text.encode("utf-16")
        else:
            raw = raw + b"\n# \xff\xfe\n"
    return kind, raw


def _toml_cases(
    cli: Callable[..., CliResult],
    seed_text: str,
    write: Callable[[bytes], list[str | Path]],
    n: int,
    seed: int,
) -> tuple[Counter[int | str], list[str]]:
    rng = random.Random(seed)
    codes: Counter[int | str] = Counter()
    crashes: list[str] = []
    for i in range(n):
        kind, raw = _mutate_toml(seed_text, rng)
        res = _run(cli, *write(raw))
        codes[res.code if isinstance(res, CliResult) else "crash"] += 1
        why = _crash(res)
        if why:
            crashes.append(f"case {i} ({kind}): {why}")
    return codes, crashes


def test_fuzz_target_profiles(cli: Callable[..., CliResult], tmp_path: Path) -> None:
    f = tmp_path / "board.toml"

    def write(raw: bytes) -> list[str | Path]:
        f.write_bytes(raw)
        return ["targets", "show", f]

    codes, crashes = _toml_cases(cli, PROFILE.read_text(), write, N_TOML // 2, seed=99)
    print(f"\nfuzz target profiles: {N_TOML // 2} files; exit codes {dict(codes)}")
    assert not crashes, "\n".join(crashes[:10])
    assert codes[0] > 0 and codes[2] > 0


def test_fuzz_release_configs(
    cli: Callable[..., CliResult], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = make_project(tmp_path / "project")  # model, weights, data, boards/tiny.toml
    monkeypatch.chdir(project)
    cfg = project / "edgepack.toml"

    def write(raw: bytes) -> list[str | Path]:
        cfg.write_bytes(raw)
        return ["build", "--dry-run"]

    codes, crashes = _toml_cases(cli, CONFIG, write, N_TOML - N_TOML // 2, seed=7)
    print(f"\nfuzz edgepack.toml: {N_TOML - N_TOML // 2} files; exit codes {dict(codes)}")
    assert not crashes, "\n".join(crashes[:10])
    assert codes[0] > 0 and codes[2] > 0
