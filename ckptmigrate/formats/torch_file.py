"""PyTorch ``torch.save`` files read without torch: the zip archive torch writes since 1.6
(``.pt``, ``.pth``, ``.bin`` such as ``pytorch_model.bin``) holding a ``state_dict``.

The archive has one folder: ``data.pkl`` (a pickle of the dict), ``data/<key>`` (each
storage's raw bytes, stored uncompressed), ``byteorder`` (``little`` or ``big``; absent in
files older than torch 1.10, which were little-endian) and version records. A pickle runs
code when it is loaded, so it is read by a restricted unpickler that admits only what
``torch.load(weights_only=True)`` admits for a state_dict and builds no torch object:

- ``collections.OrderedDict`` (the dict itself, and each tensor's empty hook dict);
- ``torch._utils._rebuild_tensor_v2`` / ``_rebuild_tensor_v3`` / ``_rebuild_parameter``,
  which here only record (storage, offset, size, stride, dtype);
- the storage types (``torch.FloatStorage`` ..., ``torch.storage.UntypedStorage``) and
  dtypes (``torch.uint16`` ...) as markers, and storages by reference (``persistent_load``
  of ``("storage", type, key, location, numel)``, the entry ``data/<key>``).

Every other global is refused by name before it is resolved. Each tensor is checked
against its storage (offset, sizes and strides in bounds, the entry's size equal to the
storage's) and read with one positioned read of the span it covers, strided views
included; a view that repeats elements beyond its storage's size is refused.
"""

from __future__ import annotations

import contextlib
import functools
import io
import math
import os
import pickle
import struct
import threading
import zipfile
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from .. import dtypes
from ..errors import CheckpointNotFoundError, CorruptCheckpointError, UnsupportedCheckpointError
from .bundle_reader import TensorInfo
from .locate import ZIP_SIGNATURE
from .remote import (
    RemotePath,
    called_in_order,
    fetched_in_order,
    read_buffer,
    remote_concurrency,
    store_errors,
)

if TYPE_CHECKING:
    import numpy as np

__all__ = ["TorchReader", "TorchWriter", "torch_dtype_supported"]

MAX_PICKLE = 256 * 1024 * 1024  # data.pkl of a 100,000-tensor state_dict is ~10 MB
MAX_RANK = 64
_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")  # the zip local file header, 30 bytes

_REFUSE_HINT = (
    "only a state_dict of tensors is read (what torch.load(weights_only=True) loads): "
    "save model.state_dict() with torch.save, or convert the file to safetensors."
)

# The legacy storage classes torch pickles (torch.FloatStorage ...) and their dtype.
_STORAGE_DTYPES = {
    "FloatStorage": "float32",
    "DoubleStorage": "float64",
    "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
    "ComplexFloatStorage": "complex64",
    "ComplexDoubleStorage": "complex128",
}
# torch dtypes pickled by name (torch.uint16) for _rebuild_tensor_v3; ours by the same name.
_TORCH_DTYPES = frozenset(
    {
        *_STORAGE_DTYPES.values(),
        "uint16",
        "uint32",
        "uint64",
        "float8_e5m2",
        "float8_e4m3fn",
        "float8_e5m2fnuz",
        "float8_e4m3fnuz",
    }
)


# The pickle opcodes a state_dict is written with (protocol 2, torch's default, and the
# framing and short forms of protocols 4 and 5 that torch.save(pickle_protocol=...) uses).
# Checked before unpickling: the 8-byte-length opcodes (BINUNICODE8, BYTEARRAY8, ...) and
# LONG4 would have the unpickler allocate whatever a damaged length says.
_OPCODES = frozenset(
    {
        "PROTO",
        "FRAME",
        "STOP",
        "MARK",
        "GLOBAL",
        "STACK_GLOBAL",
        "BINPUT",
        "LONG_BINPUT",
        "MEMOIZE",
        "BINGET",
        "LONG_BINGET",
        "EMPTY_TUPLE",
        "TUPLE",
        "TUPLE1",
        "TUPLE2",
        "TUPLE3",
        "EMPTY_DICT",
        "EMPTY_LIST",
        "SETITEM",
        "SETITEMS",
        "APPEND",
        "APPENDS",
        "REDUCE",
        "BUILD",
        "BINPERSID",
        "BININT",
        "BININT1",
        "BININT2",
        "LONG1",
        "NEWTRUE",
        "NEWFALSE",
        "NONE",
        "BINFLOAT",
        "BINUNICODE",
        "SHORT_BINUNICODE",
        "SHORT_BINSTRING",
    }
)


