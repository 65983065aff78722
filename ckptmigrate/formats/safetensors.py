"""safetensors files, read and written without the ``safetensors`` package (which the tests
use as the oracle): an 8-byte little-endian header length, a JSON header naming each
tensor's dtype, shape and ``data_offsets`` (from the end of the header), then the bytes,
little-endian and C-ordered, in offset order. Optional ``__metadata__`` maps strings to
strings. A sharded model is several such files and a ``<name>.safetensors.index.json``
whose ``weight_map`` says which file holds each tensor (the Hugging Face convention).

Reading is bounded: the header is at most 100 MB (the format's own limit), offsets must
tile the data exactly, and each tensor is read with one positioned read when asked for (a
ranged request for a file on a store).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import struct
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from .. import dtypes
from ..errors import (
    CorruptCheckpointError,
    OutputError,
    UnsupportedCheckpointError,
)
from .bundle_reader import TensorInfo
from .locate import SAFETENSORS_INDEX_SUFFIX, SAFETENSORS_SUFFIX
from .remote import RemotePath, fetched_in_order, read_buffer, remote_concurrency, store_errors

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "INDEX_SUFFIX",
    "SUFFIX",
    "SafetensorsReader",
    "SafetensorsWriter",
    "TensorSpec",
    "safetensors_dtype",
    "shard_name",
]

SUFFIX = SAFETENSORS_SUFFIX
INDEX_SUFFIX = SAFETENSORS_INDEX_SUFFIX
MAX_HEADER = 100_000_000  # bytes; what the format's reference implementation accepts
_METADATA = "__metadata__"

# safetensors' dtype names and ours. Strings, variants and complex128 have none.
_TO_OURS = {
    "BOOL": "bool",
    "U8": "uint8",
    "I8": "int8",
    "I16": "int16",
    "U16": "uint16",
    "F16": "float16",
    "BF16": "bfloat16",
    "I32": "int32",
    "U32": "uint32",
    "F32": "float32",
    "F64": "float64",
    "I64": "int64",
    "U64": "uint64",
    "F8_E5M2": "float8_e5m2",
    "F8_E4M3": "float8_e4m3fn",
    "C64": "complex64",
}
_TO_THEIRS = {ours: theirs for theirs, ours in _TO_OURS.items()}


def safetensors_dtype(dtype: str) -> str | None:
    """safetensors' name for one of our dtypes (``float32`` -> ``F32``), or None."""
    return _TO_THEIRS.get(dtypes.BY_NAME[dtype].name)


def shard_name(stem: str, shard: int, count: int) -> str:
    """``model-00001-of-00003.safetensors``: the Hugging Face convention (from 1)."""
    return f"{stem}-{shard + 1:05d}-of-{count:05d}{SUFFIX}"


@dataclass(frozen=True)
class _Stored:
    file: int  # which file of the model
    dtype: dtypes.DType
    shape: tuple[int, ...]
    start: int  # absolute, in the file
    size: int


