"""A structural check of a TFLite flatbuffer, run before any runtime sees the bytes.

tflite-runtime 2.14 builds its model without the flatbuffer verifier: a truncated or corrupt
file makes it read past the end of the buffer and the process dies with a segmentation fault
(tried). So before handing the bytes to a runtime we walk every table, vector and string the
interpreter reads (following ``tensorflow/lite/schema/schema.fbs``) and check that each lies
inside the file. This is not a full flatbuffer verifier (alignment and the scalar fields of
operator options are not checked), but it turns truncation and random bytes into a
:class:`ModelError`. The walk also lists the custom operator codes, which is how Flex
(``SELECT_TF_OPS``) models are recognised.

Standard library only.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ddsp_device.errors import ModelError

TFLITE_IDENTIFIER = b"TFL3"
TFLITE_SCHEMA_VERSION = 3

_U8 = struct.Struct("<B")
_U16 = struct.Struct("<H")
_I32 = struct.Struct("<i")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")

# Operator options (schema.fbs unions ``BuiltinOptions`` and ``BuiltinOptions2``) that hold
# vectors or strings: (union, type id) -> ((field index, element size in bytes), ...).
_OPTIONS_VECTORS: dict[tuple[int, int], tuple[tuple[int, int], ...]] = {
    (1, 3): ((1, 4), (2, 4)),  # ConcatEmbeddingsOptions
    (1, 17): ((0, 4),),  # ReshapeOptions.new_shape
    (1, 30): ((0, 4),),  # SqueezeOptions.squeeze_dims
    (1, 111): ((0, 1), (1, 1)),  # VarHandleOptions.container, shared_name
    (1, 115): ((0, 4),),  # BucketizeOptions.boundaries
    (2, 2): ((0, 8),),  # StablehloBroadcastInDimOptions
    (2, 3): ((0, 8), (1, 8), (2, 8)),  # StablehloSliceOptions
    (2, 4): ((0, 8), (1, 8), (2, 8), (3, 8), (4, 1), (7, 8), (10, 8), (13, 8), (16, 4)),
    (2, 5): ((0, 1), (2, 1), (4, 4), (5, 1)),  # StablehloCustomCallOptions
    (2, 6): ((0, 8),),  # StablehloReduceOptions
    (2, 7): ((1, 8), (2, 8), (3, 8)),  # StablehloScatterOptions
    (2, 9): ((0, 8),),  # StablehloDynamicSliceOptions
    (2, 10): ((0, 8), (1, 8), (2, 8)),  # StablehloPadOptions
    (2, 12): ((0, 8), (1, 8), (2, 8), (3, 8), (4, 4)),  # StablehloDotGeneralOptions
    (2, 13): ((0, 8), (1, 8), (2, 8), (3, 8), (4, 8)),  # StablehloReduceWindowOptions
    (2, 16): ((0, 8), (1, 8), (2, 8), (4, 8)),  # StablehloGatherOptions
    (2, 17): ((0, 8),),  # StablehloTransposeOptions
    (2, 21): ((0, 1), (2, 1)),  # StableHLOCompositeOptions
    (2, 23): ((0, 4),),  # StablehloCaseOptions
}
# Element sizes of the sparse index vectors (union SparseIndexVector: Int32, Uint16, Uint8).
_SPARSE_INDEX_SIZES = {1: 4, 2: 2, 3: 1}


@dataclass(frozen=True)
class FlatbufferSummary:
    """What the structural walk learnt about a model.

    ``custom_codes`` are the custom operator codes (Flex ops are ``Flex<TfOpName>``);
    ``builtin_codes`` the builtin operator numbers with their versions; ``size`` is where the
    flatbuffer ends (one past the last byte of any of its objects): appended data starts there.
    """

    schema_version: int
    size: int
    n_subgraphs: int
    custom_codes: tuple[str, ...]
    builtin_codes: tuple[tuple[int, int], ...]


class _Truncated(Exception):
    """Internal: an object lies outside the buffer."""


class _Walker:
    """Bounds-checked reads of flatbuffer tables, vectors and strings in ``data``."""

    def __init__(self, data: bytes):
        self.data = data
        self.size = len(data)
        self.end = 8  # one past the last byte any object checked so far occupies

    def _need(self, pos: int, length: int, what: str) -> None:
        if pos < 0 or length < 0 or pos + length > self.size:
            raise _Truncated(f"{what} at byte {pos} (+{length}) lies outside the file ({self.size} bytes)")
        if pos + length > self.end:
            self.end = pos + length

    def u8(self, pos: int, what: str) -> int:
        self._need(pos, 1, what)
        return self.data[pos]

    def u16(self, pos: int, what: str) -> int:
        self._need(pos, 2, what)
        return _U16.unpack_from(self.data, pos)[0]

    def i32(self, pos: int, what: str) -> int:
        self._need(pos, 4, what)
        return _I32.unpack_from(self.data, pos)[0]

    def u32(self, pos: int, what: str) -> int:
        self._need(pos, 4, what)
        return _U32.unpack_from(self.data, pos)[0]

    def u64(self, pos: int, what: str) -> int:
        self._need(pos, 8, what)
        return _U64.unpack_from(self.data, pos)[0]

    def table(self, pos: int, what: str) -> tuple[int, int, int]:
        """Check the table at ``pos`` and its vtable; return ``(pos, vtable_pos, vtable_size)``."""
        vtable = pos - self.i32(pos, what)
        vtable_size = self.u16(vtable, f"{what} vtable")
        table_size = self.u16(vtable + 2, f"{what} vtable")
        if vtable_size < 4 or vtable_size % 2:
            raise _Truncated(f"{what}: bad vtable size {vtable_size} at byte {vtable}")
        self._need(vtable, vtable_size, f"{what} vtable")
        self._need(pos, table_size, what)
        for field in range((vtable_size - 4) // 2):
            offset = _U16.unpack_from(self.data, vtable + 4 + 2 * field)[0]
            if offset and offset >= max(table_size, 4):
                raise _Truncated(f"{what}: field {field} outside its table at byte {pos}")
        return pos, vtable, vtable_size

    @staticmethod
    def _field_pos(data: bytes, table: tuple[int, int, int], field: int) -> int:
        pos, vtable, vtable_size = table
        slot = 4 + 2 * field
        if slot >= vtable_size:
            return 0
        offset = _U16.unpack_from(data, vtable + slot)[0]
        return pos + offset if offset else 0

    def scalar(self, table, field: int, reader, default: int, what: str) -> int:
        pos = self._field_pos(self.data, table, field)
        return reader(pos, what) if pos else default

    def _target(self, table, field: int, what: str) -> int:
        pos = self._field_pos(self.data, table, field)
        if not pos:
            return 0
        return pos + self.u32(pos, what)

    def vector(self, table, field: int, elem_size: int, what: str) -> tuple[int, int]:
        """Return ``(start, length)`` of the vector in ``field``; ``(0, 0)`` if absent."""
        target = self._target(table, field, what)
        if not target:
            return 0, 0
        length = self.u32(target, what)
        self._need(target + 4, length * elem_size, what)
        return target + 4, length

    def string(self, table, field: int, what: str) -> str | None:
        start, length = self.vector(table, field, 1, what)
        if not start:
            return None
        self._need(start + length, 1, f"{what} terminator")
        return bytes(self.data[start : start + length]).decode("utf-8", errors="replace")

    def subtable(self, table, field: int, what: str) -> tuple[int, int, int] | None:
        target = self._target(table, field, what)
        return self.table(target, what) if target else None

    def tables(self, table, field: int, what: str) -> list[tuple[int, int, int]]:
        start, length = self.vector(table, field, 4, what)
        return [self.table(start + 4 * i + self.u32(start + 4 * i, what), f"{what}[{i}]") for i in range(length)]

    def ints(self, table, field: int, what: str) -> list[int]:
        start, length = self.vector(table, field, 4, what)
        return [_I32.unpack_from(self.data, start + 4 * i)[0] for i in range(length)]


def check_flatbuffer(data: bytes, source: str) -> FlatbufferSummary:
    """Check that ``data`` is a whole TFLite flatbuffer and summarise it.

    ``source`` (the file path) starts every message. Raises :class:`ModelError` for an empty
    file, a missing ``TFL3`` identifier, a schema version other than 3, or any table, vector,
    string or buffer lying outside the file ("truncated or corrupt").
    """
    if not data:
        raise ModelError(f"{source}: empty file (0 bytes), not a TFLite model")
    if len(data) < 8 or data[4:8] != TFLITE_IDENTIFIER:
        found = bytes(data[4:8])
        raise ModelError(
            f"{source}: not a TFLite flatbuffer (bytes 4..8 are {found!r}, expected {TFLITE_IDENTIFIER!r})"
        )
    walker = _Walker(data)
    try:
        return _walk_model(walker)
    except _Truncated as err:
        raise ModelError(f"{source}: truncated or corrupt TFLite flatbuffer: {err}") from err


def _walk_model(w: _Walker) -> FlatbufferSummary:
    model = w.table(w.u32(0, "root offset"), "Model")
    version = w.scalar(model, 0, w.u32, 0, "Model.version")
    if version != TFLITE_SCHEMA_VERSION:
        raise _Truncated(f"schema version {version}, expected {TFLITE_SCHEMA_VERSION}")

    custom_codes, builtin_codes = [], []
    opcodes = w.tables(model, 1, "operator_codes")
    for i, code in enumerate(opcodes):
        what = f"operator_codes[{i}]"
        deprecated = w.scalar(code, 0, w.u8, 0, what)
        builtin = w.scalar(code, 3, w.i32, 0, what)
        op_version = w.scalar(code, 2, w.i32, 1, what)
        custom = w.string(code, 1, f"{what}.custom_code")
        if custom is not None:
            custom_codes.append(custom)
        builtin_codes.append((max(deprecated, builtin), op_version))

    buffers = w.tables(model, 4, "buffers")
    for i, buffer in enumerate(buffers):
        what = f"buffers[{i}]"
        w.vector(buffer, 0, 1, what)
        offset = w.scalar(buffer, 1, w.u64, 0, what)
        size = w.scalar(buffer, 2, w.u64, 0, what)
        if offset > 1:  # data stored outside the flatbuffer, at this file offset
            w._need(offset, size, what)

    subgraphs = w.tables(model, 2, "subgraphs")
    if not subgraphs:
        raise _Truncated("no subgraphs")
    for s, subgraph in enumerate(subgraphs):
        _walk_subgraph(w, subgraph, f"subgraphs[{s}]", len(opcodes), len(buffers))

    w.string(model, 3, "description")
    w.ints(model, 5, "metadata_buffer")
    for i, entry in enumerate(w.tables(model, 6, "metadata")):
        w.string(entry, 0, f"metadata[{i}].name")
    for i, signature in enumerate(w.tables(model, 7, "signature_defs")):
        what = f"signature_defs[{i}]"
        for field, name in ((0, "inputs"), (1, "outputs")):
            for j, tensor_map in enumerate(w.tables(signature, field, f"{what}.{name}")):
                w.string(tensor_map, 0, f"{what}.{name}[{j}].name")
        w.string(signature, 2, f"{what}.signature_key")
        w.string(signature, 3, f"{what}.deprecated_tag")
        index = w.scalar(signature, 4, w.u32, 0, what)
        if index >= len(subgraphs):
            raise _Truncated(f"{what}: subgraph index {index} out of range")
    w.tables(model, 8, "external_buffer_groups")
    w.tables(model, 9, "external_buffers")

    return FlatbufferSummary(
        schema_version=version,
        size=w.end,
        n_subgraphs=len(subgraphs),
        custom_codes=tuple(custom_codes),
        builtin_codes=tuple(builtin_codes),
    )


def _walk_subgraph(w: _Walker, subgraph, what: str, n_opcodes: int, n_buffers: int) -> None:
    tensors = w.tables(subgraph, 0, f"{what}.tensors")
    n_tensors = len(tensors)
    for t, tensor in enumerate(tensors):
        tw = f"{what}.tensors[{t}]"
        w.ints(tensor, 0, f"{tw}.shape")
        buffer = w.scalar(tensor, 2, w.u32, 0, tw)
        if buffer >= max(n_buffers, 1):
            raise _Truncated(f"{tw}: buffer index {buffer} out of range")
        w.string(tensor, 3, f"{tw}.name")
        quant = w.subtable(tensor, 4, f"{tw}.quantization")
        if quant is not None:
            for field, size in ((0, 4), (1, 4), (2, 4), (3, 8)):
                w.vector(quant, field, size, f"{tw}.quantization")
            w.subtable(quant, 5, f"{tw}.quantization.details")
        sparsity = w.subtable(tensor, 6, f"{tw}.sparsity")
        if sparsity is not None:
            w.ints(sparsity, 0, f"{tw}.sparsity.traversal_order")
            w.ints(sparsity, 1, f"{tw}.sparsity.block_map")
            for d, dim in enumerate(w.tables(sparsity, 2, f"{tw}.sparsity.dim_metadata")):
                dw = f"{tw}.sparsity.dim_metadata[{d}]"
                for type_field, value_field in ((2, 3), (4, 5)):
                    kind = w.scalar(dim, type_field, w.u8, 0, dw)
                    index_vector = w.subtable(dim, value_field, dw)
                    if index_vector is not None and kind in _SPARSE_INDEX_SIZES:
                        w.vector(index_vector, 0, _SPARSE_INDEX_SIZES[kind], dw)
        w.ints(tensor, 7, f"{tw}.shape_signature")
        for v, variant in enumerate(w.tables(tensor, 9, f"{tw}.variant_tensors")):
            w.ints(variant, 0, f"{tw}.variant_tensors[{v}].shape")

    for field, name in ((1, "inputs"), (2, "outputs")):
        for index in w.ints(subgraph, field, f"{what}.{name}"):
            if not 0 <= index < n_tensors:
                raise _Truncated(f"{what}.{name}: tensor index {index} out of range")

    for o, op in enumerate(w.tables(subgraph, 3, f"{what}.operators")):
        ow = f"{what}.operators[{o}]"
        opcode = w.scalar(op, 0, w.u32, 0, ow)
        if opcode >= n_opcodes:
            raise _Truncated(f"{ow}: opcode index {opcode} out of range")
        for field in (1, 2, 8):
            for index in w.ints(op, field, ow):
                if not -1 <= index < n_tensors:
                    raise _Truncated(f"{ow}: tensor index {index} out of range")
        for union, type_field, value_field in ((1, 3, 4), (2, 11, 12)):
            kind = w.scalar(op, type_field, w.u8, 0, ow)
            options = w.subtable(op, value_field, f"{ow} options")
            if options is not None:
                for field, size in _OPTIONS_VECTORS.get((union, kind), ()):
                    w.vector(options, field, size, f"{ow} options")
        w.vector(op, 5, 1, f"{ow}.custom_options")
        w.vector(op, 7, 1, f"{ow}.mutating_variable_inputs")
        large_offset = w.scalar(op, 9, w.u64, 0, ow)
        large_size = w.scalar(op, 10, w.u64, 0, ow)
        if large_offset > 1:
            w._need(large_offset, large_size, f"{ow}.large_custom_options")
    w.string(subgraph, 4, f"{what}.name")
