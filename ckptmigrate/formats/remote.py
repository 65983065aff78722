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

import contextlib
import functools
import glob
import os
import posixpath
import re
import time
from collections.abc import Awaitable, Callable, Generator, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from ..errors import CheckpointNotFoundError, CkptMigrateError

if TYPE_CHECKING:
    # Imported where a store is used: asyncio (and ssl under it) took a fifth of the
    # start-up of commands on local checkpoints; concurrent.futures (and logging) likewise.
    import asyncio
    import concurrent.futures

# `scheme://...`; a single-letter scheme would be a Windows drive letter.
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+)://")
# pathlib turns `s3://bucket/x` into `s3:/bucket/x`: modules that wrap every argument in
# Path() (target detection does) hand us that form, which no real local path has.
_COLLAPSED_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):/(?!/)")

DEFAULT_READ_BUFFER = 8 << 20
READ_BUFFER_ENV = "CKPTMIGRATE_READ_BUFFER"
DEFAULT_CONCURRENCY = 16
CONCURRENCY_ENV = "CKPTMIGRATE_REMOTE_CONCURRENCY"
# A transient failure (a dropped connection, a throttled or timed-out request) is retried
# after these pauses; what the store answers definitively (no such object, no permission)
# and corrupt data (a CRC mismatch, checked above this layer) never are.
RETRY_DELAYS = (0.2, 0.8, 3.2)
_DEFINITIVE = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)
UPLOAD_PART_ENV = "CKPTMIGRATE_UPLOAD_PART_SIZE"
_BOTOCORE_POOL = 10  # botocore's default max_pool_connections

# An interrupted store call is cancelled, then waited for this long to stop (a request cut
# short must not complete behind the caller's back); cleaning up after a failed upload
# (deletes, aborting multipart uploads, checking nothing came back) is bounded by the other.
SETTLE_SECONDS = 15.0
CLEANUP_SECONDS = 60.0
_CALL_SECONDS = 20.0  # one delete or check during the clean-up
_CHECK_DELAYS = (0.3, 0.6, 1.2, 2.4)  # before each look for objects that came back

T = TypeVar("T")


def _positive_setting(name: str, unit: str, default_said: str) -> int | None:
    """The positive integer the environment variable ``name`` holds; None when unset."""
    text = os.environ.get(name)
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise CkptMigrateError(
            f"{name} must be a positive number of {unit}, not {text!r}",
            hint=f"unset {name} for {default_said}.",
        )
    return value


def read_buffer() -> int:
    """Bytes per ranged request when streaming a tensor (bounded memory per request).
    ``CKPTMIGRATE_READ_BUFFER`` overrides it: small values exercise multi-request reads."""
    default = DEFAULT_READ_BUFFER
    return _positive_setting(READ_BUFFER_ENV, "bytes", f"the default ({default} bytes)") or default


def remote_concurrency() -> int:
    """Ranged requests a reader keeps in flight for one large tensor (16 by default;
    ``CKPTMIGRATE_REMOTE_CONCURRENCY`` overrides it, 1 for one request at a time)."""
    default = DEFAULT_CONCURRENCY
    said = f"the default ({default} requests)"
    return _positive_setting(CONCURRENCY_ENV, "requests", said) or default


def with_retries(call: Callable[[], T], delays: tuple[float, ...] | None = None) -> T:
    """``call()``, again after each of ``delays`` (``RETRY_DELAYS``) when it fails in a way
    that may pass."""
    for delay in (*(RETRY_DELAYS if delays is None else delays), None):
        try:
            return call()
        except (CkptMigrateError, KeyboardInterrupt, *_DEFINITIVE):
            raise
        except Exception:
            if delay is None:
                raise
            time.sleep(delay)
    raise AssertionError("unreachable")


def fetched_in_order(
    fetch: Callable[[int, int], bytes],
    ranges: Sequence[tuple[int, int]],
    concurrency: int,
) -> Generator[bytes, None, None]:
    """``fetch(start, end)`` of each range, yielded in order, with up to ``concurrency``
    requests in flight (so at most that many chunks held ahead of the consumer)."""
    return called_in_order([functools.partial(fetch, *r) for r in ranges], concurrency)


def called_in_order(calls: Sequence[Callable[[], T]], concurrency: int) -> Generator[T, None, None]:
    """Each call's result, yielded in order, with up to ``concurrency`` calls running (so
    at most that many results held ahead of the consumer). Closing the iterator early
    cancels the calls not yet started."""
    if concurrency <= 1 or len(calls) <= 1:
        for call in calls:
            yield call()
        return
    import concurrent.futures  # here: local checkpoints never need a thread pool

    workers = min(concurrency, len(calls))
    with concurrent.futures.ThreadPoolExecutor(workers, "ckptmigrate-fetch") as pool:
        waiting: list[concurrent.futures.Future[T]] = []
        upcoming = iter(calls)
        try:
            for call in upcoming:
                waiting.append(pool.submit(call))
                if len(waiting) == workers:
                    break
            while waiting:
                result = waiting.pop(0).result()
                following = next(upcoming, None)
                if following is not None:
                    waiting.append(pool.submit(following))
                yield result
        finally:
            for future in waiting:
                future.cancel()


