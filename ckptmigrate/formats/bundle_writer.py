"""Write a V2 checkpoint (TensorBundle) tensor by tensor, atomically.

Everything is written into a hidden staging directory beside the destination; ``commit``
writes the index and the `checkpoint` state file last and renames the directory into place.
Until then nothing exists at the destination, so an exception, Ctrl-C or a full disk
leaves the destination untouched (``abort`` removes the staging directory).
Memory use is bounded by the one tensor being added; unchanged tensors are streamed from
the source in fixed-size chunks without being decoded. ``durable=True`` also fsyncs every
file and directory before the rename (off by default, as in TensorFlow's own savers: the
publication is atomic either way, durability across power loss costs ~0.4 s per GiB here).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, BinaryIO

from .. import dtypes
from ..errors import (
    CkptMigrateError,
    InterruptedAfterWriting,
    InterruptedLeavingChanges,
    OutputError,
    first_line,
)
from ..fs import (
    clean_stale_staging,
    discard_staging,
    identity,
    make_staging_dir,
    publish_dir,
    published,
    refuse_existing,
)
from . import crc, tensor_codec
from .bundle_proto import (
    BIG_ENDIAN,
    LITTLE_ENDIAN,
    BundleEntry,
    BundleHeader,
    TensorSlice,
    encode_entry,
    encode_header,
)
from .bundle_reader import HEADER_KEY, BundleReader
from .checkpoint_state import STATE_FILENAME, render_state
from .locate import AnyPath, data_path, index_path, unreachable_output
from .remote import RemotePath, as_path, remove_objects
from .table import TableWriter

if TYPE_CHECKING:
    import numpy as np


PARTS_DIR = ".shard-parts"
"""Where shards written by other processes are staged until complete (hidden)."""


def _key_bytes(key: str) -> bytes:
    return key.encode("utf-8", "surrogateescape")


def _cut_short(
    e: BaseException, destination: RemotePath, left: list[RemotePath], replaced: bool
) -> BaseException:
    """What to raise when an upload stopped: ``e`` itself, when its clean-up left the
    destination as the user expects (empty; "nothing was written" after an interrupt),
    else an error or interrupt saying what is there."""
    old = "; its old contents had been deleted to replace them" if replaced else ""
    if left:
        names = ", ".join(o.name for o in left)
        what = f"these objects could not be deleted: {names}{old}; delete them, the index first"
    else:
        what = f"what had been uploaded was deleted{old}"
    if isinstance(e, KeyboardInterrupt):
        if isinstance(e, InterruptedAfterWriting) or not (left or replaced):
            return e
        return InterruptedLeavingChanges(destination, f"the upload was cut short; {what}")
    if not isinstance(e, Exception):
        return e
    return OutputError(
        f"the upload failed ({first_line(e)}); {what}",
        path=str(destination),
        hint="check the network, the credentials and the endpoint, then run it again.",
    )


class TensorSink:
    """What adds tensors to data shards and records their index entries: the
    :class:`BundleWriter` of a whole checkpoint, or a :class:`ShardWriter` writing one of
    its shards in another process."""

    output_dir: AnyPath
    big_endian: bool
    _sizes: list[int]
    _entries: dict[str, BundleEntry]
    _linked: set[int]
    _done: bool

    def _shard_file(self, shard: int) -> BinaryIO:
        raise NotImplementedError

    def _claim(self, key: str) -> None:
        if self._done:
            raise RuntimeError("the writer is already committed or aborted")
        if key == HEADER_KEY or key in self._entries:
            raise ValueError(f"duplicate or reserved checkpoint key {key!r}")

    def _append(self, shard: int, data: bytes | bytearray | memoryview) -> None:
        try:
            self._shard_file(shard).write(data)
        except OSError as e:
            raise OutputError.from_os_error(e, self.output_dir) from e

    def add_array(
        self,
        key: str,
        array: np.ndarray,
        dtype: dtypes.DType | None = None,
        shard: int = 0,
    ) -> None:
        """Add a tensor from its value; ``dtype`` defaults to the array's."""
        import numpy as np

        self._claim(key)
        array = np.asarray(array)
        dtype = dtype or dtypes.from_numpy(array.dtype)
        offset = self._sizes[shard]
        if dtype.itemsize is not None:
            data = np.ascontiguousarray(array, dtype=dtypes.numpy_dtype(dtype))
            if self.big_endian != tensor_codec.NATIVE_IS_BIG:
                data = data.copy()
                tensor_codec.swap_bytes_inplace(data)
            view = (
                memoryview(data.reshape(-1).view(np.uint8).data) if data.size else memoryview(b"")
            )
            checksum = crc.value(view)
            self._append(shard, view)
            size = view.nbytes
        else:
            elements = [e if isinstance(e, bytes) else str(e).encode() for e in array.reshape(-1)]
            if dtype.is_variant:
                payload, checksum = tensor_codec.encode_variants(elements)
            else:
                payload, checksum = tensor_codec.encode_strings(elements, self.big_endian)
            self._append(shard, payload)
            size = len(payload)
        self._sizes[shard] += size
        self._entries[key] = BundleEntry(
            dtype.enum, tuple(array.shape), shard, offset, size, crc.mask(checksum)
        )

    def add_stored(
        self,
        key: str,
        source: BundleReader,
        source_key: str | None = None,
        shard: int | None = None,
        verify: bool = True,
    ) -> None:
        """Copy a tensor's stored bytes from ``source`` unchanged (never decoded).
        ``verify=False`` is for callers that check the CRC32C themselves."""
        self._claim(key)
        entry = source.entries[source_key or key]
        if entry.slices:
            raise ValueError("copy slices one by one and register them with add_partitioned")
        if source.big_endian != self.big_endian:
            raise ValueError("raw copies need the source's byte order")
        shard = entry.shard_id if shard is None else shard
        offset = self._sizes[shard]
        try:
            source.copy_stored_to_fd(
                source_key or key, self._shard_file(shard).fileno(), verify=verify
            )
        except OSError as e:
            raise OutputError.from_os_error(e, self.output_dir) from e
        self._sizes[shard] += entry.size
        self._entries[key] = BundleEntry(
            entry.dtype, entry.shape, shard, offset, entry.size, entry.crc32c
        )

    def add_stored_bytes(
        self, key: str, entry: BundleEntry, data: bytes | bytearray, shard: int
    ) -> None:
        """Add a tensor from its stored bytes as read (and checked) from a source whose
        index entry is ``entry``: the bytes are written unchanged, with its checksum."""
        self._claim(key)
        if len(data) != entry.size or entry.slices:
            raise ValueError(f"{key}: {len(data)} stored bytes for an entry of {entry.size}")
        offset = self._sizes[shard]
        self._append(shard, data)
        self._sizes[shard] += entry.size
        self._entries[key] = BundleEntry(
            entry.dtype, entry.shape, shard, offset, entry.size, entry.crc32c
        )

    def add_linked(self, key: str, entry: BundleEntry) -> None:
        """Register a tensor already in a linked shard, at its recorded offset."""
        self._claim(key)
        if entry.shard_id not in self._linked:
            raise ValueError(f"shard {entry.shard_id} is not linked")
        self._entries[key] = entry

    def add_partitioned(
        self, key: str, dtype: dtypes.DType, shape: tuple[int, ...], slices: tuple[TensorSlice, ...]
    ) -> None:
        """Register the full-tensor entry of a partitioned variable (its slices hold data)."""
        self._claim(key)
        self._entries[key] = BundleEntry(dtype.enum, shape, 0, 0, 0, 0, slices)


