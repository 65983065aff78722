"""Rewrite a checkpoint unchanged into a new directory (the identity conversion).

V2 sources are copied shard by shard as whole files (byte-identical), keeping byte order,
partitioned-variable slices and the object graph, so TF2 checkpoints still restore with
``assert_consumed()``. V1 sources are decoded through TensorFlow and written as V2.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar, overload

from .checkpoint import open_checkpoint
from .formats.bundle_reader import BundleReader, open_bundle, verified_in_background
from .formats.bundle_writer import BundleWriter
from .formats.locate import AnyPath, check_output, locate
from .formats.remote import RemotePath, as_path

# A Path output gives a Path prefix; a string may be a URL, so its prefix may be remote.
PrefixT = TypeVar("PrefixT", bound=AnyPath)


@dataclass(frozen=True, slots=True)
class RewriteResult(Generic[PrefixT]):
    prefix: PrefixT
    tensors: int
    bytes_copied: int


@overload
def rewrite_checkpoint(
    source: str | Path | RemotePath,
    output_dir: Path,
    *,
    overwrite: bool = ...,
    durable: bool = ...,
    check_crc: bool = ...,
) -> RewriteResult[Path]: ...
@overload
def rewrite_checkpoint(
    source: str | Path | RemotePath,
    output_dir: str | RemotePath,
    *,
    overwrite: bool = ...,
    durable: bool = ...,
    check_crc: bool = ...,
) -> RewriteResult[AnyPath]: ...
def rewrite_checkpoint(
    source: str | Path | RemotePath,
    output_dir: str | Path | RemotePath,
    *,
    overwrite: bool = False,
    durable: bool = False,
    check_crc: bool = False,
) -> RewriteResult[Any]:
    """Copy ``source`` to ``output_dir/<prefix name>``; nothing appears there on failure.

    Either side may be a URL (``s3://bucket/run``): a remote source's shards are downloaded
    (or, to the same store, copied by the store); a remote output is uploaded data first,
    index last, and deleted again on failure (see ``BundleWriter``).

    Args:
        source: the checkpoint to copy (a path, prefix, directory or URL).
        output_dir: the directory to create.
        overwrite: replace an existing ``output_dir``.
        durable: fsync every file before publishing (TensorFlow's own savers don't).
        check_crc: check every tensor's CRC32C (on a second thread) and refuse to publish a
            corrupt copy; without it the copy is byte-identical to the source, corruption
            included, which TensorFlow's restore (or ``inspect --check-crc``) still detects.

    Returns:
        The output prefix and how each shard was carried over.

    Raises:
        CheckpointNotFoundError, CorruptCheckpointError: the source is unusable.
        OutputError: the output exists (without ``overwrite``), is or holds the source, or
            cannot be written.
    """
    location = locate(source)
    # An output that is, holds or sits in the source would destroy it on overwrite.
    check_output(as_path(output_dir), location.given, location.prefix, overwrite)
    if location.format == "v2":  # no object-graph parsing: nothing here needs it
        with open_bundle(location.prefix) as bundle:
            return _copy_bundle(
                bundle,
                output_dir,
                location.prefix.name,
                overwrite=overwrite,
                durable=durable,
                check_crc=check_crc,
            )
    with open_checkpoint(source) as checkpoint:
        reader = checkpoint.reader
        name = checkpoint.prefix.name
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
    reader: BundleReader,
    output_dir: str | Path | RemotePath,
    name: str,
    *,
    overwrite: bool,
    durable: bool,
    check_crc: bool,
) -> RewriteResult[Any]:
    writer = BundleWriter(
        output_dir,
        name,
        num_shards=reader.header.num_shards,
        big_endian=reader.big_endian,
        overwrite=overwrite,
        durable=durable,
    )
    # Every shard survives unchanged: each is copied as one whole file by the kernel (as
    # cp does), byte-identical; with ``check_crc`` its checksums are checked on the second core.
    stored = [key for key, entry in reader.entries.items() if not entry.slices and check_crc]
    with writer, verified_in_background(reader, stored) as finish:
        for shard in range(reader.header.num_shards):
            writer.link_shard(shard, reader.data_file(shard), allow_links=False)
        copied = 0
        for key, entry in reader.entries.items():
            if entry.slices:
                info = reader.info(key)
                writer.add_partitioned(key, info.dtype, entry.shape, entry.slices)
            else:
                writer.add_linked(key, entry)
                copied += entry.size
        finish()  # a bad checksum aborts here, before anything is published
        return RewriteResult(writer.commit(), len(reader.entries), copied)
