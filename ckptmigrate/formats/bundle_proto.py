"""The two messages of a `.index` table: BundleHeaderProto (under key "") and
BundleEntryProto (every other key), from tensorflow/core/protobuf/tensor_bundle.proto.

Encoding mirrors protobuf's proto3 serialisation (fields in number order, defaults
omitted) so entries we write are byte-identical to what TensorFlow would write.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from .protowire import (
    FIXED32,
    FIXED64,
    LEN,
    VARINT,
    MessageWriter,
    ProtoError,
    iter_fields,
    read_varint,
    to_signed64,
)

LITTLE_ENDIAN = 0
BIG_ENDIAN = 1


@dataclass(frozen=True, slots=True)
class Extent:
    start: int = 0
    length: int | None = None  # None: the whole dimension


@dataclass(frozen=True, slots=True)
class TensorSlice:
    extents: tuple[Extent, ...]

    def bounds(self, shape: tuple[int, ...]) -> tuple[slice, ...]:
        """numpy index of this slice inside a tensor of the full ``shape``."""
        return tuple(
            slice(0, dim) if e.length is None else slice(e.start, e.start + e.length)
            for e, dim in zip(self.extents, shape, strict=True)
        )

    def shape(self, full: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(
            dim if e.length is None else e.length for e, dim in zip(self.extents, full, strict=True)
        )

    def spec(self) -> str:
        """TF's text form, e.g. ``0,5:-`` (used in TensorFlow's own error messages)."""
        return ":".join("-" if e.length is None else f"{e.start},{e.length}" for e in self.extents)


@dataclass(frozen=True, slots=True)
class BundleHeader:
    num_shards: int = 1
    endianness: int = LITTLE_ENDIAN
    producer: int = 1
    min_consumer: int = 0
    bad_consumers: tuple[int, ...] = ()


class BundleEntry(NamedTuple):
    """A tuple rather than a dataclass: an index of 100,000 entries builds 100,000 of these
    before anything else runs, and a frozen dataclass costs twice as long to construct."""

    dtype: int = 0
    shape: tuple[int, ...] = ()
    shard_id: int = 0
    offset: int = 0
    size: int = 0
    crc32c: int = 0  # masked, as stored
    slices: tuple[TensorSlice, ...] = ()
    unknown_rank: bool = False


def _int_field(value: int | bytes, what: str) -> int:
    if not isinstance(value, int):
        raise ProtoError(f"{what}: expected a number")
    return value


def _bytes_field(value: int | bytes, what: str) -> bytes:
    if not isinstance(value, bytes):
        raise ProtoError(f"{what}: expected a message")
    return value


def decode_header(buf: bytes) -> BundleHeader:
    num_shards, endianness = 0, LITTLE_ENDIAN
    producer, min_consumer, bad = 0, 0, []
    for number, wire, value in iter_fields(buf):
        if number == 1 and wire == VARINT:
            num_shards = to_signed64(_int_field(value, "num_shards"))
        elif number == 2 and wire == VARINT:
            endianness = _int_field(value, "endianness")
        elif number == 3 and wire == LEN:
            for vnum, vwire, vval in iter_fields(_bytes_field(value, "version")):
                if vnum == 1 and vwire == VARINT:
                    producer = to_signed64(_int_field(vval, "producer"))
                elif vnum == 2 and vwire == VARINT:
                    min_consumer = to_signed64(_int_field(vval, "min_consumer"))
                elif vnum == 3 and vwire == VARINT:
                    bad.append(to_signed64(_int_field(vval, "bad_consumers")))
    return BundleHeader(num_shards, endianness, producer, min_consumer, tuple(bad))


def encode_header(header: BundleHeader) -> bytes:
    out = MessageWriter()
    if header.num_shards:
        out.varint(1, header.num_shards)
    if header.endianness:
        out.varint(2, header.endianness)
    version = MessageWriter()
    if header.producer:
        version.varint(1, header.producer)
    if header.min_consumer:
        version.varint(2, header.min_consumer)
    for bad in header.bad_consumers:
        version.varint(3, bad)
    out.bytes_(3, version.getvalue())
    return out.getvalue()


def _decode_dim(value: bytes) -> int:
    # Nearly every Dim is just field 1 (size) as a varint: decode that without the
    # general field walk, which dominates reading 10,000-entry indexes otherwise.
    if value and value[0] == 0x08:
        size, pos = read_varint(value, 1)
        if pos == len(value):
            return to_signed64(size)
    size = 0
    for dnum, dwire, dval in iter_fields(value):
        if dnum == 1 and dwire == VARINT:
            size = to_signed64(_int_field(dval, "dim.size"))
    return size


def _decode_shape(buf: bytes) -> tuple[tuple[int, ...], bool]:
    dims: list[int] = []
    unknown_rank = False
    for number, wire, value in iter_fields(buf):
        if number == 2 and wire == LEN:
            dims.append(_decode_dim(_bytes_field(value, "dim")))
        elif number == 3 and wire == VARINT:
            unknown_rank = bool(value)
    return tuple(dims), unknown_rank


def _encode_shape(shape: tuple[int, ...], unknown_rank: bool) -> bytes:
    out = MessageWriter()
    for dim in shape:
        dim_msg = MessageWriter()
        if dim:
            dim_msg.varint(1, dim)
        out.bytes_(2, dim_msg.getvalue())
    if unknown_rank:
        out.varint(3, 1)
    return out.getvalue()


def _decode_slice(buf: bytes) -> TensorSlice:
    extents = []
    for number, wire, value in iter_fields(buf):
        if number == 1 and wire == LEN:
            start, length = 0, None
            for enum_, ewire, evalue in iter_fields(_bytes_field(value, "extent")):
                if enum_ == 1 and ewire == VARINT:
                    start = to_signed64(_int_field(evalue, "extent.start"))
                elif enum_ == 2 and ewire == VARINT:
                    length = to_signed64(_int_field(evalue, "extent.length"))
            extents.append(Extent(start, length))
    return TensorSlice(tuple(extents))


def _encode_slice(tslice: TensorSlice) -> bytes:
    out = MessageWriter()
    for extent in tslice.extents:
        ext = MessageWriter()
        if extent.start:
            ext.varint(1, extent.start)
        if extent.length is not None:
            ext.varint(2, extent.length)
        out.bytes_(1, ext.getvalue())
    return out.getvalue()


ShapeCache = dict[bytes, tuple[tuple[int, ...], bool]]


def decode_entry(buf: bytes, shapes: ShapeCache | None = None) -> BundleEntry:
    """Decode a BundleEntryProto.

    ``shapes`` caches decoded TensorShapeProtos by their bytes for a caller decoding a whole
    index: its variables share a handful of shapes, and decoding them was half the work."""
    if shapes is not None:
        common = _decode_common_entry(buf, shapes)
        if common is not None:
            return common
    return _decode_any_entry(buf, shapes)


def _decode_common_entry(buf: bytes, shapes: ShapeCache) -> BundleEntry | None:
    """The entries TensorFlow writes for unpartitioned tensors, decoded straight through:
    fields 1 to 6 in order, each at most once, dtype and shape lengths of one byte. None
    for anything else, which the general decoder then reads (and reports on, if it is
    malformed): a 100,000-variable index decodes twice as fast this way."""
    end = len(buf)
    pos = dtype = shard_id = offset = size = checksum = 0
    try:
        if buf[0] == 0x08:  # field 1, dtype
            dtype = buf[1]
            if dtype >= 0x80:
                return None
            pos = 2
        if buf[pos] != 0x12:  # field 2, shape
            return None
        length = buf[pos + 1]
        if length >= 0x80 or pos + 2 + length > end:
            return None
        raw = buf[pos + 2 : pos + 2 + length]
        known = shapes.get(raw)
        if known is None:
            known = shapes[raw] = _decode_shape(raw)
        pos += 2 + length
        if pos < end and buf[pos] == 0x18:  # field 3, shard_id
            shard_id, pos = read_varint(buf, pos + 1)
        if pos < end and buf[pos] == 0x20:  # field 4, offset: a few bytes, read inline
            shift = 0
            pos += 1
            while True:
                byte = buf[pos]
                offset |= (byte & 0x7F) << shift
                pos += 1
                if byte < 0x80:
                    break
                shift += 7
                if shift > 63:
                    return None  # the general decoder words the error
        if pos < end and buf[pos] == 0x28:  # field 5, size: one byte for most variables
            size = buf[pos + 1]
            if size < 0x80:
                pos += 2
            else:
                size, pos = read_varint(buf, pos + 1)
        if pos < end and buf[pos] == 0x35:  # field 6, crc32c (fixed32)
            if pos + 5 > end:
                return None
            checksum = int.from_bytes(buf[pos + 1 : pos + 5], "little")
            pos += 5
    except (IndexError, ProtoError):
        return None
    if pos != end or shard_id >= 1 << 63 or offset >= 1 << 63 or size >= 1 << 63:
        return None
    return BundleEntry(dtype, known[0], shard_id, offset, size, checksum, (), known[1])


def _decode_any_entry(buf: bytes, shapes: ShapeCache | None) -> BundleEntry:
    """Any BundleEntryProto, as one flat loop (no per-field helper calls)."""
    dtype = shard_id = offset = size = checksum = 0
    shape: tuple[int, ...] = ()
    unknown_rank = False
    slices = []
    pos, end = 0, len(buf)
    try:
        while pos < end:
            tag = buf[pos]
            if tag < 0x80:
                pos += 1
            else:
                tag, pos = read_varint(buf, pos)
            number, wire = tag >> 3, tag & 7
            if wire == VARINT:
                value = buf[pos]
                if value < 0x80:
                    pos += 1
                else:
                    value, pos = read_varint(buf, pos)
                if number == 1:
                    dtype = value
                elif number == 3:
                    shard_id = to_signed64(value)
                elif number == 4:
                    offset = to_signed64(value)
                elif number == 5:
                    size = to_signed64(value)
            elif wire == LEN:
                length = buf[pos]
                if length < 0x80:
                    pos += 1
                else:
                    length, pos = read_varint(buf, pos)
                if pos + length > end:
                    raise ProtoError("length-delimited field runs past the end")
                if number == 2:
                    raw = buf[pos : pos + length]
                    if shapes is None:
                        shape, unknown_rank = _decode_shape(raw)
                    else:
                        known = shapes.get(raw)
                        if known is None:
                            known = shapes[raw] = _decode_shape(raw)
                        shape, unknown_rank = known
                elif number == 7:
                    slices.append(_decode_slice(buf[pos : pos + length]))
                pos += length
            elif wire == FIXED32:
                if pos + 4 > end:
                    raise ProtoError("truncated fixed32")
                if number == 6:
                    checksum = int.from_bytes(buf[pos : pos + 4], "little")
                pos += 4
            elif wire == FIXED64:
                pos += 8
            else:
                raise ProtoError(f"unsupported wire type {wire}")
    except IndexError:
        raise ProtoError("truncated entry") from None
    if pos != end:
        raise ProtoError("truncated entry")
    return BundleEntry(dtype, shape, shard_id, offset, size, checksum, tuple(slices), unknown_rank)


def encode_entry(entry: BundleEntry) -> bytes:
    out = MessageWriter()
    if entry.dtype:
        out.varint(1, entry.dtype)
    out.bytes_(2, _encode_shape(entry.shape, entry.unknown_rank))
    if entry.shard_id:
        out.varint(3, entry.shard_id)
    if entry.offset:
        out.varint(4, entry.offset)
    if entry.size:
        out.varint(5, entry.size)
    if entry.crc32c:
        out.fixed32(6, entry.crc32c)
    for tslice in entry.slices:
        out.bytes_(7, _encode_slice(tslice))
    return out.getvalue()