class BundleWriter(TensorSink):
    """Stage a checkpoint ``<output_dir>/<prefix_name>.*`` and publish it on commit.

    ``output_dir`` may be a URL (``s3://bucket/run``): the checkpoint is then staged in a
    local temporary directory and uploaded on commit, data shards first and the index after
    them (see ``_upload``)."""

    def __init__(
        self,
        output_dir: str | Path | RemotePath,
        prefix_name: str = "ckpt",
        *,
        num_shards: int = 1,
        big_endian: bool = tensor_codec.NATIVE_IS_BIG,
        overwrite: bool = False,
        durable: bool = False,
    ) -> None:
        destination = as_path(output_dir)
        self.output_dir: AnyPath = (
            destination if isinstance(destination, RemotePath) else destination.absolute()
        )
        self.prefix_name = prefix_name
        self.num_shards = num_shards
        self.big_endian = big_endian
        # An upload is durable once the store acknowledges it: fsyncing the staging is moot.
        self.durable = durable and not self.is_remote
        self._overwrite = overwrite
        self._check_destination()
        try:
            if isinstance(self.output_dir, RemotePath):
                self._staging = Path(tempfile.mkdtemp(prefix="ckptmigrate-upload-"))
            else:
                self._staging = make_staging_dir(self.output_dir)
            self._staging_id = identity(self._staging)
        except OSError as e:
            raise OutputError.from_os_error(e, self.output_dir) from e
        self._files: dict[int, BinaryIO] = {}
        self._sizes = [0] * num_shards
        self._entries: dict[str, BundleEntry] = {}
        self._linked: set[int] = set()
        self._elsewhere: set[int] = set()  # shards other processes wrote (add_written_shard)
        # Remote shards carried over to a remote output on the same store: copied by the
        # server at upload time instead of going through this machine.
        self._server_copies: dict[int, RemotePath] = {}
        self._uploaded = False  # every object of a remote output is up
        self._done = False

    @property
    def is_remote(self) -> bool:
        return isinstance(self.output_dir, RemotePath)

    def _check_destination(self) -> None:
        try:
            self._check_destination_exists()
        except CkptMigrateError:
            raise
        except Exception as e:  # a store's client raises its own types (no credentials, ...)
            if not isinstance(self.output_dir, RemotePath):
                raise
            raise unreachable_output(e, self.output_dir) from e

    def _check_destination_exists(self) -> None:
        if isinstance(self.output_dir, Path):  # an output a killed run was replacing is back
            clean_stale_staging(self.output_dir)
        refuse_existing(self.output_dir, self._overwrite)
        if self.output_dir.exists() and not self.output_dir.is_dir():
            raise OutputError("the output exists and is not a directory", path=str(self.output_dir))

    @property
    def staging_prefix(self) -> Path:
        return self._staging / self.prefix_name

    @property
    def final_prefix(self) -> AnyPath:
        return self.output_dir / self.prefix_name

    def _shard_file(self, shard: int) -> BinaryIO:
        if not 0 <= shard < self.num_shards:
            raise ValueError(f"shard {shard} out of range for {self.num_shards} shards")
        if shard in self._linked or shard in self._elsewhere:
            raise ValueError(f"shard {shard} is linked or written elsewhere; write to another")
        f = self._files.get(shard)
        if f is None:
            path = data_path(self.staging_prefix, shard, self.num_shards)
            f = path.open("wb", buffering=0)
            self._files[shard] = f
        return f

    def link_shard(self, shard: int, source_file: AnyPath, *, allow_links: bool = True) -> str:
        """Make output shard ``shard`` the source data file itself, without copying bytes:
        a reflink (copy-on-write clone) where the filesystem can, else a hard link (the
        output then shares the source's inode; checkpoint files are never rewritten in
        place), else a copy; ``allow_links=False`` always copies (the kernel copies the
        whole file). A remote source is copied by the store itself when the output is on
        the same store, else downloaded. Returns which was used. Entries are added with
        add_linked."""
        if shard in self._files or shard in self._linked:
            raise ValueError(f"shard {shard} already has data")
        target = data_path(self.staging_prefix, shard, self.num_shards)
        if isinstance(source_file, RemotePath):
            return self._link_remote(shard, source_file, target)
        try:
            method = _clone(source_file, target, allow_links)
            self._sizes[shard] = target.stat().st_size
            if self.durable and method != "hard link":  # a link shares synced source blocks
                with target.open("rb+") as copied:
                    self._sync(copied)
        except OSError as e:
            raise OutputError.from_os_error(e, self.output_dir) from e
        self._linked.add(shard)
        return method

    def _link_remote(self, shard: int, source_file: RemotePath, target: Path) -> str:
        try:
            if isinstance(self.output_dir, RemotePath) and self.output_dir.same_filesystem(
                source_file
            ):
                self._sizes[shard] = source_file.stat().st_size
                self._server_copies[shard] = source_file
                method = "server-side copy"
            else:
                self._sizes[shard] = source_file.download(target)
                method = "download"
        except OSError as e:
            raise OutputError.from_os_error(e, self.output_dir) from e
        self._linked.add(shard)
        return method

    def parts_dir(self) -> Path:
        """The staging's directory for shards other processes write (:class:`ShardWriter`),
        each under a name of its own until it is complete; removed before the commit, so a
        part left by a killed writer is never published."""
        path = self._staging / PARTS_DIR
        try:
            path.mkdir(exist_ok=True)
        except OSError as e:
            raise OutputError.from_os_error(e, self.output_dir) from e
        return path

    def add_written_shard(self, shard: int, entries: Mapping[str, BundleEntry]) -> None:
        """Register data shard ``shard`` as written whole by a :class:`ShardWriter`, with
        the index entries it returned (tensors in ``shard``, in linked shards, and the
        data-less entries of partitioned variables)."""
        if shard in self._files or shard in self._linked or shard in self._elsewhere:
            raise ValueError(f"shard {shard} already has data")
        if not data_path(self.staging_prefix, shard, self.num_shards).is_file():
            raise ValueError(f"shard {shard} was not written")
        for key, entry in entries.items():
            if not (entry.slices or entry.shard_id == shard or entry.shard_id in self._linked):
                raise ValueError(f"{key}: an entry of shard {entry.shard_id}, not {shard}")
            self._claim(key)
            self._entries[key] = entry
        self._elsewhere.add(shard)

    def add_file(self, name: str, data: bytes) -> None:
        """Stage an extra file beside the checkpoint (e.g. a provenance record)."""
        if "/" in name or name.startswith(".") or name == STATE_FILENAME:
            raise ValueError(f"bad extra file name {name!r}")
        try:
            with (self._staging / name).open("wb") as f:
                f.write(data)
                self._sync(f)
        except OSError as e:
            raise OutputError.from_os_error(e, self.output_dir) from e

    def _write_index(self) -> None:
        header = BundleHeader(
            num_shards=self.num_shards, endianness=BIG_ENDIAN if self.big_endian else LITTLE_ENDIAN
        )
        path = index_path(self.staging_prefix)
        with path.open("wb") as f:
            table = TableWriter(f)
            table.add(_key_bytes(HEADER_KEY), encode_header(header))
            for key in sorted(self._entries, key=_key_bytes):
                table.add(_key_bytes(key), encode_entry(self._entries[key]))
            table.finish()
            self._sync(f)

    def _sync(self, f: IO[Any]) -> None:
        if self.durable:
            f.flush()
            os.fsync(f.fileno())

    def commit(self) -> AnyPath:
        """Finish every file and move the checkpoint into place; returns its prefix."""
        if self._done:
            raise RuntimeError("the writer is already committed or aborted")
        try:
            shutil.rmtree(self._staging / PARTS_DIR, ignore_errors=True)
            for shard in range(self.num_shards):
                if shard in self._linked or shard in self._elsewhere:
                    continue
                f = self._shard_file(shard)  # creates empty shards too: readers expect them
                self._sync(f)
                f.close()
            self._write_index()
            with (self._staging / STATE_FILENAME).open("w", encoding="utf-8") as state:
                state.write(render_state(self.prefix_name))
                self._sync(state)
            self._publish()
        except OSError as e:
            self.abort()
            raise OutputError.from_os_error(e, self.output_dir) from e
        except KeyboardInterrupt as e:
            self.abort()
            if isinstance(e, InterruptedAfterWriting) or not self._published():
                raise
            # The output is in place: say so rather than "nothing was written".
            raise InterruptedAfterWriting(self.final_prefix, "the clean-up") from None
        except BaseException:
            self.abort()
            raise
        self._done = True
        return self.final_prefix

    def _published(self) -> bool:
        if isinstance(self.output_dir, RemotePath):
            return self._uploaded
        return published(self._staging_id, self.output_dir)

    def _publish(self) -> None:
        if isinstance(self.output_dir, RemotePath):
            self._upload(self.output_dir)
            shutil.rmtree(self._staging, ignore_errors=True)
            return
        publish_dir(self._staging, self.output_dir, overwrite=self._overwrite, durable=self.durable)

    def _upload(self, destination: RemotePath) -> None:
        """Publish to a store without renames. Each object appears whole or not at all (a
        PUT, or a multipart upload, completes atomically), so the order is what matters:
        the data shards, then the index (TensorFlow sees no checkpoint without it, so no
        reader can find one with shards missing), then the `checkpoint` state file and the
        extra files. An existing output (with ``overwrite``) is deleted first, its index
        first, once the new checkpoint is complete in the staging. If anything fails or is
        interrupted, every object whose upload had started is deleted again, index first
        (an interrupted request is cancelled and waited for, unfinished multipart uploads
        are aborted, and the store is checked until nothing comes back), so the destination
        is left empty, or the error names what could not be deleted."""
        replacing = destination.exists()
        if replacing:
            self._check_destination()
            try:
                destination.delete_contents()
            except KeyboardInterrupt:
                raise InterruptedLeavingChanges(
                    destination,
                    "its old contents were being deleted to replace them, "
                    "index first; the new checkpoint was not uploaded",
                ) from None
        steps: list[tuple[RemotePath, Path | RemotePath]] = []
        for shard in range(self.num_shards):
            local = data_path(self.staging_prefix, shard, self.num_shards)
            steps.append((destination / local.name, self._server_copies.get(shard, local)))
        index = index_path(self.staging_prefix)
        state = self._staging / STATE_FILENAME
        extras = sorted(set(self._staging.iterdir()) - {*(s for _, s in steps), index, state})
        steps += [(destination / local.name, local) for local in (index, state, *extras)]
        started: list[RemotePath] = []
        try:
            for remote, source in steps:
                started.append(remote)  # before the request: cleanup covers one in flight
                if isinstance(source, RemotePath):
                    remote.copy_from(source)
                else:
                    remote.upload(source)
            self._uploaded = True
        except BaseException as e:
            self._uploaded = False
            left = remove_objects(started[::-1])  # the index first: it makes a checkpoint
            raise _cut_short(e, destination, left, replacing) from e

    def abort(self) -> None:
        """Discard everything staged; the destination is left as it was."""
        for f in self._files.values():
            f.close()
        self._files.clear()
        discard_staging(self._staging)
        self._done = True

    def __enter__(self) -> BundleWriter:
        return self

    def __exit__(self, *_: object) -> None:
        if not self._done:
            self.abort()


