"""edgepack.errors: the storage-error search follows an exception's causes safely."""

from __future__ import annotations

import errno

import pytest

from edgepack.errors import GateError, StorageError, storage_error, storage_errors


class _Wrapper(Exception):
    pass


def _cyclic_gate_error() -> GateError:
    """A GateError re-raised ``from None`` out of the wrapper that carried it: its context is
    the wrapper, whose cause is the GateError again (how the build's mode search re-raises)."""
    try:
        try:
            try:
                raise GateError("accuracy gate failed")
            except GateError as e:
                raise _Wrapper() from e
        except _Wrapper as w:
            raise w.__cause__ from None  # type: ignore[misc]
    except GateError as exc:
        return exc
    raise AssertionError("unreachable")


def test_a_cyclic_cause_chain_ends() -> None:
    exc = _cyclic_gate_error()
    assert exc.__context__ is not None and exc.__context__.__cause__ is exc  # a real cycle
    assert storage_error(exc) is None
    with pytest.raises(GateError, match="accuracy gate failed"), storage_errors():
        raise exc


def test_a_full_disk_anywhere_in_the_chain_is_a_storage_error() -> None:
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device", "/out/model.tflite")
        except OSError as e:
            raise RuntimeError("conversion failed") from e
    except RuntimeError as exc:
        err = storage_error(exc)
    assert isinstance(err, StorageError)
    assert err.message == "cannot write /out/model.tflite: no space left on the device"
    assert "TMPDIR" in err.hint
