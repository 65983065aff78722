"""Checkpoints on object stores: ``s3://``, ``gs://`` and anything else fsspec serves.

A URL becomes a :class:`RemotePath`, which offers the part of ``pathlib.Path`` that
``locate`` and the reader need, so the rules that turn a user's path into a checkpoint
are the same for both. Object stores have no positioned reads on an open descriptor:
every read here is one ranged request (``cat_file(path, start, end)``) for exactly the
bytes asked for, so reading one tensor downloads the index and that tensor, nothing else.

fsspec (and the store's own package, e.g. s3fs or gcsfs) is imported on the first URL
only: local paths and ``--help`` never load it. Credentials and endpoints come from the
store's usual configuration (``AWS_*`` variables, ``~/.aws``, gcloud), or fsspec's own
(``FSSPEC_S3_ENDPOINT_URL=http://...`` and friends).
"""

from __future__ import annotations

import glob
import os
import posixpath
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

from ..errors import CheckpointNotFoundError, CkptMigrateError

# `scheme://...`; a single-letter scheme would be a Windows drive letter.
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+)://")
# pathlib turns `s3://bucket/x` into `s3:/bucket/x`: modules that wrap every argument in
# Path() (target detection does) hand us that form, which no real local path has.
_COLLAPSED_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):/(?!/)")

DEFAULT_READ_BUFFER = 8 << 20
READ_BUFFER_ENV = "CKPTMIGRATE_READ_BUFFER"


def read_buffer() -> int:
    """Bytes per ranged request when streaming a tensor (bounded memory per request).
    ``CKPTMIGRATE_READ_BUFFER`` overrides it: small values exercise multi-request reads."""
    text = os.environ.get(READ_BUFFER_ENV)
    if not text:
        return DEFAULT_READ_BUFFER
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise CkptMigrateError(
            f"{READ_BUFFER_ENV} must be a positive number of bytes, not {text!r}",
            hint=f"unset {READ_BUFFER_ENV} for the default ({DEFAULT_READ_BUFFER} bytes).",
        )
    return value


def is_url(path: object) -> bool:
    """Whether ``path`` names a file on a remote filesystem rather than a local one."""
    if isinstance(path, RemotePath):
        return True
    if isinstance(path, str):
        match = _URL.match(path)
        return match is not None and match.group(1).lower() != "file"
    if isinstance(path, Path):
        return _collapsed_url(path) is not None
    return False


def _collapsed_url(path: Path) -> str | None:
    text = str(path)
    match = _COLLAPSED_URL.match(text)
    if match is None or match.group(1).lower() == "file" or path.exists():
        return None
    return f"{match.group(1)}://{text[match.end() :]}"


def as_path(path: str | os.PathLike[str] | RemotePath) -> Path | RemotePath:
    """A local ``Path``, or a ``RemotePath`` for a URL (``file://`` URLs are local)."""
    if isinstance(path, RemotePath):
        return path
    if isinstance(path, Path):
        url = _collapsed_url(path)
        return path if url is None else RemotePath.from_url(url)
    text = os.fspath(path)
    if text.lower().startswith("file://"):
        return Path(text[len("file://") :])
    if is_url(text):
        return RemotePath.from_url(text)
    return Path(text)


class RemoteStat(NamedTuple):
    st_size: int


