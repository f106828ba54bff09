"""Stage `metadata`: the app record and the embedded TFLite metadata, on a real int8 model
(tests/fixtures/tiny_int8.tflite: uint8 NHWC 1x8x8x1 in, 3 classes out)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgepack import images
from edgepack import tflite_metadata as tm
from edgepack.errors import DataError
from edgepack.manifest import sha256_file
from edgepack.stages import metadata
from edgepack.stages.base import InputSpec, StageContext, TFLiteArtifact

TINY = Path(__file__).parent.parent / "fixtures" / "tiny_int8.tflite"


def test_grayscale_nhwc_model_gets_its_metadata(tmp_path: Path) -> None:
    built = TFLiteArtifact(TINY, "full-int8", io_layout="nhwc", sha256=sha256_file(TINY))
    spec = images.fit_spec(
        images.parse_spec("unit,mean=0.5,std=0.25"), InputSpec("x", (1, 1, 8, 8)), "t"
    )
    labels = ("zero", "one", "two")
    app = metadata.interface(spec, ["--preprocess"], labels, "--labels", built)
    assert app["preprocess"]["layout"] == "NHWC"  # as the package's input takes it
    assert app["preprocess"]["mean"] == [0.5] and app["input"]["dtype"] == "uint8"
    assert app["input"]["quantization"]["zero_point"] == 143
    assert app["labels"] == {
        "file": "labels.txt",
        "count": 3,
        "from": "--labels",
        "names": list(labels),
    }
    ctx = StageContext(workdir=tmp_path)
    out = metadata.run(built, app, spec, labels, "tiny", "a tiny model", "9", ctx)
    assert out.path != TINY and out.sha256 == sha256_file(out.path)
    assert ctx.records[-1].name == "metadata"
    assert ctx.records[-1].outputs == {"tiny_int8.tflite": out.sha256}
    meta = tm.read_metadata(out.path.read_bytes())
    assert meta is not None
    (inp,) = meta.inputs
    assert inp.image == {"color_space": "GRAYSCALE", "width": 8, "height": 8}
    np.testing.assert_allclose(inp.mean, [127.5], rtol=1e-6)
    np.testing.assert_allclose(inp.std, [63.75], rtol=1e-6)
    np.testing.assert_allclose(inp.stats_min, [-2.0], rtol=1e-6)
    np.testing.assert_allclose(inp.stats_max, [2.0], rtol=1e-6)
    assert meta.outputs[0].labels_file == "labels.txt"
    assert meta.associated_files == ("labels.txt",)
    assert TINY.read_bytes() == built.path.read_bytes()  # the input artifact is not touched


def test_labels_must_match_the_model_classes() -> None:
    metadata.check_labels(("a", "b", "c"), "--labels l.txt", TINY)
    with pytest.raises(DataError) as err:
        metadata.check_labels(("a", "b"), "--labels l.txt", TINY)
    assert err.value.message == (
        "--labels l.txt gives 2 class name(s) but the model's output "
        "'serving_default_output_0_output' (1x3) has 3 classes"
    )
