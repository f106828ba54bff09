"""One error hierarchy. Every error a user can cause carries a one-line message and a hint.

The CLI catches :class:`EdgepackError`, prints ``error: <message>`` and ``hint: <hint>`` to
stderr and exits with the error's ``exit_code``. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager


class EdgepackError(Exception):
    """Base class of every error that is the user's input, not our bug."""

    exit_code = 2

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(EdgepackError):
    """A bad option or combination of options."""


class ProfileError(EdgepackError):
    """Unknown target or an invalid target profile."""


class ModelLoadError(EdgepackError):
    """The model source cannot be loaded (file, factory, weights)."""


class DataError(EdgepackError):
    """Calibration / evaluation / training data is missing or malformed."""


class ExportError(EdgepackError):
    """torch.export could not trace the model."""


class ConversionError(EdgepackError):
    """litert-torch could not convert the exported program."""


class QuantizationError(EdgepackError):
    """Quantization failed or did not produce what the mode promises."""


class CompressionError(EdgepackError):
    """Pruning or distillation cannot be applied."""


class GateError(EdgepackError):
    """A release gate failed (accuracy, fidelity, size, latency). Exit code 3."""

    exit_code = 3


class PackageError(EdgepackError):
    """The package destination or an existing package is not usable."""


class CompatibilityError(EdgepackError):
    """The model cannot run as required on the target's accelerator."""


class DeviceError(EdgepackError):
    """A device cannot be reached or the benchmark on it failed. Exit code 4."""

    exit_code = 4


class RegressionError(EdgepackError):
    """A benchmark regressed against its baseline. Exit code 5."""

    exit_code = 5


class StorageError(PackageError):
    """No space left, a file size limit, or a folder that cannot be written (TMPDIR, the
    output). A fault of the machine, not of edgepack: exit code 2, never an abort."""


# errno -> what it means for a build. The first four only come from writing.
_WRITE_ERRNOS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large (a file size limit, ulimit -f)",
    errno.EROFS: "read-only file system",
}
_ACCESS_ERRNOS = {errno.EACCES: "permission denied", errno.EPERM: "operation not permitted"}


def storage_error(exc: BaseException, access: bool = True) -> StorageError | None:
    """The :class:`StorageError` for an OSError caused by the disk (or, with ``access``,
    by folder permissions) in ``exc`` or the exceptions it was raised from, else None."""
    seen: BaseException | None = exc
    visited: set[int] = set()  # a re-raised error can make the chain a cycle
    while seen is not None and id(seen) not in visited:
        visited.add(id(seen))
        if isinstance(seen, OSError):
            # a copy names its destination (the file being written) in filename2
            name = seen.filename2 or seen.filename
            where = f" {name}" if name else " a file"
            if seen.errno in _WRITE_ERRNOS:
                message = f"cannot write{where}: {_WRITE_ERRNOS[seen.errno]}"
            elif access and seen.errno in _ACCESS_ERRNOS:
                message = f"{_ACCESS_ERRNOS[seen.errno]}:{where}"
            else:
                message = ""
            if message:
                import tempfile

                return StorageError(
                    message,
                    "free space or choose writable folders: temporary files go to TMPDIR "
                    f"(now {tempfile.gettempdir()}), the package to --output",
                )
        seen = seen.__cause__ or seen.__context__
    return None


@contextmanager
def storage_errors() -> Iterator[None]:
    """Turn a full disk or an unwritable folder met inside the block into a StorageError,
    also when a stage reported it as its own error (a conversion "failing" on a full disk)."""
    try:
        yield
    except StorageError:
        raise
    except EdgepackError as exc:
        err = storage_error(exc, access=False)
        if err is None:
            raise
        raise err from exc
    except Exception as exc:
        err = storage_error(exc)
        if err is None:
            raise
        raise err from exc


def exception_line(exc: BaseException) -> str:
    """``Type: first line of the message`` (just ``Type`` when there is no message): how an
    exception from user code or a library is named in a one-line error."""
    msg = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {msg[0] if msg else ''}".rstrip(": ")


def decode_problem(exc: BaseException) -> str:
    """A short reason why a TOML/JSON file could not be read: not UTF-8, nested too deeply
    (a RecursionError of the parser), or the parser's own message."""
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})"
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return str(exc)