class SafetensorsReader:
    """A safetensors model, one file or sharded, with what every checkpoint reader offers
    (``TensorSource``). There are no checksums in the format: ``verify`` reads every tensor
    and checks that its bytes are all there."""

    format = "safetensors"
    big_endian = False

    def __init__(self, path: Path | RemotePath) -> None:
        self.path = path
        self.files: list[Path | RemotePath] = []
        self.metadata: dict[str, str] = {}
        self._tensors: dict[str, _Stored] = {}
        self._fds: list[int | None] = []
        self._opening = threading.Lock()
        if path.name.lower().endswith(INDEX_SUFFIX):
            self._read_index(path)
        else:
            self._add_file(path)

    @property
    def prefix(self) -> Path | RemotePath:
        return self.path

    @property
    def is_remote(self) -> bool:
        return isinstance(self.path, RemotePath)

    def _read_index(self, index: Path | RemotePath) -> None:
        try:
            with store_errors(index):  # the store's failures; the JSON's are ours to word
                if index.stat().st_size > MAX_HEADER:
                    raise CorruptCheckpointError("the index is larger than 100 MB", path=str(index))
                text = index.read_bytes()
            data = json.loads(text.decode("utf-8"))
        except (OSError, ValueError) as e:
            raise CorruptCheckpointError(
                f"cannot read the index as JSON: {e}", path=str(index)
            ) from None
        weight_map = data.get("weight_map") if isinstance(data, dict) else None
        if not isinstance(weight_map, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in weight_map.items()
        ):
            raise CorruptCheckpointError(
                "the index has no weight_map of tensor names to file names", path=str(index)
            )
        for name in sorted(set(weight_map.values())):
            if "/" in name or "\\" in name or name in ("", ".", ".."):
                raise CorruptCheckpointError(
                    f"the index names a file outside its directory: {name!r}", path=str(index)
                )
            self._add_file(index.with_name(name))
        for key, name in weight_map.items():
            stored = self._tensors.get(key)
            if stored is None or self.files[stored.file].name != name:
                raise CorruptCheckpointError(
                    f"the index says {name} holds {key!r}, which it does not", path=str(index)
                )

    def _add_file(self, path: Path | RemotePath) -> None:
        number = len(self.files)
        header, data_start, size = _read_header(path)
        for key, spec in header.items():
            if key == _METADATA:
                continue
            if key in self._tensors:
                raise CorruptCheckpointError(
                    f"{key!r} is in two files of the model", path=str(path), variable=key
                )
            self._tensors[key] = _stored(path, number, key, spec, data_start)
        _check_tiling(path, self._tensors, number, data_start, size)
        metadata = header.get(_METADATA) or {}
        self.metadata.update(metadata)
        self.files.append(path)
        self._fds.append(None)

    @property
    def num_shards(self) -> int:
        """The files of the model."""
        return len(self.files)

    def variable_keys(self) -> list[str]:
        return sorted(self._tensors)

    def stored_keys(self) -> list[str]:
        return self.variable_keys()

    def info(self, key: str) -> TensorInfo:
        stored = self._stored(key)
        return TensorInfo(
            key, stored.dtype, stored.shape, stored.size, stored.file, stored.start, None, ()
        )

    def _stored(self, key: str) -> _Stored:
        try:
            return self._tensors[key]
        except KeyError:
            from ..errors import CheckpointNotFoundError

            raise CheckpointNotFoundError(
                f"no tensor {key!r} in this model", path=str(self.path), variable=key
            ) from None

    def read_bytes(self, key: str) -> bytes:
        """The tensor's bytes as stored (little-endian, C order)."""
        stored = self._stored(key)
        file = self.files[stored.file]
        if isinstance(file, RemotePath):
            with store_errors(file, key):
                data = file.read_range(stored.start, stored.start + stored.size)
        else:
            data = os.pread(self._fd(stored.file), stored.size, stored.start)
        if len(data) != stored.size:
            raise CorruptCheckpointError(
                f"the file ends inside this tensor ({len(data)} of {stored.size} bytes)",
                path=str(self.files[stored.file]),
                variable=key,
            )
        return data

    def read(self, key: str, verify: bool = True) -> np.ndarray:
        import numpy as np

        stored = self._stored(key)
        array = np.frombuffer(self.read_bytes(key), dtype=dtypes.numpy_dtype(stored.dtype))
        if dtypes.numpy_dtype(stored.dtype).byteorder == ">":  # never on little-endian hosts
            array = array.byteswap()
        return array.reshape(stored.shape).copy()

    def verify(self, on_tensor: Callable[[int], object] | None = None) -> int:
        if self.is_remote:
            return self._verify_remote(on_tensor)
        total = 0
        for key in self.variable_keys():
            size = len(self.read_bytes(key))
            total += size
            if on_tensor is not None:
                on_tensor(size)
        return total

    def _verify_remote(self, on_tensor: Callable[[int], object] | None) -> int:
        """Every byte of every file's data, in requests of the read buffer's size with the
        store's concurrency in flight (a request per tensor would cost a round trip each):
        the tensors tile the data, so a tensor is all there once the bytes reach its end."""
        step, total = read_buffer(), 0
        for number, file in enumerate(self.files):
            assert isinstance(file, RemotePath)
            spans = sorted(
                (s.start, s.size, k) for k, s in self._tensors.items() if s.file == number
            )
            if not spans:
                continue
            begin, end = spans[0][0], spans[-1][0] + spans[-1][1]
            ranges = [(at, min(at + step, end)) for at in range(begin, end, step)]
            got, pending = begin, iter(spans)
            upcoming = next(pending, None)
            fetched = fetched_in_order(file.read_range, ranges, remote_concurrency())
            with store_errors(file), contextlib.closing(fetched) as chunks:  # stops its pool
                for (start, stop), chunk in zip(ranges, chunks, strict=True):
                    got = start + len(chunk)
                    while upcoming is not None and upcoming[0] + upcoming[1] <= got:
                        total += upcoming[1]
                        if on_tensor is not None:
                            on_tensor(upcoming[1])
                        upcoming = next(pending, None)
                    if len(chunk) != stop - start:
                        break
            if upcoming is not None:
                raise CorruptCheckpointError(
                    f"the file ends inside this tensor (at byte {got})",
                    path=str(file),
                    variable=upcoming[2],
                )
        return total

    def _fd(self, number: int) -> int:
        fd = self._fds[number]
        if fd is None:
            with self._opening:  # values may be read on several threads
                fd = self._fds[number]
                if fd is None:
                    file = self.files[number]
                    assert isinstance(file, Path), "files on a store are read by request"
                    fd = os.open(file, os.O_RDONLY)
                    self._fds[number] = fd
        return fd

    def close(self) -> None:
        for fd in self._fds:
            if fd is not None:
                os.close(fd)
        self._fds = [None] * len(self._fds)

    def __del__(self) -> None:
        # Plain-int descriptors nothing else closes: a reader dropped unclosed gives them
        # back as a file would (see BundleReader.__del__).
        if any(fd is not None for fd in self.__dict__.get("_fds", ())):
            self.close()


