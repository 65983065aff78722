"""The sorted key/value table (LevelDB's SSTable layout) that TensorFlow uses for `.index`
files and for V1 checkpoints.

Layout, end of file first: a 48-byte footer holds two block handles (metaindex, index),
zero padding and an 8-byte magic. The index block maps a key >= every key of a data block
to that block's handle. Each block is a run of prefix-compressed entries, then an array of
restart offsets and its count, then a 5-byte trailer: compression type and masked CRC32C
of (block contents + type byte).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from . import crc
from .protowire import ProtoError, encode_varint, read_varint

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48
BLOCK_TRAILER_SIZE = 5
NO_COMPRESSION = 0
SNAPPY_COMPRESSION = 1

# TensorFlow's table::Options defaults; any values produce a valid table.
DEFAULT_BLOCK_SIZE = 256 * 1024
RESTART_INTERVAL = 16

# The most a raw Snappy stream can expand: its densest element is a 3-byte copy of 64 bytes
# (a 2-byte-offset copy); literals and the other copies expand less.
SNAPPY_MAX_EXPANSION_NUM, SNAPPY_MAX_EXPANSION_DEN = 64, 3


class TableError(ValueError):
    """The bytes are not a well-formed table. Callers add the file name."""


@dataclass(frozen=True, slots=True)
class BlockHandle:
    offset: int
    size: int

    def encode(self) -> bytes:
        return encode_varint(self.offset) + encode_varint(self.size)


def _decode_handle(buf: bytes | memoryview, pos: int) -> tuple[BlockHandle, int]:
    try:
        offset, pos = read_varint(buf, pos)
        size, pos = read_varint(buf, pos)
    except ProtoError as e:
        raise TableError(f"bad block handle: {e}") from None
    return BlockHandle(offset, size), pos


def has_table_magic(tail: bytes) -> bool:
    """True if ``tail`` (the last 8+ bytes of a file) ends with the table magic."""
    return len(tail) >= 8 and struct.unpack("<Q", tail[-8:])[0] == TABLE_MAGIC


def _read_block(data: bytes, handle: BlockHandle, what: str) -> bytes:
    end = handle.offset + handle.size
    if handle.offset < 0 or end + BLOCK_TRAILER_SIZE > len(data):
        raise TableError(
            f"{what} block at offset {handle.offset} (size {handle.size}) lies past the end "
            f"of the {len(data)}-byte file; the file is truncated"
        )
    contents = data[handle.offset : end]
    kind = data[end]
    (stored,) = struct.unpack_from("<I", data, end + 1)
    actual = crc.extend(crc.value(contents), bytes([kind]))
    if crc.unmask(stored) != actual:
        raise TableError(f"{what} block at offset {handle.offset} fails its CRC32C check")
    if kind == NO_COMPRESSION:
        return contents
    if kind == SNAPPY_COMPRESSION:
        import cramjam

        _check_snappy_length(contents, handle, what)
        try:
            return bytes(cramjam.snappy.decompress_raw(contents))
        except Exception as e:  # cramjam raises its own DecompressionError
            raise TableError(f"{what} block at offset {handle.offset}: bad Snappy data") from e
    raise TableError(f"{what} block at offset {handle.offset} has unknown compression {kind}")


def _check_snappy_length(contents: bytes, handle: BlockHandle, what: str) -> None:
    """Refuse a Snappy block whose declared length its bytes cannot produce.

    The decompressor allocates the declared length (a leading varint, up to 4 GiB) before
    decoding: a 10-byte block declaring 4 GiB aborted the process under an address-space
    limit. What the block can really expand to bounds the allocation by the file's size.
    """
    try:
        declared, start = read_varint(contents, 0)
    except ProtoError as e:
        raise TableError(f"{what} block at offset {handle.offset}: bad Snappy data ({e})") from None
    most = (len(contents) - start) * SNAPPY_MAX_EXPANSION_NUM // SNAPPY_MAX_EXPANSION_DEN
    if declared > most:
        raise TableError(
            f"{what} block at offset {handle.offset}: its Snappy data declares {declared} "
            f"bytes, more than its {len(contents)} bytes can expand to ({most}); the file is "
            "corrupt"
        )


def _iter_block(block: bytes) -> Iterator[tuple[bytes, bytes]]:
    if len(block) < 4:
        raise TableError("block shorter than its restart count")
    (num_restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    limit = len(block) - 4 - 4 * num_restarts
    if num_restarts == 0 or limit < 0:
        raise TableError(f"block claims {num_restarts} restart points, which do not fit")
    pos = 0
    key = b""
    try:
        while pos < limit:
            # The three lengths are almost always one byte each: read them inline (a call
            # per varint was a third of the time to list a 100,000-entry index).
            shared = block[pos]
            unshared = block[pos + 1]
            value_len = block[pos + 2]
            if shared < 0x80 and unshared < 0x80 and value_len < 0x80:
                pos += 3
            else:
                shared, pos = read_varint(block, pos)
                unshared, pos = read_varint(block, pos)
                value_len, pos = read_varint(block, pos)
            if shared > len(key) or pos + unshared + value_len > limit:
                raise TableError(f"corrupt entry at block offset {pos}")
            key = key[:shared] + block[pos : pos + unshared]
            pos += unshared
            yield key, block[pos : pos + value_len]
            pos += value_len
    except ProtoError as e:
        raise TableError(f"corrupt entry header: {e}") from None
    except IndexError:
        raise TableError(f"corrupt entry header at block offset {pos}") from None


def iter_table(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    """Every (key, value) of a table held in memory, in key order."""
    for block in data_blocks(data):
        yield from _iter_block(block)


def data_blocks(data: bytes) -> Iterator[bytes]:
    """The data blocks of a table held in memory, in key order, each CRC-checked and
    decompressed (entries are read from them with :func:`iter_table`)."""
    if len(data) < FOOTER_SIZE:
        raise TableError(f"{len(data)} bytes is too short to be a table (footer is 48 bytes)")
    footer = data[-FOOTER_SIZE:]
    if not has_table_magic(footer):
        raise TableError(
            "its last 8 bytes are not the table magic number: the file is "
            "truncated, or is not an index"
        )
    _, pos = _decode_handle(footer, 0)  # metaindex: no filters are used by TF
    index_handle, _ = _decode_handle(footer, pos)
    index = _read_block(data, index_handle, "index")
    for _, handle_bytes in _iter_block(index):
        handle, _ = _decode_handle(handle_bytes, 0)
        yield _read_block(data, handle, "data")


class _BlockBuilder:
    def __init__(self) -> None:
        self.buf = bytearray()
        self.restarts = [0]
        self.count = 0
        self.last_key = b""

    def add(self, key: bytes, value: bytes) -> None:
        shared = 0
        if self.count < RESTART_INTERVAL:
            limit = min(len(key), len(self.last_key))
            while shared < limit and key[shared] == self.last_key[shared]:
                shared += 1
        else:
            self.restarts.append(len(self.buf))
            self.count = 0
        self.buf += encode_varint(shared)
        self.buf += encode_varint(len(key) - shared)
        self.buf += encode_varint(len(value))
        self.buf += key[shared:]
        self.buf += value
        self.last_key = key
        self.count += 1

    def estimated_size(self) -> int:
        return len(self.buf) + 4 * len(self.restarts) + 4

    def finish(self) -> bytes:
        tail = b"".join(struct.pack("<I", r) for r in self.restarts)
        return bytes(self.buf) + tail + struct.pack("<I", len(self.restarts))

    def empty(self) -> bool:
        return not self.buf


class TableWriter:
    """Build a table from keys added in strictly increasing byte order."""

    def __init__(self, out: BinaryIO, block_size: int = DEFAULT_BLOCK_SIZE) -> None:
        self._out = out
        self._offset = 0
        self._block_size = block_size
        self._data = _BlockBuilder()
        self._index = _BlockBuilder()
        self._last_key: bytes | None = None

    def add(self, key: bytes, value: bytes) -> None:
        if self._last_key is not None and key <= self._last_key:
            raise ValueError(f"table keys must increase: {key!r} after {self._last_key!r}")
        self._data.add(key, value)
        self._last_key = key
        if self._data.estimated_size() >= self._block_size:
            self._flush_data()

    def _write_block(self, contents: bytes) -> BlockHandle:
        handle = BlockHandle(self._offset, len(contents))
        kind = bytes([NO_COMPRESSION])
        checksum = crc.mask(crc.extend(crc.value(contents), kind))
        self._out.write(contents + kind + struct.pack("<I", checksum))
        self._offset += len(contents) + BLOCK_TRAILER_SIZE
        return handle

    def _flush_data(self) -> None:
        if self._data.empty():
            return
        last = self._data.last_key
        handle = self._write_block(self._data.finish())
        # The block's last key is a valid separator: >= its keys, < the next block's.
        self._index.add(last, handle.encode())
        self._data = _BlockBuilder()

    def finish(self) -> None:
        self._flush_data()
        metaindex = self._write_block(_BlockBuilder().finish())
        index = self._write_block(self._index.finish())
        footer = metaindex.encode() + index.encode()
        footer += b"\0" * (FOOTER_SIZE - 8 - len(footer))
        self._out.write(footer + struct.pack("<Q", TABLE_MAGIC))
