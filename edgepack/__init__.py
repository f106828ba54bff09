"""edgepack: take a PyTorch model to an edge device.

Heavy libraries (torch, litert_torch, ai_edge_quantizer, ai_edge_litert) are imported
inside the functions that need them so that `edgepack --help` stays instant. The Python
API (``edgepack.build``, ``edgepack.Package``) is loaded on first use, so
``import edgepack`` stays as light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["EdgepackError", "Package", "__version__", "build"]

if TYPE_CHECKING:
    from edgepack.api import Package, build
    from edgepack.errors import EdgepackError

_LAZY = {"build": "edgepack.api", "Package": "edgepack.api", "EdgepackError": "edgepack.errors"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'edgepack' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
