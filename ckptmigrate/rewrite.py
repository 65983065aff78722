"""Rewrite a checkpoint unchanged into a new directory (the identity conversion).

V2 sources are copied entry by entry as stored bytes, keeping shards, byte order,
partitioned-variable slices and the object graph, so TF2 checkpoints still restore with
``assert_consumed()``. V1 sources are decoded through TensorFlow and written as V2.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .checkpoint import open_checkpoint
from .formats.bundle_reader import BundleReader, verified_in_background
from .formats.bundle_writer import BundleWriter


@dataclass(frozen=True, slots=True)
class RewriteResult:
    prefix: Path
    tensors: int
    bytes_copied: int


def rewrite_checkpoint(
    source: str | Path,
    output_dir: str | Path,
    *,
    overwrite: bool = False,
    durable: bool = False,
) -> RewriteResult:
    """Copy ``source`` to ``output_dir/<prefix name>``; nothing appears there on failure.
    ``durable`` fsyncs every file before publishing (TensorFlow's own savers don't)."""
    with open_checkpoint(source) as checkpoint:
        reader = checkpoint.reader
        name = checkpoint.prefix.name
        if isinstance(reader, BundleReader):
            return _copy_bundle(reader, output_dir, name, overwrite, durable)
        writer = BundleWriter(output_dir, name, overwrite=overwrite, durable=durable)
        with writer:
            copied = 0
            keys = reader.variable_keys()
            for key in keys:
                info = reader.info(key)
                value = reader.read(key)
                writer.add_array(key, value, info.dtype)
                copied += value.nbytes
            return RewriteResult(writer.commit(), len(keys), copied)


def _copy_bundle(
    reader: BundleReader, output_dir: str | Path, name: str, overwrite: bool, durable: bool
) -> RewriteResult:
    writer = BundleWriter(
        output_dir,
        name,
        num_shards=reader.header.num_shards,
        big_endian=reader.big_endian,
        overwrite=overwrite,
        durable=durable,
    )
    # Source layout order: an unchanged shard comes out byte-identical.
    by_layout = sorted(reader.entries.items(), key=lambda item: (item[1].shard_id, item[1].offset))
    stored = [key for key, entry in by_layout if not entry.slices]
    with writer, verified_in_background(reader, stored) as finish:
        copied = 0
        for key, entry in by_layout:
            if entry.slices:
                info = reader.info(key)
                writer.add_partitioned(key, info.dtype, entry.shape, entry.slices)
            else:
                writer.add_stored(key, reader, verify=False)
                copied += entry.size
        finish()  # a bad checksum aborts here, before anything is published
        return RewriteResult(writer.commit(), len(reader.entries), copied)
