"""One way to publish an output: staged beside its destination, renamed into place.

Every writer (checkpoint directories, Keras weight files and archives, suggested maps, HTML
reports) stages its output under a hidden name in the destination's directory and renames
it into place only when it is complete, so a reader never sees half an output and a failure
or Ctrl-C leaves the destination as it was. Staged files and directories are created with
the modes a plain ``open()`` / ``mkdir`` gets under the umask (``tempfile`` would make them
0600 / 0700), so a serving job running as another user can read what was published.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from .errors import OutputError

__all__ = ["fsync_path", "make_staging_dir", "publish_dir", "staged_file"]

# A staged name is the destination's, cut so that it stays within NAME_MAX (255) when the
# destination's does, plus a random part: two runs writing beside each other never meet.
_NAME_KEPT = 200


def _staged_name(output: Path, what: str) -> Path:
    return output.parent / f".{output.name[:_NAME_KEPT]}.ckptmigrate-{what}-{secrets.token_hex(6)}"


def fsync_path(path: Path) -> None:
    """fsync a file or a directory (a directory's, after a rename, makes the name last).

    Args:
        path: the file or directory to flush to disk.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _Location(Protocol):
    """A local path or a store's URL (formats.remote.RemotePath)."""

    def exists(self) -> bool: ...


def refuse_existing(output: _Location, overwrite: bool) -> None:
    """Raise if ``output`` exists and may not be replaced.

    Raises:
        OutputError: the output exists and ``overwrite`` is false.
    """
    dangling_link = isinstance(output, Path) and output.is_symlink()
    if not overwrite and (output.exists() or dangling_link):
        raise OutputError(
            "the output already exists",
            path=str(output),
            hint="choose a new path, or pass [[overwrite]] to replace it.",
        )


@contextlib.contextmanager
def staged_file(output: Path, *, overwrite: bool, durable: bool = False) -> Iterator[Path]:
    """Yield an empty hidden file beside ``output`` to write; publish it as ``output`` when
    the block succeeds, delete it when anything (Ctrl-C included) escapes the block.

    Args:
        output: where the file is to appear.
        overwrite: replace an existing ``output``; without it an ``output`` that exists
            (or appears while the file is written) is refused and left as it is.
        durable: fsync the file before publishing it and the directory after.

    Raises:
        OutputError: ``output`` is a directory or exists (without ``overwrite``), or the
            file cannot be written (a full disk says so).
    """
    if output.is_dir():
        raise OutputError("the output is a directory; give a file name", path=output)
    refuse_existing(output, overwrite)
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        staged = _staged_name(output, "file")
        os.close(os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except OSError as e:
        raise OutputError.from_os_error(e, output) from e
    try:
        yield staged
        if durable:
            fsync_path(staged)
        _publish_file(staged, output, overwrite)
        if durable:
            fsync_path(output.parent)
    except OSError as e:
        staged.unlink(missing_ok=True)
        raise OutputError.from_os_error(e, output) from e
    except BaseException:
        staged.unlink(missing_ok=True)
        raise


def _publish_file(staged: Path, output: Path, overwrite: bool) -> None:
    if overwrite:
        os.replace(staged, output)
        return
    # A hard link fails if the output appeared meanwhile, where a rename would replace it.
    try:
        os.link(staged, output)
    except FileExistsError:
        raise OutputError(
            "the output appeared while it was being written; it was left as it is",
            path=output,
            hint="choose a new path, or pass [[overwrite]] to replace it.",
        ) from None
    except OSError:
        if output.exists():  # a filesystem without hard links
            raise
        os.rename(staged, output)
        return
    staged.unlink()


def make_staging_dir(output_dir: Path) -> Path:
    """Create a hidden, empty directory beside ``output_dir`` to stage it in.

    Raises:
        OSError: the directory (or its parent) cannot be created.
    """
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = _staged_name(output_dir, "dir")
    staging.mkdir(0o777)
    return staging


def publish_dir(staging: Path, output_dir: Path, *, overwrite: bool, durable: bool) -> None:
    """Rename a complete ``staging`` directory to ``output_dir``.

    An existing ``output_dir`` (allowed only with ``overwrite``) is moved aside first and
    deleted once the new directory is in place; if the rename fails it is put back.

    Raises:
        OutputError: ``output_dir`` exists and ``overwrite`` is false.
        OSError: a rename failed (the destination is as it was).
    """
    if durable:
        fsync_path(staging)
    replaced = None
    if output_dir.exists() or output_dir.is_symlink():
        refuse_existing(output_dir, overwrite)
        if not output_dir.is_dir():
            raise OutputError("the output exists and is not a directory", path=output_dir)
        replaced = staging.with_name(staging.name + ".replaced")
        os.rename(output_dir, replaced)
    try:
        os.rename(staging, output_dir)
    except OSError:
        if replaced is not None:
            os.rename(replaced, output_dir)
        raise
    if durable:
        fsync_path(output_dir.parent)
    if replaced is not None:
        shutil.rmtree(replaced, ignore_errors=True)