class ShardWriter(TensorSink):
    """Write one data shard of a checkpoint a :class:`BundleWriter` stages elsewhere (in
    another process, on another machine sharing its staging directory): the tensors go to
    a part file of this writer's own in the staging's ``parts_dir``, renamed to the shard's
    name by ``finish``, so a writer killed midway leaves only a part nobody publishes, and
    a retry writes the shard whole again. ``finish`` returns the index entries, which the
    coordinating BundleWriter registers with ``add_written_shard``."""

    def __init__(
        self,
        staging_prefix: Path,
        shard: int,
        num_shards: int,
        *,
        linked: frozenset[int] = frozenset(),
        big_endian: bool = tensor_codec.NATIVE_IS_BIG,
        durable: bool = False,
    ) -> None:
        self.output_dir = staging_prefix.parent
        self.big_endian = big_endian
        self.shard = shard
        self._final = data_path(staging_prefix, shard, num_shards)
        self._part = self.output_dir / PARTS_DIR / f"{shard}-{os.getpid()}-{uuid.uuid4().hex}"
        self._durable = durable
        self._sizes = [0] * num_shards
        self._entries = {}
        self._linked = set(linked)
        self._done = False
        try:
            self._file: BinaryIO = self._part.open("xb", buffering=0)
        except OSError as e:
            raise OutputError.from_os_error(e, self.output_dir) from e

    def _shard_file(self, shard: int) -> BinaryIO:
        if shard != self.shard:
            raise ValueError(f"this writer writes shard {self.shard}, not {shard}")
        return self._file

    def finish(self) -> dict[str, BundleEntry]:
        """Complete the shard under its name; returns its index entries."""
        try:
            if self._durable:
                os.fsync(self._file.fileno())
            self._file.close()
            os.replace(self._part, self._final)
        except OSError as e:
            self.abort()
            raise OutputError.from_os_error(e, self.output_dir) from e
        self._done = True
        return self._entries

    def abort(self) -> None:
        """Remove the part written so far."""
        self._file.close()
        self._part.unlink(missing_ok=True)
        self._done = True

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *_: object) -> None:
        if not self._done:
            self.abort()


_FICLONE = 0x40049409  # linux/fs.h: _IOW(0x94, 9, int)


def _clone(source: Path, target: Path, allow_links: bool) -> str:
    import fcntl

    if allow_links:
        with source.open("rb") as src, target.open("wb") as dst:
            try:
                fcntl.ioctl(dst.fileno(), _FICLONE, src.fileno())
                return "reflink"
            except OSError:
                pass
        target.unlink()
        try:
            os.link(source, target)
            return "hard link"
        except OSError:
            pass
    shutil.copyfile(source, target)  # kernel-side copy (copy_file_range/sendfile) on Linux
    return "copy"
