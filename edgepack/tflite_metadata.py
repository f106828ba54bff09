"""TFLite model metadata: what the TFLite Support library and Android ML Model Binding read.

The published format (tensorflow/tflite-support, metadata_schema.fbs, file identifier
"M001"): a ModelMetadata flatbuffer stored in a buffer of the model, named "TFLITE_METADATA"
in Model.metadata; associated files (labels.txt) are a zip archive appended to the
flatbuffer. tflite-support itself cannot share an environment with litert-torch (it pins
protobuf < 4), so the tables are written here with the ``flatbuffers`` package, field by
field: a table's field k (its k-th declared field; a union takes two, its type then its
value) sits in vtable slot k.

The model's own graph is untouched: re-serialized with one more buffer and metadata entry,
it loads and runs as before.
"""

from __future__ import annotations

import io
import struct
import zipfile
from dataclasses import dataclass, field
from typing import Any

METADATA_NAME = "TFLITE_METADATA"
FILE_IDENTIFIER = b"M001"
MIN_PARSER_VERSION = "1.0.0"  # nothing newer than the 1.0.0 schema is used

# enums of metadata_schema.fbs
ASSOCIATED_FILE_TYPE = {"UNKNOWN": 0, "DESCRIPTIONS": 1, "TENSOR_AXIS_LABELS": 2}
COLOR_SPACE = {"UNKNOWN": 0, "RGB": 1, "GRAYSCALE": 2}
CONTENT_FEATURE, CONTENT_IMAGE = 1, 2  # ContentProperties union
UNIT_NORMALIZATION = 1  # ProcessUnitOptions union

# field slots (declaration order in metadata_schema.fbs)
_AF = {"name": 0, "description": 1, "type": 2}  # AssociatedFile
_IMAGE_SIZE = {"width": 0, "height": 1}  # ImageSize
_IMAGE_PROPS = {"color_space": 0, "default_size": 1}  # ImageProperties
_CONTENT = {"props_type": 0, "props": 1}  # Content
_NORM = {"mean": 0, "std": 1}  # NormalizationOptions
_UNIT = {"options_type": 0, "options": 1}  # ProcessUnit
_STATS = {"max": 0, "min": 1}  # Stats
_TENSOR = {"name": 0, "description": 1, "content": 3, "process_units": 4, "stats": 5, "files": 6}
_SUBGRAPH = {"name": 0, "description": 1, "inputs": 2, "outputs": 3}  # SubGraphMetadata
_MODEL = {"name": 0, "description": 1, "version": 2, "subgraphs": 3, "author": 4}
_MODEL_MIN_PARSER = 7  # ModelMetadata.min_parser_version


class MetadataError(ValueError):
    """The model cannot carry metadata (or its metadata cannot be read)."""


@dataclass(frozen=True)
class TensorInfo:
    name: str
    description: str = ""
    image: dict[str, Any] | None = None  # color_space, width, height
    mean: tuple[float, ...] = ()  # NormalizationOptions, on raw pixel values
    std: tuple[float, ...] = ()
    stats_min: tuple[float, ...] = ()
    stats_max: tuple[float, ...] = ()
    labels_file: str | None = None  # an associated TENSOR_AXIS_LABELS file


@dataclass(frozen=True)
class ModelMetadataInfo:
    name: str
    description: str
    version: str
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    author: str = "edgepack"
    min_parser_version: str = MIN_PARSER_VERSION
    associated_files: tuple[str, ...] = field(default=(), compare=False)  # packed in the zip

    def to_dict(self) -> dict[str, Any]:
        def tensor(t: TensorInfo) -> dict[str, Any]:
            d: dict[str, Any] = {"name": t.name, "description": t.description}
            if t.image is not None:
                d["image"] = t.image
            if t.mean:
                d["normalization"] = {"mean": list(t.mean), "std": list(t.std)}
            if t.labels_file:
                d["labels_file"] = t.labels_file
            return d

        return {
            "name": self.name,
            "description": self.description,
            "version": self.version,
            "min_parser_version": self.min_parser_version,
            "inputs": [tensor(t) for t in self.inputs],
            "outputs": [tensor(t) for t in self.outputs],
            "associated_files": list(self.associated_files),
        }


