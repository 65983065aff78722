"""Keys of the slices of a partitioned variable.

A slice of variable ``name`` is stored under an order-preserving encoding of
(0, name, rank, start_0, length_0, ...). A full extent is written as start 0, length -1.
Every such key starts with the byte 0x00, which no variable name does.
"""

from __future__ import annotations

from collections.abc import Sequence

from .protowire import ProtoError

_HEADER_BITS = [0] + [(0xFFFF << (16 - n)) & 0xFFFF for n in range(1, 11)]


def _write_unsigned(out: bytearray, value: int) -> None:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big") if value else b""
    out.append(len(raw))
    out += raw


def _write_string(out: bytearray, text: bytes) -> None:
    # 0x00 and 0xff are escaped so the 0x00 0x01 terminator is unambiguous.
    out += _escape(text)
    out += b"\x00\x01"


def _escape(text: bytes) -> bytes:
    out = bytearray()
    for byte in text:
        if byte == 0x00:
            out += b"\x00\xff"
        elif byte == 0xFF:
            out += b"\xff\x00"
        else:
            out.append(byte)
    return bytes(out)


def _write_signed(out: bytearray, value: int) -> None:
    magnitude = ~value if value < 0 else value
    length = min(10, (magnitude.bit_length() + 1 + 6) // 7)
    raw = bytearray(value.to_bytes(10, "big", signed=True)[10 - length :])
    header = _HEADER_BITS[length]
    raw[0] ^= header >> 8
    if length > 1:
        raw[1] ^= header & 0xFF
    out += raw


def encode_slice_key(name: str, extents: Sequence[tuple[int, int | None]]) -> str:
    """The index key of one slice; ``length=None`` means the whole dimension."""
    out = bytearray()
    _write_unsigned(out, 0)
    _write_string(out, name.encode("utf-8", "surrogateescape"))
    _write_unsigned(out, len(extents))
    for start, length in extents:
        _write_signed(out, start if length is not None else 0)
        _write_signed(out, length if length is not None else -1)
    return out.decode("utf-8", "surrogateescape")


def _read_unsigned(buf: bytes, pos: int) -> tuple[int, int]:
    if pos >= len(buf) or buf[pos] > 8 or pos + 1 + buf[pos] > len(buf):
        raise ProtoError("bad ordered-code number")
    n = buf[pos]
    return int.from_bytes(buf[pos + 1 : pos + 1 + n], "big"), pos + 1 + n


def _read_string(buf: bytes, pos: int) -> tuple[bytes, int]:
    out = bytearray()
    while pos + 1 < len(buf):
        byte = buf[pos]
        if byte == 0x00:
            nxt = buf[pos + 1]
            if nxt == 0x01:
                return bytes(out), pos + 2
            if nxt != 0xFF:
                raise ProtoError("bad ordered-code escape")
            out.append(0)
            pos += 2
        elif byte == 0xFF:
            if buf[pos + 1] != 0x00:
                raise ProtoError("bad ordered-code escape")
            out.append(0xFF)
            pos += 2
        else:
            out.append(byte)
            pos += 1
    raise ProtoError("unterminated ordered-code string")


def _read_signed(buf: bytes, pos: int) -> tuple[int, int]:
    if pos >= len(buf):
        raise ProtoError("truncated ordered-code signed number")
    negative = not buf[pos] & 0x80
    flip = 0xFF if negative else 0
    first_two = ((buf[pos] ^ flip) << 8) | ((buf[pos + 1] ^ flip) if pos + 1 < len(buf) else 0)
    length = 0
    while length < 16 and first_two & (0x8000 >> length):
        length += 1
    if not 1 <= length <= 10 or pos + length > len(buf):
        raise ProtoError("bad ordered-code signed number")
    raw = bytearray(buf[pos : pos + length])
    header = _HEADER_BITS[length]
    raw[0] ^= header >> 8
    if length > 1:
        raw[1] ^= header & 0xFF
    return int.from_bytes(raw, "big", signed=True), pos + length


def decode_slice_key(key: str) -> tuple[str, list[tuple[int, int | None]]]:
    """Inverse of :func:`encode_slice_key`; raises ProtoError on malformed keys."""
    buf = key.encode("utf-8", "surrogateescape")
    lead, pos = _read_unsigned(buf, 0)
    if lead != 0:
        raise ProtoError("slice keys start with 0")
    name, pos = _read_string(buf, pos)
    rank, pos = _read_unsigned(buf, pos)
    if rank > 64:
        raise ProtoError("implausible slice rank")
    extents: list[tuple[int, int | None]] = []
    for _ in range(rank):
        start, pos = _read_signed(buf, pos)
        length, pos = _read_signed(buf, pos)
        extents.append((start, None) if length < 0 else (start, length))
    return name.decode("utf-8", "surrogateescape"), extents


def is_slice_key(key: str) -> bool:
    return key.startswith("\x00")
