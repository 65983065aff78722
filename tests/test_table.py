"""The sorted table format under `.index`: our writer and reader agree, across many blocks
and with Snappy-compressed blocks."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
from pathlib import Path

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

    items = list(iter_table(_table_with_snappy_block(compressed, b"key049")))
    assert len(items) == 50
    assert items[7] == (b"key007", b"value" * 10)


def _framed(contents: bytes, kind: int) -> bytes:
    checksum = crc.mask(crc.extend(crc.value(contents), bytes([kind])))
    return contents + bytes([kind]) + struct.pack("<I", checksum)


def _table_with_snappy_block(compressed: bytes, last_key: bytes) -> bytes:
    """A table whose one data block is the given raw Snappy stream (CRCs correct)."""
    data = _framed(compressed, 1)
    index = _BlockBuilder()
    index.add(last_key, BlockHandle(0, len(compressed)).encode())
    meta = _BlockBuilder().finish()
    meta_handle = BlockHandle(len(data), len(meta))
    data += _framed(meta, 0)
    index_raw = index.finish()
    index_handle = BlockHandle(len(data), len(index_raw))
    data += _framed(index_raw, 0)
    footer = meta_handle.encode() + index_handle.encode()
    return data + footer + b"\0" * (FOOTER_SIZE - 8 - len(footer)) + struct.pack("<Q", TABLE_MAGIC)


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    return bytes([*out, value])


# A child reads the index under an address-space limit of its start-up size plus 512 MiB:
# the decompressor's allocation of the declared length (4 GiB - 1, the most its format
# takes) aborted the process ("memory allocation of 4294967295 bytes failed", SIGABRT).
_UNDER_LIMIT = """
import resource, sys
from ckptmigrate.cli import main
for line in open("/proc/self/status"):
    if line.startswith("VmSize:"):
        limit = int(line.split()[1]) * 1024 + (512 << 20)
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
sys.argv = ["ckptmigrate", "inspect", sys.argv[1]]
main()
"""


def test_snappy_block_declaring_4_gib_is_refused_before_allocating(tmp_path: Path) -> None:
    # 10 bytes: a length preamble of 4 GiB - 1, then a one-byte literal.
    bomb = _varint((4 << 30) - 1) + bytes([0]) + b"a"
    (tmp_path / "model.index").write_bytes(_table_with_snappy_block(bomb, b"x"))
    (tmp_path / "model.data-00000-of-00001").write_bytes(b"")
    done = subprocess.run(
        [sys.executable, "-c", _UNDER_LIMIT, str(tmp_path / "model")],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "model.index" in done.stderr
    assert "declares 4294967295 bytes" in done.stderr


def test_snappy_bound_admits_the_densest_real_compression() -> None:
    # Runs of one byte compress to 64-byte copies of 3 bytes each, the most Snappy expands.
    raw = _BlockBuilder()
    raw.add(b"k", bytes(1 << 20))
    block = raw.finish()
    compressed = bytes(cramjam.snappy.compress_raw(block))
    assert len(block) / len(compressed) > 21
    assert list(iter_table(_table_with_snappy_block(compressed, b"k"))) == [(b"k", bytes(1 << 20))]