# ------------------------------------------------------------------ writing


def build_metadata(meta: ModelMetadataInfo) -> bytes:
    """The ModelMetadata flatbuffer (file identifier M001)."""
    import flatbuffers

    b = flatbuffers.Builder(1024)

    def strings(values: list[int]) -> int:
        b.StartVector(4, len(values), 4)
        for off in reversed(values):
            b.PrependUOffsetTRelative(off)
        return int(b.EndVector())

    def floats(values: tuple[float, ...]) -> int:
        b.StartVector(4, len(values), 4)
        for v in reversed(values):
            b.PrependFloat32(float(v))
        return int(b.EndVector())

    def table(fields: list[tuple[int, str, Any]], slots: int) -> int:
        b.StartObject(slots)
        for slot, kind, value in fields:
            if kind == "off":
                b.PrependUOffsetTRelativeSlot(slot, value, 0)
            elif kind == "byte":
                b.PrependInt8Slot(slot, value, 0)
            elif kind == "ubyte":
                b.PrependUint8Slot(slot, value, 0)
            else:  # uint
                b.PrependUint32Slot(slot, value, 0)
        return int(b.EndObject())

    def associated(name: str, description: str, kind: str) -> int:
        n, d = b.CreateString(name), b.CreateString(description)
        return table(
            [
                (_AF["name"], "off", n),
                (_AF["description"], "off", d),
                (_AF["type"], "byte", ASSOCIATED_FILE_TYPE[kind]),
            ],
            5,
        )

    def tensor(t: TensorInfo) -> int:
        name, desc = b.CreateString(t.name), b.CreateString(t.description)
        fields: list[tuple[int, str, Any]] = [
            (_TENSOR["name"], "off", name),
            (_TENSOR["description"], "off", desc),
        ]
        if t.image is not None:
            size = table(
                [
                    (_IMAGE_SIZE["width"], "uint", int(t.image["width"])),
                    (_IMAGE_SIZE["height"], "uint", int(t.image["height"])),
                ],
                2,
            )
            props = table(
                [
                    (_IMAGE_PROPS["color_space"], "byte", COLOR_SPACE[t.image["color_space"]]),
                    (_IMAGE_PROPS["default_size"], "off", size),
                ],
                2,
            )
            kind = CONTENT_IMAGE
        else:
            props = table([], 0)  # FeatureProperties: no fields
            kind = CONTENT_FEATURE
        content = table(
            [(_CONTENT["props_type"], "ubyte", kind), (_CONTENT["props"], "off", props)], 3
        )
        fields.append((_TENSOR["content"], "off", content))
        if t.mean:
            mean, std = floats(t.mean), floats(t.std)
            norm = table([(_NORM["mean"], "off", mean), (_NORM["std"], "off", std)], 2)
            unit = table(
                [
                    (_UNIT["options_type"], "ubyte", UNIT_NORMALIZATION),
                    (_UNIT["options"], "off", norm),
                ],
                2,
            )
            fields.append((_TENSOR["process_units"], "off", strings([unit])))
        if t.stats_max:
            hi, lo = floats(t.stats_max), floats(t.stats_min)
            stats = table([(_STATS["max"], "off", hi), (_STATS["min"], "off", lo)], 2)
            fields.append((_TENSOR["stats"], "off", stats))
        if t.labels_file:
            f = associated(t.labels_file, "Labels of the model's classes", "TENSOR_AXIS_LABELS")
            fields.append((_TENSOR["files"], "off", strings([f])))
        return table(fields, 7)

    inputs = strings([tensor(t) for t in meta.inputs])
    outputs = strings([tensor(t) for t in meta.outputs])
    sub_name = b.CreateString(meta.name)
    subgraph = table(
        [
            (_SUBGRAPH["name"], "off", sub_name),
            (_SUBGRAPH["inputs"], "off", inputs),
            (_SUBGRAPH["outputs"], "off", outputs),
        ],
        10,
    )
    subgraphs = strings([subgraph])
    name, desc = b.CreateString(meta.name), b.CreateString(meta.description)
    version, author = b.CreateString(meta.version), b.CreateString(meta.author)
    parser = b.CreateString(meta.min_parser_version)
    root = table(
        [
            (_MODEL["name"], "off", name),
            (_MODEL["description"], "off", desc),
            (_MODEL["version"], "off", version),
            (_MODEL["subgraphs"], "off", subgraphs),
            (_MODEL["author"], "off", author),
            (_MODEL_MIN_PARSER, "off", parser),
        ],
        8,
    )
    b.Finish(root, file_identifier=FILE_IDENTIFIER)
    return bytes(b.Output())


