"""Read a V2 checkpoint (TensorBundle) without TensorFlow.

Opening parses only the `.index` table (small) and checks that every data shard it promises
exists and is long enough. Tensor values are read one at a time with positioned reads at
the entry's recorded offset, so reading one tensor never touches the others.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import math
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from .. import dtypes
from ..errors import (
    CheckpointNotFoundError,
    ChecksumMismatchError,
    CkptMigrateError,
    CorruptCheckpointError,
    UnsupportedCheckpointError,
)
from . import crc, tensor_codec
from .bundle_proto import (
    BIG_ENDIAN,
    BundleEntry,
    BundleHeader,
    ShapeCache,
    decode_entry,
    decode_header,
)
from .locate import AnyPath, data_path, index_path
from .ordered_code import decode_slice_key, encode_slice_key, is_slice_key
from .protowire import ProtoError, paused_gc
from .remote import (
    RemotePath,
    called_in_order,
    fetched_in_order,
    remote_concurrency,
    store_error,
)
from .remote import read_buffer as default_read_buffer
from .table import TableError, iter_table

if TYPE_CHECKING:
    import concurrent.futures

    import numpy as np

HEADER_KEY = ""
COPY_CHUNK = 8 << 20

WriteFn = Callable[[memoryview], object]
# copy_file_range refuses some file pairs (old kernels, some filesystems): copy by hand.
_NO_KERNEL_COPY = {errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL, errno.EBADF}


class TensorInfo(NamedTuple):
    """What the index says about one variable; no values. (A tuple: listing a checkpoint
    makes one per variable, and a frozen dataclass costs twice as long to build.)"""

    key: str
    dtype: dtypes.DType
    shape: tuple[int, ...]
    nbytes: int  # bytes stored in the data shards (all slices, for partitioned ones)
    shard: int | None  # None for partitioned variables, whose slices each have their own
    offset: int | None
    crc32c: int | None  # masked, as stored
    slices: tuple[str, ...]  # TF slice specs ("0,5:-"); empty unless partitioned

    @property
    def num_elements(self) -> int:
        return math.prod(self.shape)


class BundleReader:
    """Random access to the tensors of one V2 checkpoint prefix."""

    format = "v2"

    def __init__(self, prefix: str | Path | RemotePath) -> None:
        self.prefix: AnyPath = prefix if isinstance(prefix, RemotePath) else Path(prefix)
        self.index_file = index_path(self.prefix)
        self.header, self.entries = self._read_index()
        self._variable_keys: list[str] | None = None
        self.big_endian = self.header.endianness == BIG_ENDIAN
        self._fds: dict[int, int] = {}
        self._fd_lock = threading.Lock()
        self._check_shards()

    # -- index -------------------------------------------------------------------------

    def _corrupt(
        self, message: str, variable: str | None = None, hint: str | None = None
    ) -> CorruptCheckpointError:
        return CorruptCheckpointError(
            message,
            path=str(self.index_file),
            variable=variable,
            hint=hint
            or "the checkpoint is damaged or incompletely copied; re-copy it from its source.",
        )

    def _read_index(self) -> tuple[BundleHeader, dict[str, BundleEntry]]:
        try:
            data = self.index_file.read_bytes()
        except FileNotFoundError:
            raise CheckpointNotFoundError(
                "the index file is missing", path=str(self.index_file)
            ) from None
        except OSError as e:
            raise CheckpointNotFoundError(
                f"cannot read the index: {e.strerror}", path=str(self.index_file)
            ) from e
        if not data:
            raise self._corrupt("the index file is empty")
        header: BundleHeader | None = None
        entries: dict[str, BundleEntry] = {}
        shapes: ShapeCache = {}
        key = ""
        try:
            with paused_gc():
                for raw_key, value in iter_table(data):
                    key = raw_key.decode("utf-8", "surrogateescape")
                    if key == HEADER_KEY:
                        header = decode_header(value)
                    elif key in entries:
                        raise self._corrupt("the index holds this key twice", variable=key)
                    else:
                        entries[key] = decode_entry(value, shapes)
        except TableError as e:
            raise self._corrupt(f"not a valid checkpoint index ({e})") from None
        except ProtoError as e:
            raise self._corrupt(f"index entry cannot be parsed ({e})", variable=key) from None
        if header is None:
            raise self._corrupt("the index has no header entry")
        if header.num_shards < 1 or header.num_shards > 1_000_000:
            raise self._corrupt(f"the header declares {header.num_shards} data shards")
        if header.min_consumer > 1:
            raise UnsupportedCheckpointError(
                f"written by a newer TensorBundle version (min consumer {header.min_consumer})",
                path=str(self.index_file),
            )
        return header, entries

    def _check_shards(self) -> None:
        needed = [0] * self.header.num_shards
        # Checkpoints share a handful of shapes and dtypes among all their entries: each is
        # checked and measured once (this loop runs for every entry before anything else).
        elements: dict[tuple[int, ...], int] = {}
        kinds: dict[int, dtypes.DType] = {}
        for stored_key, entry in self.entries.items():
            count = elements.get(entry.shape)
            if count is None:
                if any(d < 0 for d in entry.shape) or len(entry.shape) > 64:
                    raise self._corrupt(
                        f"invalid shape {list(entry.shape)}", variable=_readable(stored_key)
                    )
                count = elements[entry.shape] = math.prod(entry.shape)
            if entry.slices:
                # A partitioned variable's own shard, offset and size mean nothing (TF
                # ignores them): its slices, stored under their own keys, are checked.
                self._check_slices(stored_key, entry, _readable(stored_key))
                continue
            if not 0 <= entry.shard_id < self.header.num_shards:
                raise self._corrupt(
                    f"entry names shard {entry.shard_id} but the checkpoint has "
                    f"{self.header.num_shards}",
                    variable=_readable(stored_key),
                )
            if entry.offset < 0 or entry.size < 0:
                raise self._corrupt("negative offset or size", variable=_readable(stored_key))
            dtype = kinds.get(entry.dtype)
            if dtype is None:
                dtype = kinds[entry.dtype] = dtypes.from_enum(entry.dtype)
            if dtype.itemsize is not None:
                if count * dtype.itemsize != entry.size:
                    raise self._corrupt(
                        f"entry size {entry.size} does not match {dtype.name} "
                        f"{list(entry.shape)} ({count * dtype.itemsize} bytes)",
                        variable=_readable(stored_key),
                    )
            elif dtype.is_string or dtype.is_variant:
                # Each string takes at least its length byte (and the lengths a 4-byte
                # checksum); each variant at least a length byte and a 4-byte checksum.
                least = 0 if not count else count + 4 if dtype.is_string else 5 * count
                if entry.size < least:
                    raise self._corrupt(
                        f"{dtype.name} {list(entry.shape)} declares {count} elements, which "
                        f"need at least {least} bytes, but the entry stores {entry.size}",
                        variable=_readable(stored_key),
                    )
            needed[entry.shard_id] = max(needed[entry.shard_id], entry.offset + entry.size)
        for shard, end in enumerate(needed):
            path = self.data_file(shard)
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                holders = [
                    k for k, e in self.entries.items() if e.shard_id == shard and not e.slices
                ]
                raise CorruptCheckpointError(
                    f"data shard {shard} of {self.header.num_shards} is missing "
                    f"({len(holders)} tensors are stored there"
                    + (f", e.g. {holders[0]!r})" if holders else ")"),
                    path=str(path),
                    hint="copy every .data-NNNNN-of-NNNNN file along with the .index.",
                ) from None
            if size < end:
                raise CorruptCheckpointError(
                    f"data shard is truncated: {size} bytes, but the index places tensor data "
                    f"up to byte {end}",
                    path=str(path),
                    hint="the copy was interrupted; re-copy the shard.",
                )

    def _check_slices(self, stored_key: str, entry: BundleEntry, key: str) -> None:
        """A partitioned variable's slices must lie inside its shape, be stored (under
        their slice keys, with its dtype and their shape), not overlap and cover it whole:
        TensorFlow refuses to restore it otherwise ("Overlapping slices", "Does not have
        sufficient slices"), and reading it would leave zeros where nothing is stored."""
        shape = list(entry.shape)
        boxes: list[tuple[tuple[int, int, bool], ...]] = []
        covered = 0
        for i, tslice in enumerate(entry.slices):
            spec = tslice.spec()
            if len(tslice.extents) != len(shape) or any(
                e.start != 0
                if e.length is None
                else (e.start < 0 or e.length < 0 or e.start + e.length > dim)
                for e, dim in zip(tslice.extents, shape, strict=False)
            ):
                raise self._corrupt(f"slice {spec} does not lie inside {shape}", variable=key)
            part_shape = tslice.shape(entry.shape)
            part = self.entries.get(self.slice_key(stored_key, i))
            if part is None or part.slices:
                raise self._corrupt(f"slice {spec} is listed but not stored", variable=key)
            # TF copies a slice's elements in order: any shape of the same size reads.
            if part.dtype != entry.dtype or math.prod(part.shape) != math.prod(part_shape):
                raise self._corrupt(
                    f"slice {spec} is stored as {dtypes.from_enum(part.dtype).name} "
                    f"{list(part.shape)}, not {dtypes.from_enum(entry.dtype).name} "
                    f"{list(part_shape)}",
                    variable=key,
                )
            covered += math.prod(part_shape)
            boxes.append(
                tuple(
                    (e.start, dim if e.length is None else e.start + e.length, e.length is None)
                    for e, dim in zip(tslice.extents, shape, strict=True)
                )
            )
        try:
            pair = _first_overlap(boxes)
        except ValueError:
            raise UnsupportedCheckpointError(
                f"its {len(boxes)} slices overlap each other in every dimension too often to "
                "check that they are disjoint",
                path=str(self.index_file),
                variable=key,
            ) from None
        if pair is not None:
            first, second = (entry.slices[i].spec() for i in pair)
            raise self._corrupt(
                f"overlapping slices {first} and {second}: TensorFlow refuses to restore it "
                f"(Overlapping slices: existing slice = {first}, new slice = {second})",
                variable=key,
                hint=_BAD_PARTITION_HINT,
            )
        if covered != math.prod(entry.shape):
            raise self._corrupt(
                f"slices {', '.join(s.spec() for s in entry.slices)} cover {covered} of the "
                f"{math.prod(entry.shape)} elements of {shape}: TensorFlow refuses to restore "
                "it (Does not have sufficient slices)",
                variable=key,
                hint=_BAD_PARTITION_HINT,
            )

    # -- listing -----------------------------------------------------------------------

    @property
    def is_remote(self) -> bool:
        return isinstance(self.prefix, RemotePath)

    def data_file(self, shard: int) -> AnyPath:
        return data_path(self.prefix, shard, self.header.num_shards)

    def variable_keys(self) -> list[str]:
        """Names a restore can ask for: every key except the header and slice keys."""
        if self._variable_keys is None:  # a check asks several times per side
            self._variable_keys = [k for k in self.entries if not is_slice_key(k)]
        return list(self._variable_keys)

    def slice_key(self, key: str, index: int) -> str:
        tslice = self.entries[key].slices[index]
        return encode_slice_key(key, [(e.start, e.length) for e in tslice.extents])

    def info(self, key: str) -> TensorInfo:
        entry = self._entry(key)
        dtype = dtypes.from_enum(entry.dtype)
        if entry.slices:
            nbytes = 0
            for i in range(len(entry.slices)):
                part = self.entries.get(self.slice_key(key, i))
                nbytes += part.size if part else 0
            return TensorInfo(
                key,
                dtype,
                entry.shape,
                nbytes,
                None,
                None,
                None,
                tuple(s.spec() for s in entry.slices),
            )
        return TensorInfo(
            key, dtype, entry.shape, entry.size, entry.shard_id, entry.offset, entry.crc32c, ()
        )

    def _entry(self, key: str) -> BundleEntry:
        try:
            return self.entries[key]
        except KeyError:
            raise CkptKeyError(key, self) from None

    # -- values ------------------------------------------------------------------------

    def _fd(self, shard: int) -> int:
        fd = self._fds.get(shard)
        if fd is None:
            with self._fd_lock:  # readers may be shared by a copying and a verifying thread
                fd = self._fds.get(shard)
                if fd is None:
                    path = self.data_file(shard)
                    assert isinstance(path, Path), "remote shards are read by RemoteBundleReader"
                    fd = os.open(path, os.O_RDONLY)
                    self._fds[shard] = fd
        return fd

    def read_stored_bytes(self, key: str, verify: bool = True) -> bytearray:
        """The tensor's bytes exactly as stored (not for partitioned variables)."""
        entry = self._entry(key)
        buf = bytearray(entry.size)
        view = memoryview(buf)
        fd = self._fd(entry.shard_id)
        done = 0
        while done < entry.size:
            n = os.preadv(fd, [view[done:]], entry.offset + done)
            if n <= 0:
                raise self._truncated(key, entry)
            done += n
        if verify and crc.value(buf) != crc.unmask(entry.crc32c):
            raise self._checksum_error(key, entry)
        return buf

    def _truncated(self, key: str, entry: BundleEntry) -> CorruptCheckpointError:
        return CorruptCheckpointError(
            f"data ends before byte {entry.offset + entry.size}",
            path=str(self.data_file(entry.shard_id)),
            variable=key,
            hint="the shard was truncated after the index was written; re-copy it.",
        )

    def _checksum_error(self, key: str, entry: BundleEntry) -> ChecksumMismatchError:
        return ChecksumMismatchError(
            f"tensor bytes [{entry.offset}, {entry.offset + entry.size}) fail their CRC32C "
            "check: the data is corrupt",
            path=str(self.data_file(entry.shard_id)),
            variable=key,
            hint="re-copy the checkpoint; inspecting it with [[check_crc]] checks every tensor.",
        )

    def _chunks(
        self, key: str, entry: BundleEntry, scratch: bytearray | None = None
    ) -> Iterator[bytes | memoryview]:
        """A tensor's stored bytes in bounded chunks, each a view of one reused buffer
        (``scratch`` if given: zero-filling a fresh one per tensor shows up)."""
        fd = self._fd(entry.shard_id)
        buf = scratch if scratch is not None else bytearray(min(COPY_CHUNK, entry.size) or 1)
        view = memoryview(buf)
        done = 0
        while done < entry.size:
            want = min(len(buf), entry.size - done)
            n = os.preadv(fd, [view[:want]], entry.offset + done)
            if n <= 0:
                raise self._truncated(key, entry)
            yield view[:n]
            done += n

    def _stream(
        self,
        key: str,
        entry: BundleEntry,
        write: WriteFn | None,
        verify: bool,
        scratch: bytearray | None = None,
    ) -> None:
        """Read a fixed-width tensor in bounded chunks, checksumming and/or forwarding them
        (the CRC runs across chunk and, remotely, request boundaries)."""
        checksum = 0
        for chunk in self._chunks(key, entry, scratch):
            if verify:
                checksum = crc.extend(checksum, chunk)
            if write is not None:
                write(memoryview(chunk))
        if verify and checksum != crc.unmask(entry.crc32c):
            raise self._checksum_error(key, entry)

    def copy_stored_bytes(self, key: str, write: WriteFn, verify: bool = True) -> int:
        """Stream a tensor's stored bytes to ``write`` in bounded chunks; returns the size."""
        entry = self._entry(key)
        if dtypes.from_enum(entry.dtype).itemsize is None:
            # String/variant checksums cover decoded lengths, not the stored bytes: decode
            # to verify (such tensors are small: names, configs, the object graph).
            raw = self.read_stored_bytes(key, verify=False)
            if verify:
                self._decode_elements(key, entry, raw, verify=True)
            write(memoryview(raw))
            return entry.size
        self._stream(key, entry, write, verify)
        return entry.size

    def copy_stored_to_fd(self, key: str, out_fd: int, verify: bool = True) -> int:
        """Append a tensor's stored bytes to the file ``out_fd`` (at its current position).

        The checksum is verified first (reading through a bounded buffer); the copy itself
        is done by the kernel (copy_file_range) where it can, so the bytes never pass
        through Python. Falls back to a chunked read/write copy."""
        entry = self._entry(key)
        if dtypes.from_enum(entry.dtype).itemsize is None or not hasattr(os, "copy_file_range"):
            return self.copy_stored_bytes(key, lambda chunk: _write_all(out_fd, chunk), verify)
        if verify:
            self._stream(key, entry, None, verify=True)
        fd = self._fd(entry.shard_id)
        done = 0
        try:
            while done < entry.size:
                n = os.copy_file_range(fd, out_fd, entry.size - done, entry.offset + done)
                if n <= 0:
                    raise self._truncated(key, entry)
                done += n
        except OSError as e:
            if done or e.errno not in _NO_KERNEL_COPY:
                raise
            self._stream(key, entry, lambda chunk: _write_all(out_fd, chunk), verify=False)
        return entry.size

    def read(self, key: str, verify: bool = True) -> np.ndarray:
        """The tensor's value as a numpy array (object array of bytes for strings)."""
        entry = self._entry(key)
        if entry.slices:
            return self._read_partitioned(key, entry, verify)
        return self._decode(key, entry, self.read_stored_bytes(key, verify=False), verify)

    def read_elements(self, key: str, verify: bool = True) -> list[bytes]:
        """The elements of a string or variant tensor, flattened (no numpy needed)."""
        entry = self._entry(key)
        return self._decode_elements(key, entry, self.read_stored_bytes(key, verify=False), verify)

    def _decode_elements(
        self, key: str, entry: BundleEntry, raw: bytearray, verify: bool
    ) -> list[bytes]:
        dtype = dtypes.from_enum(entry.dtype)
        count = math.prod(entry.shape)
        if not raw and count:
            raise ChecksumMismatchError(
                f"{count} elements are declared but no bytes are stored",
                path=str(self.data_file(entry.shard_id)),
                variable=key,
            )
        try:
            if dtype.is_string:
                elements, checksum = tensor_codec.decode_strings(raw, count, self.big_endian)
            elif dtype.is_variant:
                elements, checksum = tensor_codec.decode_variants(raw, count)
            else:
                raise UnsupportedCheckpointError(
                    f"tensors of dtype {dtype.name} cannot be decoded",
                    path=str(self.index_file),
                    variable=key,
                    hint="they can still be copied unchanged.",
                )
        except ProtoError as e:
            raise ChecksumMismatchError(
                f"string tensor is corrupt ({e})",
                path=str(self.data_file(entry.shard_id)),
                variable=key,
            ) from None
        if verify and raw and checksum != crc.unmask(entry.crc32c):
            raise self._checksum_error(key, entry)
        return elements if elements else [b""] * count

    def _decode(self, key: str, entry: BundleEntry, raw: bytearray, verify: bool) -> np.ndarray:
        import numpy as np

        dtype = dtypes.from_enum(entry.dtype)
        count = math.prod(entry.shape)
        if dtype.itemsize is not None:
            if verify and crc.value(raw) != crc.unmask(entry.crc32c):
                raise self._checksum_error(key, entry)
            array = np.frombuffer(raw, dtype=dtypes.numpy_dtype(dtype), count=count)
            if self.big_endian != tensor_codec.NATIVE_IS_BIG:
                tensor_codec.swap_bytes_inplace(array)
            return array.reshape(entry.shape)
        elements = self._decode_elements(key, entry, raw, verify)  # before any allocation
        out = np.empty(count, dtype=object)
        out[:] = elements
        return out.reshape(entry.shape)

    def _read_partitioned(self, key: str, entry: BundleEntry, verify: bool) -> np.ndarray:
        import numpy as np

        dtype = dtypes.from_enum(entry.dtype)
        info = self.info(key)
        if dtype.itemsize is not None and info.num_elements * dtype.itemsize > info.nbytes:
            raise self._corrupt(
                f"slices {', '.join(info.slices)} hold {info.nbytes} bytes, less than the "
                f"full shape {list(entry.shape)} needs",
                variable=key,
            )
        full = np.zeros(entry.shape, dtype=dtypes.numpy_dtype(dtype))
        for i, tslice in enumerate(entry.slices):
            part_key = self.slice_key(key, i)
            if part_key not in self.entries or self.entries[part_key].slices:
                raise self._corrupt(f"slice {tslice.spec()} is listed but not stored", variable=key)
            part = self.read(part_key, verify)
            try:
                full[tslice.bounds(entry.shape)] = part.reshape(tslice.shape(entry.shape))
            except ValueError as e:
                raise self._corrupt(
                    f"slice {tslice.spec()} does not fit {list(entry.shape)} ({e})", variable=key
                ) from None
        return full

    @property
    def num_shards(self) -> int:
        """The data files the checkpoint's values are spread over."""
        return self.header.num_shards

    def stored_keys(self) -> list[str]:
        """The keys whose values are stored whole (not partitioned into slices)."""
        return [k for k, e in self.entries.items() if not e.slices]

    def verify(self, on_tensor: Callable[[int], object] | None = None) -> int:
        """Check every stored tensor's CRC32C; returns the number of bytes checked.
        ``on_tensor`` is called with each tensor's size once it is checked (progress)."""
        return self.verify_keys(self.stored_keys(), on_tensor=on_tensor)

    def verify_keys(
        self,
        keys: list[str],
        stop: threading.Event | None = None,
        on_tensor: Callable[[int], object] | None = None,
    ) -> int:
        """Check the CRC32C of the given stored tensors (safe to run in another thread
        while this reader copies); returns the bytes checked. ``stop`` ends it early."""
        total = 0
        scratch = bytearray(COPY_CHUNK)
        for key in keys:
            if stop is not None and stop.is_set():
                break
            entry = self._entry(key)
            if dtypes.from_enum(entry.dtype).itemsize is None:
                self.copy_stored_bytes(key, _discard, verify=True)
            else:
                self._stream(key, entry, None, verify=True, scratch=scratch)
            total += entry.size
            if on_tensor is not None:
                on_tensor(entry.size)
        return total

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def __del__(self) -> None:
        # The descriptors are plain ints, which nothing else closes: a reader dropped
        # unclosed (``open_checkpoint(p).read(k)``, written as one writes
        # ``tf.train.load_checkpoint(p).get_tensor(k)``) gives them back as a file would.
        if self.__dict__.get("_fds"):  # absent when __init__ raised before opening any
            self.close()

    def __enter__(self) -> BundleReader:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class RemoteBundleReader(BundleReader):
    """The same checkpoint on an fsspec filesystem (s3://, gs://...). The index is read
    whole; each positioned read becomes one ranged request for exactly the bytes wanted,
    at most ``read_buffer`` bytes each, so reading a tensor fetches that tensor alone and
    memory stays bounded when streaming. CRC32C checks are the local reader's."""

    prefix: RemotePath

    def __init__(
        self, prefix: RemotePath, read_buffer: int | None = None, concurrency: int | None = None
    ) -> None:
        self.read_buffer = read_buffer or default_read_buffer()
        self.concurrency = concurrency or remote_concurrency()
        try:
            super().__init__(prefix)
        except CkptMigrateError:
            raise
        except Exception as e:  # the store's client raises its own types (botocore, aiohttp)
            raise store_error(e, prefix) from e

    def data_file(self, shard: int) -> RemotePath:
        return data_path(self.prefix, shard, self.header.num_shards)

    def _fd(self, shard: int) -> int:
        raise TypeError("a remote checkpoint has no file descriptors")

    def _chunks(
        self, key: str, entry: BundleEntry, scratch: bytearray | None = None
    ) -> Iterator[bytes]:
        """The stored bytes of ``entry`` in requests of at most ``read_buffer`` bytes."""
        end = entry.offset + entry.size
        ranges = [
            (start, min(start + self.read_buffer, end))
            for start in range(entry.offset, end, self.read_buffer)
        ]
        # Several requests in flight for a large tensor: a store's latency, not its
        # bandwidth, is what one request at a time waits on.
        fetch = functools.partial(self._read_range, entry.shard_id, key)
        chunks = fetched_in_order(fetch, ranges, self.concurrency)
        for (start, stop), chunk in zip(ranges, chunks, strict=True):
            if len(chunk) != stop - start:
                raise self._truncated(key, entry)
            yield chunk

    def read_stored_bytes(self, key: str, verify: bool = True) -> bytearray:
        entry = self._entry(key)
        buf = bytearray(entry.size)
        view = memoryview(buf)
        done = 0
        for chunk in self._chunks(key, entry):
            view[done : done + len(chunk)] = chunk
            done += len(chunk)
        if verify and crc.value(buf) != crc.unmask(entry.crc32c):
            raise self._checksum_error(key, entry)
        return buf

    def copy_stored_to_fd(self, key: str, out_fd: int, verify: bool = True) -> int:
        # One pass: each downloaded chunk is checksummed and written (a separate verifying
        # pass, as the local reader makes, would download every byte twice).
        return self.copy_stored_bytes(key, lambda chunk: _write_all(out_fd, chunk), verify)

    def verify_keys(
        self,
        keys: list[str],
        stop: threading.Event | None = None,
        on_tensor: Callable[[int], object] | None = None,
    ) -> int:
        """As the local reader's, with tensors that lie side by side in a shard fetched
        together: one request per tensor cost a round trip each, minutes for a checkpoint
        of many small variables. Runs of neighbours go in requests of up to
        ``read_buffer`` bytes, ``concurrency`` at a time; larger tensors stream in their
        own requests, and string and variant tensors (checksummed through their decoded
        lengths) are read one by one, as before."""
        alone: list[tuple[str, BundleEntry]] = []
        packed: list[tuple[str, BundleEntry]] = []
        for key in keys:
            entry = self._entry(key)
            fixed = dtypes.from_enum(entry.dtype).itemsize is not None
            (packed if fixed and entry.size <= self.read_buffer else alone).append((key, entry))
        runs = _runs(sorted(packed, key=lambda p: (p[1].shard_id, p[1].offset)), self.read_buffer)
        total = 0
        fetched = called_in_order(
            [functools.partial(self._fetch_run, run) for run in runs], self.concurrency
        )
        with contextlib.closing(fetched):
            for run, data in zip(runs, fetched, strict=True):
                if stop is not None and stop.is_set():
                    return total
                for key, entry in run.members:
                    self._checked_in_run(key, entry, run, data)
                    total += entry.size
                    if on_tensor is not None:
                        on_tensor(entry.size)
        return total + super().verify_keys([key for key, _ in alone], stop, on_tensor)

    def in_runs(self, keys: Sequence[str]) -> RunReads:
        """Stored bytes of ``keys``, to be read in about this order (from several threads,
        as convert reads ahead), with neighbours fetched together."""
        return RunReads(self, keys)

    def _fetch_run(self, run: _Run) -> bytes:
        return self._read_range(run.shard, run.members[0][0], run.start, run.end)

    def _read_range(self, shard: int, key: str, start: int, stop: int) -> bytes:
        """Bytes [start, stop) of a data shard, for reading ``key`` (which errors name)."""
        path = self.data_file(shard)
        try:
            return path.read_range(start, stop)
        except CkptMigrateError:
            raise
        except Exception as e:
            raise store_error(e, path, key) from e

    def _checked_in_run(self, key: str, entry: BundleEntry, run: _Run, data: bytes) -> memoryview:
        """``entry``'s bytes in ``data``, what a request for ``run`` returned, once they are
        all there and match their CRC32C."""
        at = entry.offset - run.start
        if at + entry.size > len(data):
            raise self._truncated(key, entry)
        stored = memoryview(data)[at : at + entry.size]
        if crc.value(stored) != crc.unmask(entry.crc32c):
            raise self._checksum_error(key, entry)
        return stored

    def close(self) -> None:
        pass  # nothing held open: every read is its own request


class _Run(NamedTuple):
    """Tensors read in one request: bytes [start, end) of a shard."""

    shard: int
    start: int
    end: int
    members: list[tuple[str, BundleEntry]]


class RunReads:
    """A remote reader's tensors read in a known order, neighbours fetched together: each
    run's request is made by the first thread to ask for one of its tensors, the others
    wait for it, and the bytes are let go once every tensor of the run has been taken. A
    tensor that is not in a run of several (or is asked for again) is read on its own."""

    def __init__(self, reader: RemoteBundleReader, keys: Sequence[str]) -> None:
        self._reader = reader
        seen: set[str] = set()
        wanted: list[tuple[str, BundleEntry]] = []
        for key in keys:
            entry = reader._entry(key)
            fixed = dtypes.from_enum(entry.dtype).itemsize is not None
            if key not in seen and fixed and not entry.slices:
                seen.add(key)
                wanted.append((key, entry))
        self._runs = [run for run in _runs(wanted, reader.read_buffer) if len(run.members) > 1]
        self._run_of = {key: i for i, run in enumerate(self._runs) for key, _ in run.members}
        self._left = [len(run.members) for run in self._runs]
        self._fetching: dict[int, concurrent.futures.Future[bytes]] = {}
        self._lock = threading.Lock()

    def read_stored_bytes(self, key: str) -> bytearray:
        """The tensor's stored bytes, CRC32C checked."""
        import concurrent.futures

        with self._lock:
            index = self._run_of.pop(key, None)
            fetch = None if index is None else self._fetching.get(index)
            mine = index is not None and fetch is None
            if mine:
                assert index is not None
                fetch = self._fetching[index] = concurrent.futures.Future()
        if index is None or fetch is None:
            return self._reader.read_stored_bytes(key, verify=True)
        run = self._runs[index]
        if mine:
            try:
                fetch.set_result(self._reader._fetch_run(run))
            except BaseException as e:
                fetch.set_exception(e)
                raise
        data = fetch.result()
        with self._lock:
            self._left[index] -= 1
            if not self._left[index]:
                del self._fetching[index]  # every tensor of the run taken: let it go
        return bytearray(self._reader._checked_in_run(key, self._reader.entries[key], run, data))


# Bytes between two tensors a request may read for nothing to take both at once (the
# strings TensorFlow stores between them, say); farther apart, they are read apart.
_MAX_RUN_GAP = 64 << 10


def _runs(entries: list[tuple[str, BundleEntry]], most: int) -> list[_Run]:
    """Requests of at most ``most`` bytes that together read every entry, in the order
    given: an entry joins the run before it when it lies in the same shard at or after the
    run's start, near enough and within ``most`` (entries sorted by shard and offset make
    the fewest requests)."""
    runs: list[_Run] = []
    for key, entry in entries:
        end = entry.offset + entry.size
        last = runs[-1] if runs else None
        if (
            last is not None
            and last.shard == entry.shard_id
            and last.start <= entry.offset <= last.end + _MAX_RUN_GAP
            and max(last.end, end) - last.start <= most
        ):
            last.members.append((key, entry))
            runs[-1] = last._replace(end=max(last.end, end))
        else:
            runs.append(_Run(entry.shard_id, entry.offset, end, [(key, entry)]))
    return runs


def open_bundle(prefix: AnyPath) -> BundleReader:
    """A reader for the V2 checkpoint at ``prefix``: local files, or a remote filesystem."""
    return RemoteBundleReader(prefix) if isinstance(prefix, RemotePath) else BundleReader(prefix)


def _discard(_: memoryview) -> None:
    pass


def _readable(key: str) -> str:
    """A key as messages name it: a slice's key (binary ordered code) as
    ``name (slice 0,7:-)``."""
    if not is_slice_key(key):
        return key
    try:
        name, extents = decode_slice_key(key)
    except ProtoError:
        return key
    spec = ":".join("-" if length is None else f"{start},{length}" for start, length in extents)
    return f"{name} (slice {spec})"


_BAD_PARTITION_HINT = (
    "TensorFlow cannot restore this variable either; save it again from the model that "
    "holds it, or re-copy the checkpoint if the copy is damaged."
)
# Pairs of slices compared, at most, when looking for an overlap: a few seconds. Real
# partitions (along one or two dimensions) need about one comparison per slice.
_MAX_SLICE_COMPARISONS = 50_000_000


def _first_overlap(boxes: list[tuple[tuple[int, int, bool], ...]]) -> tuple[int, int] | None:
    """Two boxes that intersect as TensorFlow's TensorSlice::Intersect decides (in every
    dimension: either extent is full, or they share an element), or None.

    Sorted by their start in one dimension, a box can only meet the boxes after it that
    start before it ends there: each is compared with that window only. The dimension
    chosen is the one whose windows are smallest (the partitioned one)."""
    import numpy as np

    n = len(boxes)
    if n < 2:
        return None
    if not boxes[0]:  # scalars: every two slices intersect
        return (0, 1)
    array = np.array(boxes, dtype=np.int64).reshape(n, -1, 3)
    starts, ends, full = array[:, :, 0], array[:, :, 1], array[:, :, 2].astype(bool)
    best: tuple[int, np.ndarray, np.ndarray] | None = None
    for dim in range(starts.shape[1]):
        order = np.argsort(starts[:, dim], kind="stable")
        if full[:, dim].any():  # a full extent meets every box in this dimension
            limits = np.full(n, n)
        else:
            limits = np.searchsorted(starts[order, dim], ends[order, dim], side="left")
        limits = np.maximum(limits, np.arange(1, n + 1))
        work = int((limits - np.arange(1, n + 1)).sum())
        if best is None or work < best[0]:
            best = (work, order, limits)
    assert best is not None
    work, order, limits = best
    if work * starts.shape[1] > _MAX_SLICE_COMPARISONS:
        raise ValueError("too many slices to compare")
    starts, ends, full = starts[order], ends[order], full[order]
    for i in np.nonzero(limits > np.arange(1, n + 1))[0]:
        window = slice(i + 1, limits[i])
        meet = (
            full[i]
            | full[window]
            | (np.maximum(starts[i], starts[window]) < np.minimum(ends[i], ends[window]))
        )
        hits = np.nonzero(meet.all(axis=1))[0]
        if hits.size:
            a, b = int(order[i]), int(order[i + 1 + hits[0]])
            return (a, b) if a < b else (b, a)
    return None


@contextlib.contextmanager
def verified_in_background(reader: BundleReader, keys: list[str]) -> Iterator[Callable[[], int]]:
    """Check the CRC32C of ``keys`` on a second thread while the caller copies them
    unverified (the kernel copies on one core, the checksums run on the other). Call the
    yielded ``finish()`` before publishing anything: it waits and raises the first
    checksum error. Leaving the block early stops the checking."""
    from concurrent.futures import ThreadPoolExecutor  # only copies need it: off check's path

    stop = threading.Event()
    with ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(reader.verify_keys, keys, stop)
        try:
            yield future.result
        except BaseException:
            stop.set()
            raise


def _write_all(fd: int, data: memoryview) -> None:
    while data:
        written = os.write(fd, data)
        data = data[written:]


class CkptKeyError(CheckpointNotFoundError):
    """A key is not in the checkpoint; the hint names the closest keys."""

    def __init__(self, key: str, reader: BundleReader) -> None:
        import difflib

        close = difflib.get_close_matches(key, reader.variable_keys(), n=3, cutoff=0.6)
        super().__init__(
            f"Key {key} not found in checkpoint",
            path=str(reader.prefix),
            variable=key,
            hint=f"did you mean {', '.join(close)}?"
            if close
            else "`ckptmigrate inspect` lists the keys it holds.",
        )