class _Refused(Exception):
    """Something the restricted unpickler will not build (message for the user)."""


@dataclass(frozen=True, slots=True)
class _StorageType:
    dtype: dtypes.DType | None  # None: torch.storage.UntypedStorage (bytes)
    name: str

    def __setstate__(self, state: object) -> None:
        raise _Refused(f"the pickle sets state on {self.name}")


@dataclass(frozen=True, slots=True)
class _DType:
    dtype: dtypes.DType

    def __setstate__(self, state: object) -> None:
        raise _Refused("the pickle sets state on a dtype")


@dataclass(frozen=True, slots=True)
class _Storage:
    key: str
    dtype: dtypes.DType | None
    numel: int  # elements of dtype, or bytes for an untyped storage

    def __setstate__(self, state: object) -> None:
        raise _Refused("the pickle sets state on a storage")


@dataclass(frozen=True, slots=True)
class _TensorRef:
    storage: Any
    offset: Any
    size: Any
    stride: Any
    dtype: Any  # a _DType for _rebuild_tensor_v3, else None (the storage's own)
    extra: tuple[Any, ...]  # requires_grad, backward_hooks, metadata

    def __setstate__(self, state: object) -> None:
        raise _Refused("the pickle sets state on a tensor (a tensor subclass?)")


def _rebuild_tensor_v2(storage: Any, offset: Any, size: Any, stride: Any, *rest: Any) -> _TensorRef:
    return _TensorRef(storage, offset, size, stride, None, rest)


def _rebuild_tensor_v3(*args: Any) -> _TensorRef:
    # (storage, offset, size, stride, requires_grad, hooks, dtype, metadata=None)
    if not 7 <= len(args) <= 8:
        raise _Refused(f"_rebuild_tensor_v3 called with {len(args)} arguments")
    storage, offset, size, stride, grad, hooks, dtype, *rest = args
    return _TensorRef(storage, offset, size, stride, dtype, (grad, hooks, *rest))


def _rebuild_parameter(data: Any, requires_grad: Any, hooks: Any) -> Any:
    if not isinstance(data, _TensorRef) or not isinstance(requires_grad, bool):
        raise _Refused("a Parameter that does not wrap a plain tensor")
    return data


def _allowed(module: str, name: str) -> Any:
    """What the restricted unpickler resolves ``module.name`` to, or None (refused)."""
    if (module, name) == ("collections", "OrderedDict"):
        return OrderedDict
    if module == "torch._utils":
        return {
            "_rebuild_tensor_v2": _rebuild_tensor_v2,
            "_rebuild_tensor_v3": _rebuild_tensor_v3,
            "_rebuild_parameter": _rebuild_parameter,
        }.get(name)
    if module == "torch" and name in _STORAGE_DTYPES:
        return _StorageType(dtypes.BY_NAME[_STORAGE_DTYPES[name]], f"torch.{name}")
    if module == "torch" and name in _TORCH_DTYPES:
        return _DType(dtypes.BY_NAME[name])
    if (module, name) in (("torch.storage", "UntypedStorage"), ("torch", "UntypedStorage")):
        return _StorageType(None, "torch.storage.UntypedStorage")
    return None


