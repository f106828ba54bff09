"""accuracy/io_adapter: integer I/O added to an ai-edge-quantizer model keeps its weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


@pytest.mark.slow
def test_integer_io_keeps_weights_stored_after_the_flatbuffer(tmp_path: Path) -> None:
    """ai-edge-quantizer stores 256 KiB of weights or more after the flatbuffer (buffer offset
    and size). Adding uint8 I/O re-packs the model: the weights must come along (they were
    dropped, and the interpreter refused the model: "Constant buffer 2 specified an out of
    range offset" on every Coral build that took the ai-edge-quantizer route)."""
    import torch
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.interpreter import Interpreter
    from torch import nn

    from edgepack.accuracy.fallback import Searcher
    from edgepack.stages.convert import convert_program

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(64, 640), nn.ReLU(), nn.Linear(640, 512)).eval()  # 360k
    args = (torch.zeros(1, 64),)
    float_path = tmp_path / "float.tflite"
    convert_program(torch.export.export(net, args, strict=False), args).export(str(float_path))
    x = np.random.default_rng(0).standard_normal((16, 64)).astype(np.float32)

    raw = Searcher(float_path.read_bytes(), [x], "float32").quantize(())
    raw_model = schema.ModelT.InitFromPackedBuf(bytearray(raw), 0)
    assert any(b.offset > 1 for b in raw_model.buffers)  # the case under test is produced

    q = Searcher(float_path.read_bytes(), [x], "uint8").quantize(())
    it = Interpreter(model_content=q)
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    assert inp["dtype"] == np.uint8 and out["dtype"] == np.uint8
    s_in, z_in = inp["quantization"]
    s_out, z_out = out["quantization"]
    got, want = [], []
    for sample in x[:8]:
        it.set_tensor(
            inp["index"], np.clip(np.round(sample / s_in) + z_in, 0, 255)[None].astype(np.uint8)
        )
        it.invoke()
        got.append((it.get_tensor(out["index"])[0].astype(np.float32) - z_out) * s_out)
        with torch.no_grad():
            want.append(net(torch.from_numpy(sample[None]))[0].numpy())
    a, b = np.ravel(got), np.ravel(want)
    assert float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b))) > 0.95  # the real weights