def embed(model: bytes, metadata: bytes, files: dict[str, bytes]) -> bytes:
    """``model`` with ``metadata`` as its TFLITE_METADATA buffer (replacing one already
    there) and ``files`` packed as a zip appended to the flatbuffer."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    # A zip appended earlier is not part of the flatbuffer: re-packing drops it.
    m = schema.ModelT.InitFromPackedBuf(bytearray(model), 0)
    if any((buf.offset or 0) > 1 for buf in m.buffers or []):
        raise MetadataError("the model keeps its weights outside the flatbuffer (offset buffers)")
    buf = schema.BufferT()
    buf.data = list(metadata)
    m.buffers = list(m.buffers or [])
    entries = [e for e in (m.metadata or []) if _name(e.name) != METADATA_NAME]
    m.buffers.append(buf)
    entry = schema.MetadataT()
    entry.name = METADATA_NAME
    entry.buffer = len(m.buffers) - 1
    m.metadata = [*entries, entry]
    b = flatbuffers.Builder(len(model) + len(metadata) + 4096)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    out = io.BytesIO(bytes(b.Output()))
    if files:
        # "a" on data that is not a zip appends an archive after it (as the TFLite
        # metadata populator does); fixed timestamps keep the build reproducible.
        with zipfile.ZipFile(out, "a", zipfile.ZIP_STORED) as z:
            for name in sorted(files):
                info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
                z.writestr(info, files[name])
    return out.getvalue()


def _name(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")


# ------------------------------------------------------------------ reading


def read_metadata(model: bytes) -> ModelMetadataInfo | None:
    """The TFLITE_METADATA of a .tflite's bytes (None when it has none)."""
    from ai_edge_litert import schema_py_generated as schema

    try:
        m = schema.Model.GetRootAs(model, 0)
        data = None
        for i in range(m.MetadataLength()):
            md = m.Metadata(i)
            if _name(md.Name()) == METADATA_NAME:
                buf = m.Buffers(md.Buffer())
                data = bytes(buf.DataAsNumpy()) if buf.DataLength() else None
        if data is None:
            return None
        return _parse(data, _packed_files(model))
    except (IndexError, ValueError, TypeError, UnicodeDecodeError, struct.error) as exc:
        raise MetadataError(f"the model's {METADATA_NAME} cannot be read: {exc}") from exc


def _packed_files(model: bytes) -> tuple[str, ...]:
    try:
        with zipfile.ZipFile(io.BytesIO(model)) as z:
            return tuple(z.namelist())
    except zipfile.BadZipFile:
        return ()


