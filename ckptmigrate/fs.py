"""One way to publish an output: staged beside its destination, renamed into place.

Every writer (checkpoint directories, Keras weight files and archives, suggested maps, HTML
reports) stages its output under a hidden name in the destination's directory and renames
it into place only when it is complete, so a reader never sees half an output and a failure
or Ctrl-C leaves the destination as it was. Staged files and directories are created with
the modes a plain ``open()`` / ``mkdir`` gets under the umask (``tempfile`` would make them
0600 / 0700), so a serving job running as another user can read what was published.

A staging directory has an owner record beside it (``<staging>.owner``: pid, host, start
time), so that one left by a killed run (SIGKILL, a power cut) is cleaned up by the next run
to the same output once its owner is gone, and an output a killed run was replacing is put
back (see ``clean_stale_staging``).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import json
import os
import secrets
import shutil
import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

from .errors import InterruptedAfterWriting, OutputError

__all__ = [
    "clean_stale_staging",
    "discard_staging",
    "fsync_path",
    "identity",
    "make_staging_dir",
    "publish_dir",
    "published",
    "rename_exchange",
    "staged_file",
]

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


_OWNER = ".owner"  # the owner record's suffix, beside the staging directory
_REPLACED = ".replaced"  # an output being replaced, where directories cannot be exchanged


def _staging_prefix(output_dir: Path) -> str:
    return f".{output_dir.name[:_NAME_KEPT]}.ckptmigrate-dir-"


def make_staging_dir(output_dir: Path) -> Path:
    """Create a hidden, empty directory beside ``output_dir`` to stage it in, with its
    owner record; stale ones of earlier, killed runs to ``output_dir`` go first.

    Raises:
        OSError: the directory (or its parent) cannot be created.
    """
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_staging(output_dir)
    staging = _staged_name(output_dir, "dir")
    # The record first: a staging directory never exists without it.
    _owner_of(staging).write_text(json.dumps(_me(output_dir)), encoding="utf-8")
    staging.mkdir(0o777)
    return staging


def _owner_of(staging: Path) -> Path:
    return staging.with_name(staging.name + _OWNER)


def _me(output_dir: Path) -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": _start_time(os.getpid()),
        "output": output_dir.name,
    }


def _start_time(pid: int) -> int | None:
    """A process's start time in clock ticks since boot (Linux), which tells a reused pid
    from the process that had it; None where /proc does not say."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat[stat.rindex(")") + 2 :].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _gone(record: dict[str, Any]) -> bool:
    """Whether the process a staging record names has ended. Only a process on this host
    can be asked: one on another host (a shared filesystem) is assumed alive."""
    if record.get("host") != socket.gethostname():
        return False
    pid = record.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # another user's live process
        pass
    started = record.get("started")
    return started is not None and _start_time(pid) not in (None, started)