def store_error(error: BaseException, path: RemotePath, key: str | None = None) -> CkptMigrateError:
    """A store client's failure (botocore, aiohttp, gcsfs raise their own types) as our
    error, naming the object and the tensor being read."""
    return CkptMigrateError(
        f"cannot read from the store ({type(error).__name__}: {error})",
        path=str(path),
        variable=key,
        hint="check the network, the credentials and the endpoint; the read can be retried.",
    )


@contextlib.contextmanager
def store_errors(path: Path | RemotePath, key: str | None = None) -> Iterator[None]:
    """Inside: a store client's own exceptions become :func:`store_error` (a missing
    object stays FileNotFoundError, for callers to word). Local files' errors pass."""
    try:
        yield
    except (CkptMigrateError, KeyboardInterrupt, FileNotFoundError):
        raise
    except Exception as e:
        if not isinstance(path, RemotePath):
            raise
        raise store_error(e, path, key) from e


class StoreFile:
    """A store's file object whose failures are our errors (``store_error``): a library
    parsing through it (zipfile) then tells its own complaints about the bytes from the
    store's about the connection, which pass through it untouched."""

    def __init__(self, path: RemotePath, file: Any) -> None:
        self._path, self._file = path, file

    def read(self, size: int = -1) -> bytes:
        with store_errors(self._path):
            return bytes(self._file.read(size))

    def seek(self, offset: int, whence: int = 0) -> int:
        # No request: a seek's complaint (before the start) is about the bytes, not the store.
        return int(self._file.seek(offset, whence))

    def tell(self) -> int:
        return int(self._file.tell())

    def seekable(self) -> bool:
        return True

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> StoreFile:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def upload_part_size() -> int | None:
    """Bytes per part of a multipart upload, or None for the store client's default (s3fs:
    files of 100 MiB and more go up in 50 MiB parts). ``CKPTMIGRATE_UPLOAD_PART_SIZE``
    overrides it: S3 takes parts of 5 MiB and more, which makes tests exercise multipart."""
    return _positive_setting(UPLOAD_PART_ENV, "bytes", "the store client's default")


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