class _Unpickler(pickle.Unpickler):
    def __init__(self, data: bytes | bytearray, entries: dict[str, int]) -> None:
        super().__init__(io.BytesIO(data))
        self._entries = entries  # storage key -> its entry's size in bytes
        self._seen: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str) -> Any:
        found = _allowed(module, name)
        if found is None:
            raise _Refused(
                f"the pickle refers to {module}.{name}, which is not part of a state_dict"
            )
        return found

    def persistent_load(self, pid: Any) -> Any:
        if not (
            isinstance(pid, tuple)
            and len(pid) == 5
            and pid[0] == "storage"
            and isinstance(pid[1], _StorageType)
            and isinstance(pid[2], str)
            and isinstance(pid[3], str)
            and type(pid[4]) is int
            and pid[4] >= 0
        ):
            raise _Refused(f"a persistent reference that is not a storage: {_short(pid)}")
        _, kind, key, _location, numel = pid
        size = self._entries.get(key)
        if size is None:
            raise _Refused(f"the pickle refers to storage {key!r}, which has no data/{key} entry")
        itemsize = 1 if kind.dtype is None else kind.dtype.itemsize
        assert itemsize is not None
        if numel * itemsize != size:
            raise _Refused(
                f"storage {key!r} is {numel} {kind.name} elements ({numel * itemsize} bytes), "
                f"but its entry data/{key} holds {size} bytes"
            )
        storage = _Storage(key, kind.dtype, numel)
        earlier = self._seen.setdefault(key, storage)
        if earlier != storage:
            raise _Refused(f"storage {key!r} is referred to as two different types")
        return storage


def _check_opcodes(data: bytes | bytearray) -> None:
    """Every opcode is one a state_dict is written with, and the stream is well formed
    (lengths within the data) before anything is built."""
    import pickletools

    for count, (opcode, arg, position) in enumerate(pickletools.genops(data)):
        if opcode.name not in _OPCODES:
            raise _Refused(f"the pickle uses opcode {opcode.name} (at byte {position})")
        # The unpickler sizes its memo table by the largest index it is given: a 1 KB file
        # putting one value at index 120,000,000 took 1.9 GB. A pickle memoizes at most one
        # value per opcode, so no real index is larger than the opcodes before it.
        if opcode.name in _MEMO_OPCODES and not (isinstance(arg, int) and 0 <= arg <= count):
            raise _Refused(
                f"the pickle uses memo index {arg} at byte {position}, after only {count} opcodes"
            )


_MEMO_OPCODES = frozenset({"BINPUT", "LONG_BINPUT", "BINGET", "LONG_BINGET"})


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


@dataclass(frozen=True)
class _Tensor:
    """A tensor as checked: where its elements are, in its storage's entry."""

    dtype: dtypes.DType
    shape: tuple[int, ...]
    strides: tuple[int, ...]  # in elements
    entry: str  # the storage's key
    offset: int  # in elements
    span: int  # elements from offset to the last one read, plus one (0 if empty)

    @property
    def contiguous(self) -> bool:
        expected = 1
        for size, stride in zip(reversed(self.shape), reversed(self.strides), strict=True):
            if size != 1 and stride != expected:
                return False
            expected *= size
        return True


def _type_name(value: Any) -> str:
    if isinstance(value, dict):
        return "a dict"
    return f"a {type(value).__name__}"