def _read_at(path: Path | RemotePath, start: int, size: int) -> bytes:
    if isinstance(path, RemotePath):
        return path.read_range(start, start + size)
    with path.open("rb") as f:
        return os.pread(f.fileno(), size, start)


def _read_header(path: Path | RemotePath) -> tuple[dict[str, Any], int, int]:
    """The parsed header, where the data starts and the file's size."""
    try:
        with store_errors(path):
            size = path.stat().st_size
            head = _read_at(path, 0, 8)
            if len(head) < 8:
                raise CorruptCheckpointError("shorter than a safetensors header", path=str(path))
            (length,) = struct.unpack("<Q", head)
            if length > MAX_HEADER or length > size - 8:
                raise CorruptCheckpointError(
                    f"the header claims {length} bytes (the file has {size - 8} after its "
                    "length; the format allows 100 MB)",
                    path=str(path),
                )
            text = _read_at(path, 8, length)
    except FileNotFoundError:
        from ..errors import CheckpointNotFoundError

        raise CheckpointNotFoundError("no such file", path=str(path)) from None
    except OSError as e:
        raise CorruptCheckpointError(f"cannot read it: {e.strerror}", path=str(path)) from None

    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [k for k, _ in pairs]
        if len(set(keys)) != len(keys):
            raise ValueError("a name appears twice in the header")
        return dict(pairs)

    try:
        header = json.loads(text.decode("utf-8"), object_pairs_hook=unique)
    except (UnicodeDecodeError, ValueError) as e:
        raise CorruptCheckpointError(f"the header is not valid JSON: {e}", path=str(path)) from None
    if not isinstance(header, dict):
        raise CorruptCheckpointError("the header is not a JSON object", path=str(path))
    metadata = header.get(_METADATA)
    if metadata is not None and not (
        isinstance(metadata, dict) and all(isinstance(v, str) for v in metadata.values())
    ):
        raise CorruptCheckpointError("__metadata__ must map strings to strings", path=str(path))
    return header, 8 + length, size


