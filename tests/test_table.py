"""The sorted table format under `.index`: our writer and reader agree, across many blocks
and with Snappy-compressed blocks."""

from __future__ import annotations

import io
import struct

import cramjam
from hypothesis import given, settings
from hypothesis import strategies as st

from ckptmigrate.formats import crc
from ckptmigrate.formats.table import (
    FOOTER_SIZE,
    TABLE_MAGIC,
    BlockHandle,
    TableWriter,
    _BlockBuilder,
    iter_table,
)

entries = st.dictionaries(st.binary(max_size=40), st.binary(max_size=100), max_size=200)


@settings(max_examples=80, deadline=None)
@given(contents=entries, block_size=st.sampled_from([64, 1024, 256 * 1024]))
def test_round_trip(contents: dict[bytes, bytes], block_size: int) -> None:
    out = io.BytesIO()
    table = TableWriter(out, block_size=block_size)
    for key in sorted(contents):
        table.add(key, contents[key])
    table.finish()
    assert list(iter_table(out.getvalue())) == sorted(contents.items())


def test_snappy_compressed_block_is_read() -> None:
    block = _BlockBuilder()
    for i in range(50):
        block.add(f"key{i:03d}".encode(), b"value" * 10)
    raw = block.finish()
    compressed = bytes(cramjam.snappy.compress_raw(raw))
    assert len(compressed) < len(raw)

    def framed(contents: bytes, kind: int) -> bytes:
        checksum = crc.mask(crc.extend(crc.value(contents), bytes([kind])))
        return contents + bytes([kind]) + struct.pack("<I", checksum)

    data = framed(compressed, 1)
    index = _BlockBuilder()
    index.add(b"key049", BlockHandle(0, len(compressed)).encode())
    meta = _BlockBuilder().finish()
    meta_handle = BlockHandle(len(data), len(meta))
    data += framed(meta, 0)
    index_raw = index.finish()
    index_handle = BlockHandle(len(data), len(index_raw))
    data += framed(index_raw, 0)
    footer = meta_handle.encode() + index_handle.encode()
    data += footer + b"\0" * (FOOTER_SIZE - 8 - len(footer)) + struct.pack("<Q", TABLE_MAGIC)
    items = list(iter_table(data))
    assert len(items) == 50
    assert items[7] == (b"key007", b"value" * 10)