def _check_tensor(ref: _TensorRef) -> _Tensor:
    """The tensor ``ref`` describes, or _Refused saying why not."""
    storage, offset, size, stride = ref.storage, ref.offset, ref.size, ref.stride
    if not isinstance(storage, _Storage):
        raise _Refused(f"a tensor whose storage is {_type_name(storage)}")
    if ref.dtype is None:
        if storage.dtype is None:
            raise _Refused("a tensor of an untyped storage without a dtype")
        dtype, numel = storage.dtype, storage.numel
    else:
        if not isinstance(ref.dtype, _DType):
            raise _Refused(f"a tensor whose dtype is {_type_name(ref.dtype)}")
        dtype = ref.dtype.dtype
        itemsize = dtype.itemsize
        assert itemsize is not None
        have = storage.numel * (1 if storage.dtype is None else storage.dtype.itemsize or 1)
        if storage.dtype not in (None, dtype) or have % itemsize:
            raise _Refused(f"a {dtype.name} tensor viewing storage {storage.key!r} of another type")
        numel = have // itemsize
    extra = ref.extra
    if not extra or not isinstance(extra[0], bool):
        raise _Refused("a tensor without its requires_grad flag")
    if len(extra) > 1 and not (isinstance(extra[1], dict) and not extra[1]):
        raise _Refused("a tensor with backward hooks")
    if len(extra) > 2 and extra[2] not in (None, {}):
        raise _Refused(f"a tensor with metadata {_short(extra[2])} (a tensor subclass?)")
    if len(extra) > 3:
        raise _Refused("a tensor rebuilt with more arguments than torch passes")
    if not (
        isinstance(size, tuple)
        and isinstance(stride, tuple)
        and len(size) == len(stride) <= MAX_RANK
        and all(type(d) is int and d >= 0 for d in (*size, *stride))
        and type(offset) is int
        and offset >= 0
    ):
        raise _Refused(
            f"a tensor with size {_short(size)}, stride {_short(stride)} and offset "
            f"{_short(offset)}: sizes, strides and the offset must be non-negative integers"
        )
    elements = math.prod(size)
    span = 0 if elements == 0 else 1 + sum((d - 1) * s for d, s in zip(size, stride, strict=True))
    if elements and offset + span > numel:
        raise _Refused(
            f"a tensor of size {list(size)}, stride {list(stride)} at offset {offset} reaches "
            f"element {offset + span - 1} of storage {storage.key!r}, which has {numel}"
        )
    if elements > max(numel, 1):
        raise _Refused(
            f"a view of size {list(size)} with stride {list(stride)} repeats the {numel} "
            f"elements of its storage {storage.key!r} ({elements} elements); save "
            "tensor.contiguous() instead"
        )
    return _Tensor(dtype, tuple(size), tuple(stride), storage.key, offset, span)