def _connection_options(url: str) -> dict[str, Any]:
    """What the URL's filesystem is opened with beyond the user's fsspec configuration:
    for S3, a connection pool as large as the requests a reader keeps in flight. botocore
    pools 10 connections by default, and a request finding none free waits for one, so
    ``remote_concurrency()`` requests in flight were 10 on the wire. A pool size the user
    configured (``FSSPEC_S3_CONFIG_KWARGS``, fsspec's config files) is theirs to keep."""
    from fsspec.config import conf
    from fsspec.core import split_protocol

    protocol = (split_protocol(url)[0] or "").lower()
    if protocol not in {"s3", "s3a"}:
        return {}
    configured = conf.get(protocol, {}).get("config_kwargs") or {}
    if not isinstance(configured, dict) or "max_pool_connections" in configured:
        return {}
    # Never fewer than botocore's 10: uploads' parallel parts share the pool.
    pool = max(_BOTOCORE_POOL, remote_concurrency())
    return {"config_kwargs": {**configured, "max_pool_connections": pool}}


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
            fs, path = url_to_fs(url, **_connection_options(url))
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
        """The whole object (an index, a state file); a transient failure is retried."""
        return with_retries(lambda: bytes(self.fs.cat_file(self.path)))

    def read_text(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return self.read_bytes().decode(encoding, errors)

    def open_buffered(self, block_size: int = 1 << 20) -> StoreFile:
        """A seekable binary file reading ahead ``block_size`` bytes per request, for
        formats read through a library that wants a file (zipfile)."""
        with store_errors(self):
            return StoreFile(self, self.fs.open(self.path, "rb", block_size=block_size))

    def read_range(self, start: int, end: int) -> bytes:
        """Bytes [start, end) (fewer at the end of the file); a transient failure is
        retried (``with_retries``)."""
        return with_retries(lambda: bytes(self.fs.cat_file(self.path, start=start, end=end)))

    def download(self, target: Path, buffer: int | None = None) -> int:
        """Copy the whole file to the local ``target`` in ranged reads of ``buffer`` bytes
        (bounded memory, requests like tensor reads); returns its size."""
        size = self.stat().st_size
        step = buffer or read_buffer()
        ranges = [(start, min(start + step, size)) for start in range(0, size, step)]
        with target.open("wb") as out:
            chunks = fetched_in_order(self.read_range, ranges, remote_concurrency())
            for (start, end), chunk in zip(ranges, chunks, strict=True):
                if len(chunk) != end - start:
                    raise OSError(f"{self.url} ended at byte {start + len(chunk)} of {size}")
                out.write(chunk)
        return size

    # -- writing: each call finishes or is cancelled before control comes back --------------

    def upload(self, source: Path) -> None:
        """Put the local file ``source`` here. Object stores publish an object only when
        its upload completes (multipart included), so readers never see a partial file.
        An interrupt (Ctrl-C, SIGTERM) cancels the upload and waits for it to stop."""
        part = upload_part_size()
        extra = {} if part is None else {"chunksize": part}
        run_in_store(self.fs, _call(self.fs, "put_file", str(source), self.path, **extra))

    def copy_from(self, source: RemotePath) -> None:
        """Server-side copy within one filesystem: the bytes never come down."""
        run_in_store(self.fs, _call(self.fs, "copy", source.path, self.path))

    def delete_contents(self) -> None:
        """Delete every file under this directory, but not the directory itself: it may be
        a bucket, which ``rm(recursive=True)`` would delete too. Index files go first, so
        no reader finds a checkpoint whose data is half deleted."""
        found = self.fs.find(self.path)
        indexes = [p for p in found if p.endswith(".index")]
        for path in indexes:
            run_in_store(self.fs, _call(self.fs, "rm_file", path))
        rest = [p for p in found if p not in indexes]
        if rest:
            run_in_store(self.fs, _call(self.fs, "rm", rest))
        self.fs.invalidate_cache(self.path)

    def same_filesystem(self, other: Path | RemotePath) -> bool:
        return isinstance(other, RemotePath) and other.fs is self.fs


# -- calls on the store's event loop ---------------------------------------------------------
#
# fsspec runs every store request as a coroutine on its own event-loop thread; its sync
# wrappers wait for it, and a KeyboardInterrupt raised while they wait leaves the request
# running: a PUT in flight when Ctrl-C arrived would land after the clean-up deleted what
# had been uploaded. Here the waiting thread cancels the coroutine and waits for it to stop.


class _Pending:
    """One store call: its task on the loop, once it runs, and whether it was cancelled."""

    __slots__ = ("cancelled", "done", "task")

    def __init__(self) -> None:
        import concurrent.futures

        self.task: asyncio.Task[Any] | None = None
        self.cancelled = False
        self.done: concurrent.futures.Future[Any] = concurrent.futures.Future()

    async def run(self, make: Callable[[], Awaitable[Any]]) -> None:
        import asyncio

        self.task = asyncio.current_task()
        if self.cancelled:  # interrupted before the call started
            return
        try:
            result = await make()
        except BaseException as e:  # CancelledError too: the waiting thread reads it
            if not self.done.done():
                self.done.set_exception(e)
            if not isinstance(e, Exception):
                raise
        else:
            if not self.done.done():
                self.done.set_result(result)

    def cancel(self) -> None:  # on the loop's thread
        self.cancelled = True
        if self.task is not None and not self.task.done():
            self.task.cancel()
        elif not self.done.done():  # never started (or never will): nothing to wait for
            import asyncio

            self.done.set_exception(asyncio.CancelledError())


def _loop_of(fs: Any) -> asyncio.AbstractEventLoop:
    import fsspec.asyn

    loop: asyncio.AbstractEventLoop | None = (
        getattr(fs, "loop", None) if getattr(fs, "async_impl", False) else None
    )
    loop = loop or fsspec.asyn.get_loop()
    _quiet_unretrieved(loop)
    return loop


def _quiet_unretrieved(loop: asyncio.AbstractEventLoop) -> None:
    """Drop asyncio's "Task exception was never retrieved" reports on fsspec's loop, which
    runs only store calls. A store client's concurrent parts (s3fs uploads a file's parts
    with asyncio.gather) fail together when a connection drops; the first failure is
    reported (and the upload cleaned up), the others would each print a traceback."""
    if getattr(loop, "_ckptmigrate_quiet", False):
        return
    previous = loop.get_exception_handler()

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if "never retrieved" in str(context.get("message", "")):
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)
    loop._ckptmigrate_quiet = True  # type: ignore[attr-defined]


def _wait_uninterrupted(done: concurrent.futures.Future[Any], seconds: float) -> bool:
    """Wait up to ``seconds`` for ``done``, ignoring Ctrl-C and SIGTERM meanwhile (what is
    being waited for is the clean-up they asked for); whether it is done."""
    import concurrent.futures

    deadline = time.monotonic() + seconds
    while not done.done() and time.monotonic() < deadline:
        try:
            concurrent.futures.wait([done], timeout=0.1)
        except KeyboardInterrupt:
            continue
    return done.done()


