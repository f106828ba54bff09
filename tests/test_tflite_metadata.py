"""TFLite metadata written by edgepack.tflite_metadata: read back by tflite-support (an
independent reader) and by our own reader; the model still runs unchanged."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgepack import tflite_metadata as tm
from edgepack.images import PRESETS, pixel_normalization

FIXTURE = Path(__file__).parent / "fixtures" / "tiny_int8.tflite"
LABELS = ("cat", "dog", "bird")


def _meta() -> tm.ModelMetadataInfo:
    spec = {**PRESETS["imagenet"], "channel_order": "RGB"}
    mean, std = pixel_normalization(spec)
    return tm.ModelMetadataInfo(
        name="tiny",
        description="a tiny model",
        version="1.2.3",
        inputs=(
            tm.TensorInfo(
                "image",
                "RGB image",
                {"color_space": "RGB", "width": 224, "height": 224},
                tuple(mean),
                tuple(std),
                stats_min=(-2.0, -2.0, -1.8),
                stats_max=(2.2, 2.4, 2.6),
            ),
        ),
        outputs=(tm.TensorInfo("logits", "one score per class", labels_file="labels.txt"),),
    )


def _embedded(tmp_path: Path) -> Path:
    data = tm.embed(
        FIXTURE.read_bytes(), tm.build_metadata(_meta()), {"labels.txt": b"cat\ndog\nbird\n"}
    )
    out = tmp_path / "with_metadata.tflite"
    out.write_bytes(data)
    return out


def _run(path: Path) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path), num_threads=1)
    it.allocate_tensors()
    d = it.get_input_details()[0]
    rng = np.random.default_rng(0)
    if np.issubdtype(d["dtype"], np.integer):
        info = np.iinfo(d["dtype"])
        x = rng.integers(info.min, info.max, size=d["shape"], endpoint=True).astype(d["dtype"])
    else:
        x = rng.standard_normal(d["shape"]).astype(d["dtype"])
    it.set_tensor(d["index"], x)
    it.invoke()
    out: np.ndarray = it.get_tensor(it.get_output_details()[0]["index"])
    return out.copy()


def test_model_runs_unchanged_with_metadata(tmp_path: Path) -> None:
    out = _embedded(tmp_path)
    assert out.stat().st_size > FIXTURE.stat().st_size
    np.testing.assert_array_equal(_run(FIXTURE), _run(out))
    from edgepack.tflite import read_model

    before, after = read_model(FIXTURE), read_model(out)
    assert after.op_counts() == before.op_counts()
    assert [t.to_dict() for t in after.input_tensors] == [t.to_dict() for t in before.input_tensors]


def test_own_reader_round_trip(tmp_path: Path) -> None:
    out = _embedded(tmp_path)
    meta = tm.read_metadata(out.read_bytes())
    assert meta is not None
    assert meta.name == "tiny" and meta.version == "1.2.3"
    assert meta.min_parser_version == "1.0.0"
    assert meta.associated_files == ("labels.txt",)
    (inp,) = meta.inputs
    assert inp.image == {"color_space": "RGB", "width": 224, "height": 224}
    np.testing.assert_allclose(inp.mean, [123.675, 116.28, 103.53], rtol=1e-6)
    np.testing.assert_allclose(inp.std, [58.395, 57.12, 57.375], rtol=1e-6)
    assert meta.outputs[0].labels_file == "labels.txt"
    assert tm.read_metadata(FIXTURE.read_bytes()) is None  # a model without metadata


def test_embedding_twice_replaces_the_metadata(tmp_path: Path) -> None:
    once = _embedded(tmp_path).read_bytes()
    other = tm.ModelMetadataInfo("second", "", "2", (tm.TensorInfo("x"),), (tm.TensorInfo("y"),))
    twice = tm.embed(once, tm.build_metadata(other), {})
    meta = tm.read_metadata(twice)
    assert meta is not None and meta.name == "second" and meta.associated_files == ()
    from ai_edge_litert import schema_py_generated as schema

    m = schema.Model.GetRootAs(twice, 0)
    names = [m.Metadata(i).Name() for i in range(m.MetadataLength())]
    assert names.count(b"TFLITE_METADATA") == 1


def test_tflite_support_reads_the_metadata(
    tmp_path: Path, tflite_support_reader: Callable[[Path], dict[str, Any]]
) -> None:
    read = tflite_support_reader(_embedded(tmp_path))
    meta = read["metadata"]
    assert meta["name"] == "tiny" and meta["min_parser_version"] == "1.0.0"
    (sub,) = meta["subgraph_metadata"]
    (inp,) = sub["input_tensor_metadata"]
    props = inp["content"]["content_properties"]
    assert inp["content"]["content_properties_type"] == "ImageProperties"
    assert props["color_space"] == "RGB"
    assert props["default_size"] == {"width": 224, "height": 224}
    (unit,) = inp["process_units"]
    assert unit["options_type"] == "NormalizationOptions"
    np.testing.assert_allclose(unit["options"]["mean"], [123.675, 116.28, 103.53], rtol=1e-6)
    np.testing.assert_allclose(unit["options"]["std"], [58.395, 57.12, 57.375], rtol=1e-6)
    np.testing.assert_allclose(inp["stats"]["min"], [-2.0, -2.0, -1.8], rtol=1e-6)
    (out,) = sub["output_tensor_metadata"]
    assert out["name"] == "logits"
    assert out["associated_files"] == [
        {
            "name": "labels.txt",
            "description": "Labels of the model's classes",
            "type": "TENSOR_AXIS_LABELS",
        }
    ]
    assert read["packed"] == ["labels.txt"]
    assert read["contents"]["labels.txt"].split() == list(LABELS)


@pytest.mark.parametrize(
    "corrupt",
    [
        b"XXXX",
        b"\xff" * 64,
        b"\xff\xff\x00\x00M001" + b"\x00" * 4,  # root offset past the end
        b"\x08\x00\x00\x00M001\xff\xff\xff\x7f",  # vtable offset out of range
        b"\x0c\x00\x00\x00M001\x00\x00\x00\x00\xf0\xff\xff\xff",
    ],
)
def test_unreadable_metadata_is_an_error(tmp_path: Path, corrupt: bytes) -> None:
    data = tm.embed(FIXTURE.read_bytes(), corrupt + b"\x00" * 8, {})
    with pytest.raises(tm.MetadataError, match="TFLITE_METADATA"):
        tm.read_metadata(data)


def test_the_reader_venv_is_made_by_the_test_setup() -> None:
    from tests.conftest import REPO

    script = REPO / "scripts" / "setup.d" / "50-tflite-support.sh"
    assert os.access(script, os.X_OK)
    text = script.read_text()
    assert "tflite-support==0.4.4" in text and ".ci/work/tflite-support" in text
    assert "EDGEPACK_TFLITE_SUPPORT_DIR" in text