class TorchReader:
    """A ``torch.save`` zip of a state_dict as a checkpoint source (``TensorSource``). The
    zip's CRC-32 of each storage is what ``verify`` checks."""

    format = "torch"
    big_endian = False  # read() returns native values whatever the file's byte order
    num_shards = 1

    def __init__(self, path: Path | RemotePath) -> None:
        self.path = path
        self._fd: int | None = None
        self._opening = threading.Lock()
        self._tensors: dict[str, _Tensor] = {}
        self._entries: dict[str, tuple[int, int, int]] = {}  # key -> (start, size, crc)
        self.file_big_endian = False
        self._read_archive()

    @property
    def prefix(self) -> Path | RemotePath:
        return self.path

    @property
    def is_remote(self) -> bool:
        return isinstance(self.path, RemotePath)

    def _error(self, message: str, variable: str | None = None, hint: str | None = None) -> Any:
        return CorruptCheckpointError(message, path=str(self.path), variable=variable, hint=hint)

    def _read_archive(self) -> None:
        try:
            with self._archive() as (archive, raw, size):
                folder, pickled = self._layout(archive)
                records = {i.filename: i for i in archive.infolist()}
                order = records.get(f"{folder}/byteorder")
                if order is not None:
                    # A few bytes, whatever the directory declares: zipfile reserves what it
                    # is asked for (up to 1 GiB a read) before reading, so a 643-byte file
                    # whose record declared 2 GiB took 1 GiB of address space to refuse.
                    with archive.open(order) as record:
                        text = record.read(len(b"little") + 1)
                    if text not in (b"little", b"big"):
                        raise self._error(f"the byteorder record says {text!r}, not little or big")
                    self.file_big_endian = text == b"big"
                data_prefix = f"{folder}/data/"
                entry_sizes = {}
                for name, info in records.items():
                    if name.startswith(data_prefix) and not name.endswith("/"):
                        key = name[len(data_prefix) :]
                        self._entries[key] = (self._data_start(raw, info, size), *self._crc(info))
                        entry_sizes[key] = info.file_size
                with archive.open(pickled) as f:
                    # In bounded reads, for the same reason as the byteorder record: one
                    # read of MAX_PICKLE + 1 reserved 256 MiB for a file declaring that.
                    data = bytearray()
                    while len(data) <= MAX_PICKLE and (
                        chunk := f.read(min(1 << 20, MAX_PICKLE + 1 - len(data)))
                    ):
                        data += chunk
        except FileNotFoundError:
            raise CheckpointNotFoundError("no such file", path=str(self.path)) from None
        # zipfile's errors for a damaged archive are of many kinds (names that are not
        # UTF-8, unsupported flags, truncated headers).
        except (
            OSError,
            zipfile.BadZipFile,
            zlib.error,
            EOFError,
            ValueError,
            NotImplementedError,
            RuntimeError,
        ) as e:
            raise self._error(
                f"cannot read it as a torch.save zip archive: {e}",
                hint="is the copy complete?",
            ) from None
        if len(data) > MAX_PICKLE:
            raise self._error(f"its data.pkl is larger than {MAX_PICKLE >> 20} MiB")
        self._unpickle(data, entry_sizes)

    @contextlib.contextmanager
    def _archive(self) -> Iterator[tuple[zipfile.ZipFile, Any, int]]:
        """The zip, a file to read its local headers from, and the file's size. On a store
        the zip reads through a buffered file (its directory, data.pkl), in 1 MiB requests."""
        path = self.path
        with store_errors(path):
            size = path.stat().st_size
        if not isinstance(path, RemotePath):
            with path.open("rb") as raw, zipfile.ZipFile(raw) as archive:
                yield archive, raw, size
            return
        with path.open_buffered() as buffered, zipfile.ZipFile(buffered) as archive:
            yield archive, _LocalHeaders(path, archive, size), size

    def _layout(self, archive: zipfile.ZipFile) -> tuple[str, zipfile.ZipInfo]:
        pickles = [i for i in archive.infolist() if i.filename.endswith("/data.pkl")]
        top = [i for i in pickles if i.filename.count("/") == 1]
        names = set(archive.namelist())
        if len(top) != 1:
            raise UnsupportedCheckpointError(
                "this zip archive is not a torch.save file (no single <folder>/data.pkl)",
                path=str(self.path),
                hint="pass a file written by torch.save(model.state_dict(), path).",
            )
        folder = top[0].filename.split("/")[0]
        if f"{folder}/constants.pkl" in names:
            raise UnsupportedCheckpointError(
                "this is a TorchScript archive (torch.jit.save), not a state_dict",
                path=str(self.path),
                hint="save model.state_dict() with torch.save instead.",
            )
        return folder, top[0]

    def _data_start(self, raw: Any, info: zipfile.ZipInfo, size: int) -> int:
        """Where an entry's bytes start in the file (after its local header); torch stores
        storages uncompressed, so they are read in place."""
        name = info.filename
        if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1:
            raise UnsupportedCheckpointError(
                f"the entry {name} is compressed or encrypted; torch.save stores storages "
                "uncompressed, so the archive was rewritten by another tool",
                path=str(self.path),
                hint="save the state_dict again with torch.save.",
            )
        if not 0 <= info.header_offset <= size - _LOCAL_HEADER.size:
            raise self._error(
                f"the archive's directory places {name} at byte {info.header_offset}, outside "
                f"the file ({size} bytes)",
                hint="is the copy complete?",
            )
        raw.seek(info.header_offset)
        header = raw.read(_LOCAL_HEADER.size)
        if len(header) != _LOCAL_HEADER.size or header[:4] != ZIP_SIGNATURE:
            raise self._error(f"the local header of {name} is missing or damaged")
        fields = _LOCAL_HEADER.unpack(header)
        start: int = info.header_offset + _LOCAL_HEADER.size + fields[-2] + fields[-1]
        if start + info.file_size > size:
            raise self._error(
                f"the entry {name} ends at byte {start + info.file_size}, past the end of the "
                f"file ({size} bytes)",
                hint="is the copy complete?",
            )
        return start

    @staticmethod
    def _crc(info: zipfile.ZipInfo) -> tuple[int, int]:
        return info.file_size, info.CRC

    def _unpickle(self, data: bytes | bytearray, entry_sizes: dict[str, int]) -> None:
        try:
            _check_opcodes(data)
            root = _Unpickler(data, entry_sizes).load()
        except _Refused as e:
            raise UnsupportedCheckpointError(
                f"data.pkl is not a plain state_dict: {e}", path=str(self.path), hint=_REFUSE_HINT
            ) from None
        except RecursionError:
            raise self._error("data.pkl nests too deeply to be a state_dict") from None
        except Exception as e:  # a damaged or hostile pickle: any error the unpickler raises
            raise self._error(
                f"data.pkl cannot be unpickled as a state_dict: {type(e).__name__}: {e}",
                hint=_REFUSE_HINT,
            ) from None
        if not isinstance(root, dict):
            raise UnsupportedCheckpointError(
                f"the file holds {_type_name(root)}, not a state_dict",
                path=str(self.path),
                hint=_REFUSE_HINT,
            )
        for key, value in root.items():
            if not isinstance(key, str):
                raise UnsupportedCheckpointError(
                    f"the state_dict has a key {_short(key)} that is not a string",
                    path=str(self.path),
                    hint=_REFUSE_HINT,
                )
            if not isinstance(value, _TensorRef):
                nested = isinstance(value, dict)
                raise UnsupportedCheckpointError(
                    f"the entry is {_type_name(value)}, not a tensor"
                    + (" (a training checkpoint holding a state_dict inside?)" if nested else ""),
                    path=str(self.path),
                    variable=key,
                    hint="save that state_dict on its own: torch.save(checkpoint[key], path)."
                    if nested
                    else _REFUSE_HINT,
                )
            try:
                self._tensors[key] = _check_tensor(value)
            except _Refused as e:
                raise UnsupportedCheckpointError(
                    f"{e}", path=str(self.path), variable=key, hint=_REFUSE_HINT
                ) from None

    def variable_keys(self) -> list[str]:
        return sorted(self._tensors)

    def stored_keys(self) -> list[str]:
        return self.variable_keys()

    def _tensor(self, key: str) -> _Tensor:
        try:
            return self._tensors[key]
        except KeyError:
            raise CheckpointNotFoundError(
                f"no tensor {key!r} in this state_dict", path=str(self.path), variable=key
            ) from None

    def info(self, key: str) -> TensorInfo:
        tensor = self._tensor(key)
        itemsize = tensor.dtype.itemsize
        assert itemsize is not None
        nbytes = math.prod(tensor.shape) * itemsize
        start = self._entries[tensor.entry][0] + tensor.offset * itemsize
        return TensorInfo(key, tensor.dtype, tensor.shape, nbytes, 0, start, None, ())

    def _pread(self, start: int, size: int, key: str) -> bytes:
        if isinstance(self.path, RemotePath):
            with store_errors(self.path, key):
                data = self.path.read_range(start, start + size)
        else:
            data = os.pread(self._local_fd(), size, start)
        if len(data) != size:
            raise self._error(
                f"the file ends inside this tensor ({len(data)} of {size} bytes)", variable=key
            )
        return data

    def _local_fd(self) -> int:
        fd = self._fd
        if fd is None:
            with self._opening:  # values may be read on several threads
                if self._fd is None:
                    assert isinstance(self.path, Path)
                    self._fd = os.open(self.path, os.O_RDONLY)
                fd = self._fd
        return fd

    def read(self, key: str, verify: bool = True) -> np.ndarray:
        """The tensor's values (a strided view gathered into a C-ordered array)."""
        import numpy as np

        tensor = self._tensor(key)
        dtype = dtypes.numpy_dtype(tensor.dtype)
        itemsize = dtype.itemsize
        start = self._entries[tensor.entry][0] + tensor.offset * itemsize
        if tensor.span == 0:
            return np.zeros(tensor.shape, dtype=dtype)
        data = self._pread(start, tensor.span * itemsize, key)
        flat = np.frombuffer(data, dtype=dtype)
        if self.file_big_endian and itemsize > 1:
            flat = flat.byteswap()
        if tensor.contiguous:
            return flat.reshape(tensor.shape).copy()
        strided = np.lib.stride_tricks.as_strided(
            flat, tensor.shape, tuple(s * itemsize for s in tensor.strides), writeable=False
        )
        return np.ascontiguousarray(strided)

    def verify(self, on_tensor: Callable[[int], object] | None = None) -> int:
        """Check each storage's bytes against the CRC-32 the zip records for them."""
        total = 0
        # On a store, each storage's chunks are fetched with the store's concurrency.
        step, concurrency = (
            (read_buffer(), remote_concurrency()) if self.is_remote else (1 << 24, 1)
        )
        for key, (start, size, crc) in sorted(self._entries.items()):
            computed = 0
            ranges = [(at, min(at + step, start + size)) for at in range(start, start + size, step)]
            fetch = functools.partial(_pread_range, self, key)
            for chunk in fetched_in_order(fetch, ranges, concurrency):
                computed = zlib.crc32(chunk, computed)
            if computed != crc:
                raise self._error(
                    f"storage data/{key} does not match the CRC-32 the archive records",
                    hint="the file is damaged; copy it again.",
                )
            total += size
            if on_tensor is not None:
                on_tensor(size)
        return total

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:
        # A plain-int descriptor nothing else closes: a reader dropped unclosed gives it
        # back as a file would (see BundleReader.__del__).
        if self.__dict__.get("_fd") is not None:
            self.close()


