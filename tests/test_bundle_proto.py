"""BundleEntryProto decoding: the straight-through path for common entries and the general
decoder must agree on every input, and both with protobuf's own parser of TensorFlow's
message (where TensorFlow is installed)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ckptmigrate.formats.bundle_proto import (
    BundleEntry,
    Extent,
    TensorSlice,
    _decode_any_entry,
    decode_entry,
    encode_entry,
)
from ckptmigrate.formats.protowire import ProtoError

INT64 = st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1)
SIZES = st.one_of(st.integers(0, 300), st.integers(0, 1 << 40), INT64)
# dtype and shard_id are int32 fields (wider values are malformed: see the damaged cases).
INT32 = st.integers(min_value=-(1 << 31), max_value=(1 << 31) - 1)

extents = st.builds(Extent, st.integers(0, 1000), st.one_of(st.none(), st.integers(0, 1000)))
entries = st.builds(
    BundleEntry,
    dtype=st.one_of(st.integers(0, 30), st.integers(0, 1 << 20)),
    shape=st.lists(st.integers(0, 1 << 33), max_size=5).map(tuple),
    shard_id=st.one_of(st.integers(0, 300), INT32),
    offset=SIZES,
    size=SIZES,
    crc32c=st.integers(0, (1 << 32) - 1),
    slices=st.lists(
        st.builds(TensorSlice, st.lists(extents, max_size=3).map(tuple)), max_size=2
    ).map(tuple),
    unknown_rank=st.booleans(),
)


def _outcome(decode: Any, buf: bytes) -> BundleEntry | str:
    try:
        result: BundleEntry = decode(buf)
        return result
    except ProtoError as e:
        return f"error: {e}"


@settings(max_examples=400, deadline=None)
@given(entry=entries)
def test_every_entry_round_trips_through_both_decoders(entry: BundleEntry) -> None:
    encoded = encode_entry(entry)
    assert decode_entry(encoded, {}) == entry
    assert _decode_any_entry(encoded, None) == entry


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(entry=entries, data=st.data())
def test_damaged_entries_decode_or_fail_alike(entry: BundleEntry, data: st.DataObject) -> None:
    """Truncated, extended and byte-flipped entries: the cached fast path gives exactly
    what the general decoder gives, value or error."""
    buf = bytearray(encode_entry(entry))
    action = data.draw(st.sampled_from(["truncate", "flip", "append", "insert"]))
    if action == "truncate" and buf:
        del buf[data.draw(st.integers(0, len(buf) - 1)) :]
    elif action == "flip" and buf:
        buf[data.draw(st.integers(0, len(buf) - 1))] = data.draw(st.integers(0, 255))
    elif action == "append":
        buf += data.draw(st.binary(min_size=1, max_size=6))
    else:
        at = data.draw(st.integers(0, len(buf)))
        buf[at:at] = data.draw(st.binary(min_size=1, max_size=3))
    raw = bytes(buf)
    assert _outcome(lambda b: decode_entry(b, {}), raw) == _outcome(
        lambda b: _decode_any_entry(b, None), raw
    )


@settings(max_examples=300, deadline=None)
@given(entry=entries)
def test_protobufs_parser_reads_what_we_read(tf: Any, entry: BundleEntry) -> None:
    from tensorflow.core.protobuf import tensor_bundle_pb2

    encoded = encode_entry(entry)
    parsed = tensor_bundle_pb2.BundleEntryProto.FromString(encoded)
    ours = decode_entry(encoded, {})
    assert ours.dtype == parsed.dtype
    assert ours.shape == tuple(d.size for d in parsed.shape.dim)
    assert ours.unknown_rank == parsed.shape.unknown_rank
    assert (ours.shard_id, ours.offset, ours.size, ours.crc32c) == (
        parsed.shard_id,
        parsed.offset,
        parsed.size,
        parsed.crc32c,
    )
    assert len(ours.slices) == len(parsed.slices)


@pytest.mark.parametrize(
    "entry",
    [
        BundleEntry(1, (4,), 0, 64, 16, 0x12345678),
        BundleEntry(1, (), 0, 0, 4, 7),
        BundleEntry(7, (3,), 2, 1 << 35, 40, 1),
        BundleEntry(1, (2, 2), 0, -1, 16, 0),  # negative offset: a 10-byte varint
    ],
)
def test_common_entries_decode_through_the_shape_cache(entry: BundleEntry) -> None:
    encoded = encode_entry(entry)
    shapes: dict[bytes, tuple[tuple[int, ...], bool]] = {}
    assert decode_entry(encoded, shapes) == entry
    assert list(shapes.values()) == [(entry.shape, False)]
