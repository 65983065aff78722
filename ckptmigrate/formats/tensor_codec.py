"""How tensor values are laid out in a `.data-*` shard, and their checksums.

Fixed-width dtypes are the raw element bytes (in the writer's byte order) with a plain
CRC32C. Strings are ``[varint64 len]*n, masked crc of the lengths, bytes*n``; the entry
CRC covers each length as uint32 (uint64 if it does not fit), the length checksum and the
bytes. Variants are ``([varint64 len][bytes][masked running crc])*n``; the running CRC
covers each length as uint64. These rules are from TensorFlow's tensor_bundle.
"""

from __future__ import annotations

import struct
import sys
from typing import TYPE_CHECKING

from . import crc
from .protowire import ProtoError, encode_varint, read_varint

if TYPE_CHECKING:
    import numpy as np

NATIVE_IS_BIG = sys.byteorder == "big"
_U32_MAX = 0xFFFFFFFF


def _length_bytes(length: int, big: bool) -> bytes:
    order = ">" if big else "<"
    if length <= _U32_MAX:
        return struct.pack(order + "I", length)
    return struct.pack(order + "Q", length)


def decode_strings(raw: bytes | bytearray, count: int, big: bool) -> tuple[list[bytes], int]:
    """Split a string tensor's bytes into elements; returns (elements, unmasked crc)."""
    if not raw:
        return [], 0
    lengths = []
    checksum = 0
    pos = 0
    for _ in range(count):
        length, pos = read_varint(raw, pos)
        if length > len(raw):  # also a 10-byte varint past 64 bits, which no length has
            raise ProtoError("string element runs past the tensor's bytes")
        lengths.append(length)
        checksum = crc.extend(checksum, _length_bytes(length, big))
    if pos + 4 > len(raw):
        raise ProtoError("string tensor ends inside its length checksum")
    stored = raw[pos : pos + 4]
    (length_crc,) = struct.unpack(">I" if big else "<I", stored)
    if crc.unmask(length_crc) != checksum:
        raise ProtoError("string lengths fail their checksum")
    checksum = crc.extend(checksum, stored)
    pos += 4
    out = []
    for length in lengths:
        if pos + length > len(raw):
            raise ProtoError("string element runs past the tensor's bytes")
        element = bytes(raw[pos : pos + length])
        checksum = crc.extend(checksum, element)
        out.append(element)
        pos += length
    return out, checksum


def encode_strings(elements: list[bytes], big: bool = NATIVE_IS_BIG) -> tuple[bytes, int]:
    """Serialise string elements; returns (bytes, unmasked crc) for the entry."""
    lengths = bytearray()
    checksum = 0
    for element in elements:
        lengths += encode_varint(len(element))
        checksum = crc.extend(checksum, _length_bytes(len(element), big))
    length_crc = struct.pack(">I" if big else "<I", crc.mask(checksum))
    checksum = crc.extend(checksum, length_crc)
    body = b"".join(elements)
    checksum = crc.extend(checksum, body)
    return bytes(lengths) + length_crc + body, checksum


def decode_variants(raw: bytes | bytearray, count: int) -> tuple[list[bytes], int]:
    """Split a variant tensor into serialized VariantTensorDataProto blobs (kept opaque)."""
    out = []
    checksum = 0
    pos = 0
    for _ in range(count):
        length, pos = read_varint(raw, pos)
        checksum = crc.extend(checksum, struct.pack("<Q", length))
        if pos + length + 4 > len(raw):
            raise ProtoError("variant element runs past the tensor's bytes")
        blob = bytes(raw[pos : pos + length])
        checksum = crc.extend(checksum, blob)
        pos += length
        stored = raw[pos : pos + 4]
        if crc.unmask(struct.unpack("<I", stored)[0]) != checksum:
            raise ProtoError("variant element fails its checksum")
        checksum = crc.extend(checksum, stored)
        pos += 4
        out.append(blob)
    return out, checksum


def encode_variants(blobs: list[bytes]) -> tuple[bytes, int]:
    out = bytearray()
    checksum = 0
    for blob in blobs:
        out += encode_varint(len(blob))
        checksum = crc.extend(checksum, struct.pack("<Q", len(blob)))
        out += blob
        checksum = crc.extend(checksum, blob)
        stored = struct.pack("<I", crc.mask(checksum))
        out += stored
        checksum = crc.extend(checksum, stored)
    return bytes(out), checksum


def swap_bytes_inplace(array: np.ndarray) -> None:
    """Reverse the byte order of each scalar (each component, for complex numbers)."""
    itemsize = array.dtype.itemsize
    if array.dtype.kind == "c":
        itemsize //= 2
    if itemsize > 1:
        array.view(f"u{itemsize}").byteswap(inplace=True)