class _LocalHeaders:
    """The local header of every entry of a zip on a store, fetched up front with the
    store's concurrency (a buffered file would fetch a whole block per header, one after
    another), read back as a file positioned at one of them."""

    def __init__(self, path: RemotePath, archive: zipfile.ZipFile, size: int) -> None:
        last = size - _LOCAL_HEADER.size  # a header past it is refused before it is read
        offsets = sorted({i.header_offset for i in archive.infolist()})
        offsets = [o for o in offsets if 0 <= o <= last]
        header = _LOCAL_HEADER.size
        calls = [functools.partial(path.read_range, o, o + header) for o in offsets]
        with store_errors(path):
            fetched = list(called_in_order(calls, remote_concurrency()))
        self._headers: dict[int, bytes] = dict(zip(offsets, fetched, strict=True))
        self._path = path
        self._at = 0

    def seek(self, offset: int) -> None:
        self._at = offset

    def read(self, size: int) -> bytes:
        known = self._headers.get(self._at)
        if known is not None and size <= len(known):
            return known[:size]
        with store_errors(self._path):
            return self._path.read_range(self._at, self._at + size)


def _pread_range(reader: TorchReader, key: str, start: int, end: int) -> bytes:
    return reader._pread(start, end - start, key)


# -- writing ---------------------------------------------------------------------------------

