"""Import torchvision for its model definitions, also where its C++ operators cannot load.

PyPI's Linux x86-64 torchvision wheel is built against the CUDA build of torch. Beside the
CPU-only torch (what `make install` takes, and what many edge toolchains use) its C++ extension
does not load, and `import torchvision` then fails while registering shape functions for two
of those operators (`operator torchvision::nms does not exist`). edgepack needs only the model
definitions, which are plain Python; so when (and only when) the extension cannot load, the two
operator schemas are declared without kernels before torchvision is imported. A model that
really calls nms (a detection post-process) then fails at export with torch's own "no kernel"
error, which names the operator. Where torchvision's extension loads, nothing is declared.
"""

from __future__ import annotations

import sys
from typing import Any

# torch deregisters a Library's definitions when the object is collected: keep it alive.
_DECLARED: list[Any] = []
_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)


def ops_missing() -> bool:
    """True when torchvision was imported without its C++ operators."""
    return bool(_DECLARED)


def import_torchvision() -> Any:
    """`import torchvision`, declaring its detection operators when the extension cannot load.

    Raises ImportError when torchvision is not installed, and torchvision's own error for any
    other import failure.
    """
    try:
        import torchvision

        return torchvision
    except RuntimeError as exc:
        if "torchvision::" not in str(exc) or _DECLARED:
            raise
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]
    import torch

    lib = torch.library.Library("torchvision", "FRAGMENT")
    for schema in _SCHEMAS:
        lib.define(schema)
    _DECLARED.append(lib)
    import torchvision

    return torchvision
