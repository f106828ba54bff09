"""torchvision's model definitions import beside this torch, whatever its C++ extension does."""

from __future__ import annotations

import subprocess
import sys


def test_import_torchvision_builds_a_model_in_a_fresh_process() -> None:
    code = (
        "import torch\n"
        "from edgepack._torchvision import import_torchvision, ops_missing\n"
        "tv = import_torchvision()\n"
        "m = tv.models.squeezenet1_1(num_classes=7).eval()\n"
        "y = m(torch.zeros(1, 3, 64, 64))\n"
        "ext = tv.extension._has_ops()\n"
        "print(tuple(y.shape), ext, ops_missing())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out[:2] == ["(1,", "7)"]
    # Declared only where the extension could not load, and then always.
    assert (out[2], out[3]) in {("True", "False"), ("False", "True")}