# Our dtypes torch has no legacy storage class for: written as torch 2 writes them, an
# untyped (byte) storage and _rebuild_tensor_v3 with the dtype.
_V3_DTYPES = frozenset(_TORCH_DTYPES - set(_STORAGE_DTYPES.values()))
_THEIR_STORAGE = {ours: theirs for theirs, ours in _STORAGE_DTYPES.items()}


def torch_dtype_supported(dtype: str) -> bool:
    """A dtype a ``torch.save`` file can hold (ours by name; strings cannot)."""
    return dtypes.BY_NAME[dtype].name in _TORCH_DTYPES


def _p_str(text: str) -> bytes:
    raw = text.encode("utf-8")
    return b"X" + struct.pack("<I", len(raw)) + raw


def _p_int(value: int) -> bytes:
    if 0 <= value < 2**31:
        return b"J" + struct.pack("<i", value)
    raw = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw  # LONG1: sizes past 2**31 elements


def _p_tuple(items: list[bytes]) -> bytes:
    return b"(" + b"".join(items) + b"t"


def _pickled_state_dict(specs: list[tuple[str, str, tuple[int, ...]]]) -> bytes:
    """data.pkl of an OrderedDict name -> tensor, each on its own storage ``data/<i>``, as
    torch 2's torch.save writes it (protocol 2), for the restricted readers of
    torch.load(weights_only=True) and of this module alike."""
    body = []
    for key, (name, dtype, shape) in enumerate(specs):
        ours = dtypes.BY_NAME[dtype]
        itemsize = ours.itemsize
        assert itemsize is not None
        numel = math.prod(shape)
        v3 = ours.name in _V3_DTYPES
        kind = (
            b"torch.storage\nUntypedStorage\n"
            if v3
            else b"torch\n" + _THEIR_STORAGE[ours.name].encode() + b"\n"
        )
        storage = _p_tuple(
            [
                _p_str("storage"),
                b"c" + kind,
                _p_str(str(key)),
                _p_str("cpu"),
                _p_int(numel * itemsize if v3 else numel),
            ]
        )
        strides, step = [], 1
        for size in reversed(shape):
            strides.append(step)
            step *= size
        arguments = [
            storage + b"Q",  # BINPERSID: the storage by reference
            _p_int(0),
            _p_tuple([_p_int(d) for d in shape]),
            _p_tuple([_p_int(s) for s in reversed(strides)]),
            b"\x89",  # requires_grad False
            b"ccollections\nOrderedDict\n)R",  # no backward hooks
        ]
        if v3:
            arguments.append(b"ctorch\n" + ours.name.encode() + b"\n")
        rebuild = (
            b"ctorch._utils\n_rebuild_tensor_v3\n" if v3 else b"ctorch._utils\n_rebuild_tensor_v2\n"
        )
        body.append(_p_str(name) + rebuild + _p_tuple(arguments) + b"R")
    # SETITEMS in batches, as pickle does (a MARK per batch keeps the stack small).
    batches = b"".join(
        b"(" + b"".join(body[i : i + 1000]) + b"u" for i in range(0, len(body), 1000)
    )
    return b"\x80\x02ccollections\nOrderedDict\n)R" + batches + b"."