def clean_stale_staging(output_dir: Path) -> list[Path]:
    """Clean up after earlier runs to ``output_dir`` that were killed (SIGKILL, power
    loss) and whose owner process is gone: their staging directories are deleted, and an
    output one was replacing without an atomic exchange is put back if it is missing (the
    killed run never published its own), else deleted. Live runs' directories, those of
    other hosts and directories without a readable record are left alone. Returns what
    was deleted or put back."""
    prefix = _staging_prefix(output_dir)
    try:
        names = os.listdir(output_dir.parent)
    except OSError:
        return []
    cleaned = []
    for name in names:
        if not (name.startswith(prefix) and name.endswith(_OWNER)):
            continue
        owner = output_dir.parent / name
        try:
            record = json.loads(owner.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(record, dict) or record.get("output") != output_dir.name:
            continue
        if not _gone(record):
            continue
        staging = owner.with_name(name[: -len(_OWNER)])
        replaced = staging.with_name(staging.name + _REPLACED)
        try:  # best effort: what cannot be cleaned now stays for a later run
            if replaced.is_dir() and not (output_dir.exists() or output_dir.is_symlink()):
                os.rename(replaced, output_dir)
                cleaned.append(output_dir)
            cleaned += [p for p in (staging, replaced) if p.exists()]
            discard_staging(staging)
        except OSError:
            continue
    return cleaned


def discard_staging(staging: Path) -> None:
    """Delete a staging directory, an output it replaced and its owner record."""
    shutil.rmtree(staging, ignore_errors=True)
    shutil.rmtree(staging.with_name(staging.name + _REPLACED), ignore_errors=True)
    _owner_of(staging).unlink(missing_ok=True)


def identity(path: Path) -> tuple[int, int]:
    """(device, inode): which directory a path names, kept through renames."""
    st = os.stat(path, follow_symlinks=False)
    return st.st_dev, st.st_ino


def published(staged: tuple[int, int], output_dir: Path) -> bool:
    """Whether ``output_dir`` is the staged directory whose ``identity`` was ``staged``."""
    try:
        return identity(output_dir) == staged
    except OSError:
        return False


def publish_dir(staging: Path, output_dir: Path, *, overwrite: bool, durable: bool) -> None:
    """Put a complete ``staging`` directory (from ``make_staging_dir``) in place as
    ``output_dir``, so that at every moment ``output_dir`` is the complete old directory
    or the complete new one, never missing.

    A new output is renamed into place (refused if one appeared meanwhile). An existing one
    (only with ``overwrite``) is exchanged with the staging in one step where the system
    can (Linux ``renameat2(RENAME_EXCHANGE)``), then deleted from under the staging name.
    Elsewhere it is renamed to ``<staging>.replaced`` first and put back if the second
    rename fails or is interrupted; a run killed between the two leaves it there, and the
    next run to ``output_dir`` puts it back (``clean_stale_staging``).

    Raises:
        OutputError: ``output_dir`` exists and ``overwrite`` is false, or it is not a
            directory, or it appeared while the staging was being written.
        InterruptedAfterWriting: Ctrl-C or SIGTERM came after the new directory was in
            place (while the old one was being deleted).
        OSError: a rename failed (the destination is as it was).
    """
    new = identity(staging)
    try:
        if durable:
            fsync_path(staging)
        _move_into_place(staging, output_dir, overwrite)
        if durable:
            fsync_path(output_dir.parent)
        discard_staging(staging)  # the old output, now under the staging's name
    except KeyboardInterrupt:
        if published(new, output_dir):
            raise InterruptedAfterWriting(output_dir, "deleting the output it replaced") from None
        raise


def _move_into_place(staging: Path, output_dir: Path, overwrite: bool) -> None:
    if not (output_dir.exists() or output_dir.is_symlink()):
        try:
            if not _renameat2(staging, output_dir, _RENAME_NOREPLACE):
                os.rename(staging, output_dir)
        except FileExistsError:
            raise OutputError(
                "the output appeared while it was being written; it was left as it is",
                path=output_dir,
                hint="choose a new path, or pass [[overwrite]] to replace it.",
            ) from None
        return
    refuse_existing(output_dir, overwrite)
    if not output_dir.is_dir():
        raise OutputError("the output exists and is not a directory", path=output_dir)
    if rename_exchange(staging, output_dir):
        return
    replaced = staging.with_name(staging.name + _REPLACED)
    try:
        os.rename(output_dir, replaced)
        os.rename(staging, output_dir)
    except BaseException:
        if replaced.exists() and not (output_dir.exists() or output_dir.is_symlink()):
            os.rename(replaced, output_dir)
        raise


_AT_FDCWD = -100
_RENAME_NOREPLACE = 1
_RENAME_EXCHANGE = 2


def rename_exchange(first: Path, second: Path) -> bool:
    """Swap two directories in one step (``renameat2(RENAME_EXCHANGE)``): each name stays
    bound to a complete directory throughout. False where the system or filesystem has no
    exchange (other than Linux, or e.g. some network filesystems).

    Raises:
        OSError: the exchange itself failed (neither name changed).
    """
    return _renameat2(first, second, _RENAME_EXCHANGE)


def _renameat2(source: Path, target: Path, flags: int) -> bool:
    call = _libc_renameat2()
    if call is None:
        return False
    if call(_AT_FDCWD, os.fsencode(source), _AT_FDCWD, os.fsencode(target), flags) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(source), None, str(target))


@functools.cache
def _libc_renameat2() -> Callable[..., int] | None:
    """glibc's renameat2 (2.28 and later), or None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        call = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    call.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    call.restype = ctypes.c_int
    return call