class RemotePath:
    """One file or directory on an fsspec filesystem, with pathlib's names for what locate
    asks (``is_file``, ``glob``, ``with_name``...). Immutable; compares by URL."""

    __slots__ = ("fs", "path")

    def __init__(self, fs: Any, path: str) -> None:
        self.fs = fs  # an fsspec AbstractFileSystem
        self.path = path.rstrip("/") or path  # the filesystem's own path: "bucket/dir/file"

    @classmethod
    def from_url(cls, url: str) -> RemotePath:
        try:
            from fsspec.core import url_to_fs
        except ImportError:
            raise CheckpointNotFoundError(
                "reading or writing URLs needs fsspec",
                path=url,
                hint="pip install 'ckptmigrate[remote]' (fsspec, s3fs); for gs:// also gcsfs.",
            ) from None
        try:
            fs, path = url_to_fs(url)
        except (ImportError, ValueError) as e:
            raise CheckpointNotFoundError(
                f"no filesystem for this URL: {e}",
                path=url,
                hint="install the fsspec implementation for its scheme (s3fs, gcsfs, adlfs...).",
            ) from None
        return cls(fs, path)

    # -- pathlib's vocabulary -----------------------------------------------------------

    @property
    def url(self) -> str:
        return str(self.fs.unstrip_protocol(self.path))

    def __str__(self) -> str:
        return self.url

    def __repr__(self) -> str:
        return f"RemotePath({self.url!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RemotePath) and other.fs is self.fs and other.path == self.path

    def __hash__(self) -> int:
        return hash(self.path)

    @property
    def name(self) -> str:
        return posixpath.basename(self.path)

    @property
    def parent(self) -> RemotePath:
        return RemotePath(self.fs, posixpath.dirname(self.path) or self.path)

    @property
    def parents(self) -> Iterator[RemotePath]:
        current = self
        while (parent := current.parent) != current:
            yield parent
            current = parent

    def with_name(self, name: str) -> RemotePath:
        return self.parent / name

    def __truediv__(self, name: str | Path) -> RemotePath:
        return RemotePath(self.fs, posixpath.join(self.path, str(name)))

    def expanduser(self) -> RemotePath:
        return self

    def absolute(self) -> RemotePath:
        return self

    def resolve(self) -> RemotePath:
        return self

    def exists(self) -> bool:
        return bool(self.fs.exists(self.path))

    def is_file(self) -> bool:
        return bool(self.fs.isfile(self.path))

    def is_dir(self) -> bool:
        return bool(self.fs.isdir(self.path))

    def stat(self) -> RemoteStat:
        return RemoteStat(int(self.fs.size(self.path)))

    def glob(self, pattern: str) -> list[RemotePath]:
        # The directory part is literal: a run named run[1] must not be a character class.
        found = self.fs.glob(posixpath.join(glob.escape(self.path), pattern))
        return [RemotePath(self.fs, p) for p in sorted(found)]

    def iterdir(self) -> list[RemotePath]:
        return [RemotePath(self.fs, p) for p in sorted(self.fs.ls(self.path, detail=False))]

    # -- reading: every call is one request for exactly the bytes wanted ------------------

    def read_bytes(self) -> bytes:
        return bytes(self.fs.cat_file(self.path))

    def read_text(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return self.read_bytes().decode(encoding, errors)

    def read_range(self, start: int, end: int) -> bytes:
        """Bytes [start, end) (fewer at the end of the file)."""
        return bytes(self.fs.cat_file(self.path, start=start, end=end))

    def download(self, target: Path, buffer: int | None = None) -> int:
        """Copy the whole file to the local ``target`` in ranged reads of ``buffer`` bytes
        (bounded memory, requests like tensor reads); returns its size."""
        size = self.stat().st_size
        step = buffer or read_buffer()
        with target.open("wb") as out:
            for start in range(0, size, step):
                chunk = self.read_range(start, min(start + step, size))
                if not chunk:
                    raise OSError(f"{self.url} ended at byte {start} of {size}")
                out.write(chunk)
        return size

    # -- writing ------------------------------------------------------------------------

    def upload(self, source: Path) -> None:
        """Put the local file ``source`` here. Object stores publish an object only when
        its upload completes (multipart included), so readers never see a partial file."""
        self.fs.put_file(str(source), self.path)

    def copy_from(self, source: RemotePath) -> None:
        """Server-side copy within one filesystem: the bytes never come down."""
        self.fs.copy(source.path, self.path)

    def delete(self) -> None:
        self.fs.rm_file(self.path)

    def delete_contents(self) -> None:
        """Delete every file under this directory, but not the directory itself: it may be
        a bucket, which ``rm(recursive=True)`` would delete too."""
        found = self.fs.find(self.path)
        if found:
            self.fs.rm(found)

    def same_filesystem(self, other: Path | RemotePath) -> bool:
        return isinstance(other, RemotePath) and other.fs is self.fs