def _parse(data: bytes, packed: tuple[str, ...]) -> ModelMetadataInfo:
    from flatbuffers import encode, number_types, packer
    from flatbuffers.table import Table

    if data[4:8] != FILE_IDENTIFIER:
        raise MetadataError(f"{METADATA_NAME} has no {FILE_IDENTIFIER.decode()} identifier")

    def root() -> Table:
        return Table(data, encode.Get(packer.uoffset, data, 0))

    def off(t: Table, slot: int) -> int:
        return int(t.Offset(4 + 2 * slot))

    def string(t: Table, slot: int) -> str:
        o = off(t, slot)
        return t.String(o + t.Pos).decode() if o else ""

    def scalar(t: Table, slot: int, kind: Any) -> int:
        o = off(t, slot)
        return int(t.Get(kind, o + t.Pos)) if o else 0

    def sub(t: Table, slot: int) -> Table | None:
        o = off(t, slot)
        return Table(t.Bytes, t.Indirect(o + t.Pos)) if o else None

    def tables(t: Table, slot: int) -> list[Table]:
        o = off(t, slot)
        if not o:
            return []
        start = t.Vector(o)
        return [Table(t.Bytes, t.Indirect(start + 4 * i)) for i in range(t.VectorLen(o))]

    def floats(t: Table, slot: int) -> tuple[float, ...]:
        o = off(t, slot)
        if not o:
            return ()
        start = t.Vector(o)
        return tuple(
            float(t.Get(number_types.Float32Flags, start + 4 * i)) for i in range(t.VectorLen(o))
        )

    color = {v: k for k, v in COLOR_SPACE.items()}
    file_type = {v: k for k, v in ASSOCIATED_FILE_TYPE.items()}

    def tensor(t: Table) -> TensorInfo:
        image = None
        content = sub(t, _TENSOR["content"])
        if content is not None:
            kind = scalar(content, _CONTENT["props_type"], number_types.Uint8Flags)
            props = sub(content, _CONTENT["props"])
            if kind == CONTENT_IMAGE and props is not None:
                size = sub(props, _IMAGE_PROPS["default_size"])
                cs = scalar(props, _IMAGE_PROPS["color_space"], number_types.Int8Flags)
                image = {
                    "color_space": color.get(cs, str(cs)),
                    "width": 0 if size is None else scalar(size, 0, number_types.Uint32Flags),
                    "height": 0 if size is None else scalar(size, 1, number_types.Uint32Flags),
                }
        mean: tuple[float, ...] = ()
        std: tuple[float, ...] = ()
        for unit in tables(t, _TENSOR["process_units"]):
            if scalar(unit, _UNIT["options_type"], number_types.Uint8Flags) == UNIT_NORMALIZATION:
                norm = sub(unit, _UNIT["options"])
                if norm is not None:
                    mean, std = floats(norm, _NORM["mean"]), floats(norm, _NORM["std"])
        labels = None
        for f in tables(t, _TENSOR["files"]):
            kind = scalar(f, _AF["type"], number_types.Int8Flags)
            if file_type.get(kind) == "TENSOR_AXIS_LABELS":
                labels = string(f, _AF["name"])
        stats = sub(t, _TENSOR["stats"])
        return TensorInfo(
            name=string(t, _TENSOR["name"]),
            description=string(t, _TENSOR["description"]),
            image=image,
            mean=mean,
            std=std,
            stats_max=() if stats is None else floats(stats, _STATS["max"]),
            stats_min=() if stats is None else floats(stats, _STATS["min"]),
            labels_file=labels,
        )

    r = root()
    subgraphs = tables(r, _MODEL["subgraphs"])
    first = subgraphs[0] if subgraphs else None
    return ModelMetadataInfo(
        name=string(r, _MODEL["name"]),
        description=string(r, _MODEL["description"]),
        version=string(r, _MODEL["version"]),
        inputs=tuple(tensor(t) for t in ([] if first is None else tables(first, 2))),
        outputs=tuple(tensor(t) for t in ([] if first is None else tables(first, 3))),
        author=string(r, _MODEL["author"]),
        min_parser_version=string(r, _MODEL_MIN_PARSER),
        associated_files=packed,
    )
