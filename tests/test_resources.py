"""The library gives back what it opens, call after call: a long-running process (a
training pipeline opening every checkpoint it writes, the fuzzer's workers) must not
accumulate file descriptors however many checkpoints, damaged or not, it meets; nor may a
small damaged file make it reserve memory by what the file declares.

Found while chasing the fuzz soak's late MemoryErrors (issue 16's follow-up): a worker's
open descriptors grew by about 75 per 1,000 cases of the fuzzer's data target, one per
``open_checkpoint`` whose object graph failed its checksum, each keeping a deleted shard."""

from __future__ import annotations

import os
import pickle
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from ckptmigrate import convert, dtypes, open_checkpoint
from ckptmigrate.errors import ChecksumMismatchError, CorruptCheckpointError
from ckptmigrate.formats.bundle_writer import BundleWriter
from ckptmigrate.formats.object_graph import OBJECT_GRAPH_KEY

FD_DIR = Path("/proc/self/fd")
CALLS = 2000

pytestmark = pytest.mark.skipif(not FD_DIR.is_dir(), reason="needs /proc/self/fd")


def open_fds() -> set[str]:
    return set(os.listdir(FD_DIR))


def _checkpoint(directory: Path, graph: bytes) -> Path:
    """A checkpoint with a variable and an object-graph tensor holding ``graph``."""
    with BundleWriter(directory / "checkpoint", "ckpt") as writer:
        writer.add_array("w", np.arange(6, dtype=np.float32))
        writer.add_array(OBJECT_GRAPH_KEY, np.array(graph, dtype=object))
        return Path(str(writer.commit()))


def _flip_last_byte(shard: Path) -> None:
    """The object graph's string tensor is written last: its checksum then fails."""
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0xFF
    shard.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("damage", "error"),
    [("checksum", ChecksumMismatchError), ("unparseable", CorruptCheckpointError)],
)
def test_an_open_that_fails_on_the_object_graph_closes_what_it_opened(
    tmp_path: Path, damage: str, error: type[Exception]
) -> None:
    # An empty message is a valid (empty) graph: a lone field tag with no value is not.
    prefix = _checkpoint(tmp_path, b"\x0a" if damage == "unparseable" else b"")
    if damage == "checksum":
        _flip_last_byte(Path(f"{prefix}.data-00000-of-00001"))
    before = open_fds()
    with pytest.raises(error, match=OBJECT_GRAPH_KEY) as raised:
        open_checkpoint(prefix)
    # Closed by the failed open itself, not later by the garbage collector: the
    # exception's traceback still holds the reader here.
    assert raised.traceback is not None
    assert open_fds() == before
    for _ in range(CALLS):
        with pytest.raises(error):
            open_checkpoint(prefix)
    assert open_fds() == before


def test_readers_dropped_without_closing_give_their_descriptors_back(tmp_path: Path) -> None:
    """``open_checkpoint(p).read(k)``, as one writes ``tf.train.load_checkpoint(p)
    .get_tensor(k)`` (a reader TensorFlow never asks to close), call after call, for each
    reader that holds descriptors of its own."""
    with BundleWriter(tmp_path / "checkpoint", "ckpt") as writer:
        writer.add_array("w", np.arange(6, dtype=np.float32))
        prefix = Path(str(writer.commit()))
    paths = [prefix]
    identity = tmp_path / "map.yaml"
    identity.write_text("version: 1\nrules:\n  - {name: w, rename: w}\n")
    for name, format in (("model.safetensors", "safetensors"), ("model.pt", "torch")):
        convert(prefix, identity, tmp_path / name, format=format)
        paths.append(tmp_path / name)
    for path in paths:
        assert open_checkpoint(path).reader.format in ("v2", "safetensors", "torch")
    before = open_fds()
    for _ in range(CALLS // len(paths)):
        for path in paths:
            assert open_checkpoint(path).read("w")[5] == 5.0
    assert open_fds() == before


def test_unknown_dtypes_add_nothing_to_the_dtype_caches() -> None:
    """A damaged index can give every file its own unknown dtype enum (a partitioned
    variable's is looked up as numpy's): the module's caches keep the table's dtypes only."""

    def cached() -> int:
        caches = [f for f in vars(dtypes).values() if hasattr(f, "cache_info")]
        assert caches  # the module caches, and these are its caches
        return sum(f.cache_info().currsize for f in caches)

    for known in dtypes.BY_ENUM.values():
        dtypes.numpy_dtype(known)
    size = cached()
    for value in range(1000, 1000 + CALLS):
        assert dtypes.numpy_dtype(dtypes.from_enum(value)) == np.dtype(object)
    assert cached() == size


def _torch_file_declaring(path: Path, record: str, size: int) -> Path:
    """A torch.save-shaped zip (an empty data.pkl state_dict, byteorder "little") whose
    central directory declares ``record`` ``size`` bytes long."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("archive/data.pkl", pickle.dumps({}, protocol=2))
        archive.writestr("archive/byteorder", b"little")
    data = bytearray(path.read_bytes())
    entry = data.index(b"PK\x01\x02")  # the central directory's entries
    while not data[entry + 46 :].startswith(record.encode()):
        entry = data.index(b"PK\x01\x02", entry + 1)
    struct.pack_into("<II", data, entry + 20, size, size)  # compressed and full size
    path.write_bytes(bytes(data))
    return path


CHILD = """
import resource, sys
import numpy
from ckptmigrate import open_checkpoint
from ckptmigrate.errors import CkptMigrateError
import ckptmigrate.formats.torch_file
with open("/proc/self/statm") as f:
    size = int(f.read().split()[0]) * resource.getpagesize()
limit = size + (64 << 20)
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
try:
    open_checkpoint(sys.argv[1])
except CkptMigrateError as e:
    print(type(e).__name__, e)
except MemoryError:
    print("MemoryError")
"""


@pytest.mark.parametrize(
    ("record", "error"),
    [
        ("archive/byteorder", "the byteorder record says b'littleP'"),
        ("archive/data.pkl", "cannot read it as a torch.save zip archive"),
    ],
)
def test_a_torch_record_declaring_gigabytes_is_refused_in_little_memory(
    tmp_path: Path, record: str, error: str
) -> None:
    """zipfile reserves what one read asks for (up to 1 GiB) before reading: the byteorder
    record, read whole, made a 643-byte file take 1 GiB of address space, the fuzz soak's
    late MemoryErrors (a fresh worker had just enough room, an older one not), and data.pkl,
    read in one read of up to 256 MiB, that much. In a child whose address space may grow
    by 64 MiB only."""
    path = _torch_file_declaring(tmp_path / "model.pt", record, 0xFFFF_FF00)
    assert zipfile.ZipFile(path).getinfo(record).file_size == 0xFFFF_FF00
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True, check=True
    )
    assert child.stdout.startswith(f"CorruptCheckpointError {path}: {error}"), (
        child.stdout + child.stderr
    )
