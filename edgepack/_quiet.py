"""Keep native libraries (TFLite converter, XNNPACK, absl logging) from writing to the
terminal: the library never prints. What they wrote is kept for error messages."""

from __future__ import annotations

import io
import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager


class Captured:
    text: str = ""

    def tail(self, n: int = 5) -> str:
        lines = [ln for ln in self.text.splitlines() if ln.strip()]
        return " | ".join(lines[-n:])


@contextmanager
def quiet_native() -> Iterator[Captured]:
    """Redirect file descriptors 1 and 2 to a temporary file for the duration."""
    cap = Captured()
    os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "n")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stdout.flush()
    sys.stderr.flush()
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        saved = [os.dup(1), os.dup(2)]
        py_streams = (sys.stdout, sys.stderr)
        text = io.StringIO()
        raise_exc = logging.raiseExceptions
        try:
            os.dup2(tmp.fileno(), 1)
            os.dup2(tmp.fileno(), 2)
            # Python-level writes too (when sys.stderr is not fd 2, e.g. under a test runner);
            # a logging handler bound to a closed stream must not print "Logging error".
            sys.stdout = sys.stderr = text
            logging.raiseExceptions = False
            yield cap
        finally:
            sys.stdout, sys.stderr = py_streams
            logging.raiseExceptions = raise_exc
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            tmp.seek(0)
            cap.text = tmp.read().decode("utf-8", "replace") + text.getvalue()