class TorchWriter:
    """A ``torch.save`` zip of a state_dict, written as a stream: ``data.pkl`` first (every
    tensor is known from the specs), then each tensor's storage as it comes, in the specs'
    order. ``torch.load(path, weights_only=True)`` loads it (tests/test_torch_output.py)."""

    def __init__(
        self, out: BinaryIO, specs: Sequence[tuple[str, str, tuple[int, ...]]], folder: str
    ) -> None:
        self._specs = list(specs)
        self._next = 0
        self._folder = folder
        self._zip = zipfile.ZipFile(out, "w", zipfile.ZIP_STORED, allowZip64=True)
        self._zip.writestr(f"{folder}/data.pkl", _pickled_state_dict(self._specs))
        self._zip.writestr(f"{folder}/.format_version", "1")
        self._zip.writestr(f"{folder}/byteorder", "little")

    def write(self, name: str, array: np.ndarray) -> None:
        """Append the next tensor's bytes (little-endian, C order)."""
        import numpy as np

        if self._next >= len(self._specs) or self._specs[self._next][0] != name:
            raise ValueError(f"{name!r} is not the next tensor")
        _, dtype, shape = self._specs[self._next]
        data = np.asarray(array, dtype=dtypes.numpy_dtype(dtypes.BY_NAME[dtype]))
        if data.shape != shape:
            raise ValueError(f"{name!r}: shape {data.shape}, planned {shape}")
        if not data.flags.c_contiguous:
            data = data.copy(order="C")
        if data.dtype.byteorder == ">":
            data = data.byteswap()
        with self._zip.open(f"{self._folder}/data/{self._next}", "w", force_zip64=True) as entry:
            entry.write(data.reshape(-1).view(np.uint8).data)
        self._next += 1

    def finish(self) -> None:
        """Check that every planned tensor was written, then the version record and the
        zip's central directory."""
        if self._next != len(self._specs):
            raise ValueError(f"{self._specs[self._next][0]!r} was planned but not written")
        self._zip.writestr(f"{self._folder}/version", "3\n")
        self._zip.close()
