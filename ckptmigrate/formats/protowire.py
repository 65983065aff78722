"""Just enough of the protocol-buffer wire format for the few messages a checkpoint holds.

Decoding is written against untrusted bytes: every read is bounds-checked and every loop
consumes at least one byte, so a mutated index can raise :class:`ProtoError` but never hang.
"""

from __future__ import annotations

import contextlib
import gc
import struct
from collections.abc import Iterator

VARINT = 0
FIXED64 = 1
LEN = 2
FIXED32 = 5

_MAX_VARINT_BYTES = 10


class ProtoError(ValueError):
    """Malformed wire data. Callers translate this into a user-facing error with a path."""


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Hold off the cyclic garbage collector while decoding builds many small objects.

    None of them is garbage yet, but every 700 allocations start a collection, and the
    older generations are rescanned as they grow: decoding a 10,000-entry index or a
    20,000-node object graph spent about as long in the collector as in decoding."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def read_varint(buf: bytes | bytearray | memoryview, pos: int) -> tuple[int, int]:
    """Decode a base-128 varint at ``pos``; return (value, next position)."""
    if pos < len(buf) and buf[pos] < 0x80:  # most tags, lengths and small ints: one byte
        return buf[pos], pos + 1
    result = 0
    shift = 0
    end = len(buf)
    for i in range(_MAX_VARINT_BYTES):
        if pos + i >= end:
            raise ProtoError("truncated varint")
        byte = buf[pos + i]
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos + i + 1
        shift += 7
    raise ProtoError("varint longer than 10 bytes")


def to_signed64(value: int) -> int:
    """Reinterpret an unsigned 64-bit varint as the int64 a proto ``int64`` field holds."""
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >= 1 << 63 else value


def iter_fields(buf: bytes | memoryview) -> list[tuple[int, int, int | bytes]]:
    """Every (field number, wire type, value) in order; LEN values are bytes, others ints.

    Returns a list rather than yielding: checkpoints with tens of thousands of entries call
    this hundreds of thousands of times, and the one-byte fast paths are most of the work."""
    out: list[tuple[int, int, int | bytes]] = []
    pos = 0
    end = len(buf)
    while pos < end:
        tag = buf[pos]
        if tag < 0x80:
            pos += 1
        else:
            tag, pos = read_varint(buf, pos)
        field, wire = tag >> 3, tag & 7
        if field == 0:
            raise ProtoError("field number 0")
        if wire == LEN:
            if pos < end and buf[pos] < 0x80:
                length = buf[pos]
                pos += 1
            else:
                length, pos = read_varint(buf, pos)
            if pos + length > end:
                raise ProtoError("length-delimited field runs past the end")
            out.append((field, wire, bytes(buf[pos : pos + length])))
            pos += length
        elif wire == VARINT:
            if pos < end and buf[pos] < 0x80:
                out.append((field, wire, buf[pos]))
                pos += 1
            else:
                value, pos = read_varint(buf, pos)
                out.append((field, wire, value))
        elif wire == FIXED32:
            if pos + 4 > end:
                raise ProtoError("truncated fixed32")
            out.append((field, wire, struct.unpack_from("<I", buf, pos)[0]))
            pos += 4
        elif wire == FIXED64:
            if pos + 8 > end:
                raise ProtoError("truncated fixed64")
            out.append((field, wire, struct.unpack_from("<Q", buf, pos)[0]))
            pos += 8
        else:
            raise ProtoError(f"unsupported wire type {wire}")
    return out


def encode_varint(value: int) -> bytes:
    """Encode a non-negative int, or a negative int64 as its 10-byte two's complement."""
    if value < 0:
        value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


class MessageWriter:
    """Append fields in the order given; proto3 defaults are the caller's to skip."""

    def __init__(self) -> None:
        self._out = bytearray()

    def varint(self, field: int, value: int) -> MessageWriter:
        self._out += encode_varint(field << 3 | VARINT)
        self._out += encode_varint(value)
        return self

    def fixed32(self, field: int, value: int) -> MessageWriter:
        self._out += encode_varint(field << 3 | FIXED32)
        self._out += struct.pack("<I", value)
        return self

    def bytes_(self, field: int, value: bytes) -> MessageWriter:
        self._out += encode_varint(field << 3 | LEN)
        self._out += encode_varint(len(value))
        self._out += value
        return self

    def raw(self, field: int, wire: int, value: int | bytes) -> MessageWriter:
        """Re-emit a field as iter_fields yielded it."""
        if wire == LEN and isinstance(value, bytes):
            return self.bytes_(field, value)
        if wire == VARINT and isinstance(value, int):
            return self.varint(field, value)
        if wire == FIXED32 and isinstance(value, int):
            return self.fixed32(field, value)
        if wire == FIXED64 and isinstance(value, int):
            self._out += encode_varint(field << 3 | FIXED64)
            self._out += struct.pack("<Q", value)
            return self
        raise ProtoError(f"cannot encode field {field} of wire type {wire}")

    def getvalue(self) -> bytes:
        return bytes(self._out)