def run_in_store(fs: Any, make: Callable[[], Awaitable[T]]) -> T:
    """Run the coroutine ``make()`` on the store's event loop and wait for its result. If
    this thread is interrupted meanwhile (Ctrl-C, SIGTERM), the coroutine is cancelled and
    waited for (up to ``SETTLE_SECONDS``) before the interrupt goes on, so a request the
    interrupt cut short does not complete behind the caller's back."""
    import asyncio

    loop = _loop_of(fs)
    pending = _Pending()
    try:
        asyncio.run_coroutine_threadsafe(pending.run(make), loop)
        return pending.done.result()  # type: ignore[no-any-return]
    except BaseException:
        if not pending.done.done():
            loop.call_soon_threadsafe(pending.cancel)
            _wait_uninterrupted(pending.done, SETTLE_SECONDS)
        raise


def _call(fs: Any, name: str, *args: Any, **kwargs: Any) -> Callable[[], Awaitable[Any]]:
    """A maker of the coroutine ``fs.<name>(*args, **kwargs)`` for run_in_store."""
    return functools.partial(_store_call, fs, name, *args, **kwargs)


async def _store_call(fs: Any, name: str, *args: Any, **kwargs: Any) -> Any:
    """``fs.<name>(*args)`` as a coroutine: the async implementation's own, or the sync
    method in a worker thread for filesystems without one."""
    if getattr(fs, "async_impl", False):
        return await getattr(fs, f"_{name}")(*args, **kwargs)
    import asyncio

    return await asyncio.to_thread(getattr(fs, name), *args, **kwargs)


def remove_objects(objects: Sequence[RemotePath]) -> list[RemotePath]:
    """Delete ``objects`` in the given order (put the index first), abort unfinished
    multipart uploads to them, then look again, repeatedly, for any that came back (a PUT
    the server finished after the delete) until none has, within ``CLEANUP_SECONDS``.
    Ctrl-C and SIGTERM do not stop it. Returns the objects still there (all of them when
    the store could not be asked)."""
    if not objects:
        return []
    import asyncio

    fs = objects[0].fs
    pending = _Pending()
    paths = [o.path for o in objects]
    asyncio.run_coroutine_threadsafe(pending.run(lambda: _remove(fs, paths)), _loop_of(fs))
    if not _wait_uninterrupted(pending.done, CLEANUP_SECONDS + 5):
        _loop_of(fs).call_soon_threadsafe(pending.cancel)
        return list(objects)
    if pending.done.exception() is not None:
        return list(objects)
    left: list[str] = pending.done.result()
    return [o for o in objects if o.path in left]


async def _remove(fs: Any, paths: list[str]) -> list[str]:
    import asyncio

    left = paths
    deadline = time.monotonic() + CLEANUP_SECONDS
    for delay in _CHECK_DELAYS:
        for bucket, key, upload_id in await _unfinished_uploads(fs, paths) or ():
            await _try(
                fs._call_s3("abort_multipart_upload", Bucket=bucket, Key=key, UploadId=upload_id)
            )
        for path in left:
            await _try(_store_call(fs, "rm_file", path))
        await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        fs.invalidate_cache()
        present = [await _try(_store_call(fs, "exists", p), default=True) for p in paths]
        left = [p for p, there in zip(paths, present, strict=True) if there]
        if not left and await _unfinished_uploads(fs, paths) == []:
            return []
        if time.monotonic() >= deadline:
            break
    return left


async def _try(call: Awaitable[Any], default: Any = None) -> Any:
    """One clean-up call, bounded; a failure counts as not done (the caller looks again)."""
    import asyncio

    try:
        return await asyncio.wait_for(call, _CALL_SECONDS)
    except Exception:
        return default


async def _unfinished_uploads(fs: Any, paths: list[str]) -> list[tuple[str, str, str]] | None:
    """(bucket, key, upload id) of every unfinished S3 multipart upload to ``paths`` (other
    stores have none, or expire theirs); None when the store could not be asked."""
    if not hasattr(fs, "_call_s3"):
        return []
    keys: dict[str, set[str]] = {}
    for path in paths:
        bucket, key, _ = fs.split_path(path)
        keys.setdefault(bucket, set()).add(key)
    found = []
    for bucket, wanted in keys.items():
        prefix = os.path.commonprefix(sorted(wanted))  # noqa: RUF071 (S3 prefixes are strings)
        listed = await _try(fs._call_s3("list_multipart_uploads", Bucket=bucket, Prefix=prefix))
        if listed is None:
            return None
        uploads = listed.get("Uploads", [])
        found += [(bucket, u["Key"], u["UploadId"]) for u in uploads if u["Key"] in wanted]
    return found