def _stored(path: Path | RemotePath, number: int, key: str, spec: Any, data_start: int) -> _Stored:
    def bad(what: str) -> CorruptCheckpointError:
        return CorruptCheckpointError(what, path=str(path), variable=key)

    if not isinstance(spec, dict) or set(spec) != {"dtype", "shape", "data_offsets"}:
        raise bad("an entry must have exactly dtype, shape and data_offsets")
    theirs, shape, offsets = spec["dtype"], spec["shape"], spec["data_offsets"]
    if not isinstance(theirs, str) or theirs not in _TO_OURS:
        raise UnsupportedCheckpointError(
            f"dtype {theirs!r} is not one this version reads",
            path=str(path),
            variable=key,
            hint=f"the dtypes read are {', '.join(_TO_OURS)}.",
        )
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2**63 for d in shape
    ):
        raise bad("the shape must be a list of non-negative integers")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(isinstance(o, int) and not isinstance(o, bool) and o >= 0 for o in offsets)
        or offsets[1] < offsets[0]
    ):
        raise bad("data_offsets must be [begin, end] with begin <= end")
    dtype = dtypes.BY_NAME[_TO_OURS[theirs]]
    assert dtype.itemsize is not None
    size = offsets[1] - offsets[0]
    if math.prod(shape) * dtype.itemsize != size:
        raise bad(f"{shape} of {theirs} is {math.prod(shape) * dtype.itemsize} bytes, not {size}")
    return _Stored(number, dtype, tuple(shape), data_start + offsets[0], size)


def _check_tiling(
    path: Path | RemotePath,
    tensors: Mapping[str, _Stored],
    number: int,
    data_start: int,
    size: int,
) -> None:
    """The format's rule: the tensors' bytes cover the data exactly, without overlaps."""
    spans = sorted((s.start, s.start + s.size, k) for k, s in tensors.items() if s.file == number)
    at = data_start
    for start, end, key in spans:
        if start != at:
            raise CorruptCheckpointError(
                "the tensors' bytes leave a gap before this one"
                if start > at
                else "this tensor's bytes overlap the one before",
                path=str(path),
                variable=key,
            )
        at = end
    if at != size:
        raise CorruptCheckpointError(
            f"the data ends at byte {at} but the file has {size}"
            if at < size
            else f"the tensors need {at} bytes but the file has {size}",
            path=str(path),
        )


@dataclass(frozen=True)
class TensorSpec:
    """A tensor a writer will write: its name, dtype (ours) and shape."""

    name: str
    dtype: str
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        itemsize = dtypes.BY_NAME[self.dtype].itemsize
        assert itemsize is not None
        return math.prod(self.shape) * itemsize


class SafetensorsWriter:
    """One safetensors file, written as a stream: the header first (every tensor's place
    is known from the specs), then each tensor in the specs' order, as it comes."""

    def __init__(self, out: BinaryIO, specs: Sequence[TensorSpec], metadata: Mapping[str, str]):
        header: dict[str, Any] = {_METADATA: dict(metadata)} if metadata else {}
        offset = 0
        for spec in specs:
            theirs = safetensors_dtype(spec.dtype)
            if theirs is None:
                raise OutputError(
                    f"{spec.name!r} is {spec.dtype}, which safetensors cannot hold",
                    hint="drop it with a map rule, or cast it (cast: float32).",
                )
            header[spec.name] = {
                "dtype": theirs,
                "shape": list(spec.shape),
                "data_offsets": [offset, offset + spec.nbytes],
            }
            offset += spec.nbytes
        text = json.dumps(header, separators=(",", ":")).encode("utf-8")
        # Pad with spaces so the data starts 8-byte aligned, as the reference writer does.
        text += b" " * (-(len(text) + 8) % 8)
        self._out = out
        self._pending: Iterator[TensorSpec] = iter(specs)
        out.write(struct.pack("<Q", len(text)))
        out.write(text)

    def write(self, name: str, array: np.ndarray) -> None:
        """Append the next tensor (the specs' order); its dtype and shape must match."""
        import numpy as np

        spec = next(self._pending, None)
        if spec is None or spec.name != name:
            raise ValueError(f"{name!r} is not the next tensor ({spec.name if spec else None})")
        # Not ascontiguousarray: it turns a scalar into shape (1,).
        data = np.asarray(array, dtype=dtypes.numpy_dtype(dtypes.BY_NAME[spec.dtype]))
        if not data.flags.c_contiguous:
            data = data.copy(order="C")
        if data.shape != spec.shape:
            raise ValueError(f"{name!r}: shape {data.shape}, planned {spec.shape}")
        if data.dtype.byteorder == ">":
            data = data.byteswap()
        self._out.write(data.reshape(-1).view(np.uint8).data)

    def finish(self) -> None:
        """Check that every planned tensor was written."""
        left = next(self._pending, None)
        if left is not None:
            raise ValueError(f"{left.name!r} was planned but not written")
