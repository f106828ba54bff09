"""One error hierarchy. Every error a user can cause carries a one-line message and a hint.

The CLI catches :class:`EdgepackError`, prints ``error: <message>`` and ``hint: <hint>`` to
stderr and exits with the error's ``exit_code``. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


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
