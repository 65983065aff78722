"""A read-only S3 endpoint over a local directory, for benchmarks only (issue 16, item 2).

moto's S3 server spends CPU on a ranged GET in proportion to the whole object, not the
range (1 MiB of a 64 MiB object: about 40 ms; of a 1 MiB object: 5 ms), so on two cores a
benchmark against it measures moto, not the client. This server does what a real
store does per request, little: it serves the files under ``root`` as the objects of one
bucket, a range read with ``os.pread``, and waits a fixed latency in the request's own
thread before answering, so concurrent requests overlap their waits as they would on a
network.

What it answers is exactly what s3fs (aiobotocore) asks when ckptmigrate reads a
checkpoint: HeadObject, GetObject (a ``Range`` gets 206 and ``Content-Range``),
ListObjectsV2 (prefix, delimiter, max-keys, continuation, url encoding) and HeadBucket.
Anything else is refused with S3's ``NotImplemented`` error, so a benchmark that starts
needing more fails loudly instead of measuring something else. Requests are not
authenticated: signatures are ignored.
"""

from __future__ import annotations

import email.utils
import hashlib
import os
import re
import socket
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit
from xml.sax.saxutils import escape

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_CHUNK = 1 << 20  # bytes read and sent at a time
_XMLNS = "http://s3.amazonaws.com/doc/2006-03-01/"
_ISO = "%Y-%m-%dT%H:%M:%S.000Z"  # ListObjectsV2's LastModified


class _Object:
    """A file under the root, as S3 describes an object."""

    def __init__(self, key: str, path: Path) -> None:
        stat = path.stat()
        self.key, self.path, self.size = key, path, stat.st_size
        self.modified = stat.st_mtime
        # A stable tag for this version of the file (not its MD5: nothing here checks it).
        self.etag = '"' + hashlib.md5(f"{self.size}:{stat.st_mtime_ns}".encode()).hexdigest() + '"'


class StaticS3Server:
    """Serve ``root`` as the bucket ``bucket`` on 127.0.0.1, ``latency`` seconds added to
    every request. ``start()`` returns the endpoint URL; ``stop()`` shuts it down."""

    def __init__(self, root: Path, bucket: str, latency: float) -> None:
        self.root, self.bucket, self.latency = root.resolve(), bucket, latency
        self.requests = 0  # answered so far
        self.peak = 0  # the most requests it has held at once: what concurrency reached it
        self._held = 0
        self._lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"store": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler, bind_and_activate=False)
        self._httpd.daemon_threads = True
        # 16 connections opened at once must not overflow the listen backlog (default 5):
        # a dropped SYN is retried after a second, which would be measured as latency.
        self._httpd.request_queue_size = 128
        self._httpd.server_bind()
        self._httpd.server_activate()
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> str:
        self._thread.start()
        return self.url

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def wait(self) -> None:
        """The round trip's latency, counted as a request in flight meanwhile."""
        with self._lock:
            self.requests += 1
            self._held += 1
            self.peak = max(self.peak, self._held)
        try:
            time.sleep(self.latency)
        finally:
            with self._lock:
                self._held -= 1

    def lookup(self, key: str) -> _Object | None:
        """The object ``key`` names, or None (no such file, or a key leaving the root)."""
        parts = key.split("/")
        if not key or any(p in ("", ".", "..") for p in parts):
            return None
        path = self.root.joinpath(*parts)
        return _Object(key, path) if path.is_file() else None

    def all_keys(self) -> list[str]:
        """Every object's key, in S3's order (by UTF-8 bytes)."""
        found = []
        for directory, _, files in os.walk(self.root):
            relative = Path(directory).relative_to(self.root).as_posix()
            prefix = "" if relative == "." else relative + "/"
            found += [prefix + name for name in files]
        return sorted(found, key=lambda k: k.encode())


class _Handler(BaseHTTPRequestHandler):
    store: StaticS3Server
    protocol_version = "HTTP/1.1"  # keep-alive: s3fs reuses its pooled connections

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate sends: with Nagle's algorithm on, a small
        # body waits for the client's delayed ACK of the headers (40 ms on Linux), which a
        # store's own front end does not add.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: object) -> None:
        pass

    # -- dispatch --------------------------------------------------------------------------

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def do_GET(self) -> None:
        self._serve(body=True)

    def do_PUT(self) -> None:
        self._refuse()

    def do_POST(self) -> None:
        self._refuse()

    def do_DELETE(self) -> None:
        self._refuse()

    def _refuse(self) -> None:
        self._drain()
        self.store.wait()
        self._error(501, "NotImplemented", f"{self.command} is not served (read-only store)")

    def _serve(self, body: bool) -> None:
        self._drain()
        self.store.wait()  # the network's round trip, in this request's thread
        url = urlsplit(self.path)
        bucket, _, key = unquote(url.path).lstrip("/").partition("/")
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        if bucket != self.store.bucket:
            self._error(404, "NoSuchBucket", "The specified bucket does not exist", body)
        elif key:
            if query.keys() - {"partNumber", "x-id"}:
                self._error(501, "NotImplemented", f"object query {url.query!r}", body)
            else:
                self._object(key, body)
        elif not body:  # HeadBucket
            self._reply(200, {"Content-Length": "0", "x-amz-bucket-region": "us-east-1"})
        elif query.get("list-type") == "2":
            self._list(query)
        elif "location" in query:
            self._xml(200, '<LocationConstraint xmlns="' + _XMLNS + '"></LocationConstraint>')
        else:
            self._error(501, "NotImplemented", f"bucket query {url.query!r}", body)

    # -- objects -------------------------------------------------------------------------------

    def _object(self, key: str, body: bool) -> None:
        found = self.store.lookup(key)
        if found is None:
            self._error(404, "NoSuchKey", "The specified key does not exist.", body)
            return
        start, end, status = 0, found.size, 200
        wanted = self.headers.get("Range")
        if wanted is not None:
            span = _span(wanted, found.size)
            if span is None:
                self._error(416, "InvalidRange", "The requested range is not satisfiable", body)
                return
            (start, end), status = span, 206
        headers = {
            "Content-Length": str(end - start),
            "Content-Type": "binary/octet-stream",
            "ETag": found.etag,
            "Last-Modified": email.utils.formatdate(found.modified, usegmt=True),
            "Accept-Ranges": "bytes",
        }
        if status == 206:
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{found.size}"
        self._reply(status, headers)
        if not body:
            return
        fd = os.open(found.path, os.O_RDONLY)
        try:
            while start < end:
                chunk = os.pread(fd, min(_CHUNK, end - start), start)
                if not chunk:  # the file shrank under us: end the connection short
                    self.close_connection = True
                    return
                self.wfile.write(chunk)
                start += len(chunk)
        finally:
            os.close(fd)

    # -- ListObjectsV2 -----------------------------------------------------------------------

    def _list(self, query: dict[str, str]) -> None:
        prefix = query.get("prefix", "")
        delimiter = query.get("delimiter", "")
        try:
            limit = min(int(query.get("max-keys", "1000")), 1000)
        except ValueError:
            self._error(400, "InvalidArgument", "max-keys must be an integer")
            return
        # The continuation token is the last key or common prefix already returned.
        after = query.get("continuation-token") or query.get("start-after", "")
        encode = query.get("encoding-type") == "url"
        contents: list[_Object] = []
        prefixes: list[str] = []
        truncated = False
        last = ""
        for key in self.store.all_keys():
            if not key.startswith(prefix) or key.encode() <= after.encode():
                continue
            if delimiter and delimiter in key[len(prefix) :]:
                rest = key[len(prefix) :]
                common = prefix + rest[: rest.index(delimiter) + len(delimiter)]
                if (prefixes and prefixes[-1] == common) or common.encode() <= after.encode():
                    continue
                if len(contents) + len(prefixes) == limit:
                    truncated = True
                    break
                prefixes.append(common)
                last = common
            else:
                if len(contents) + len(prefixes) == limit:
                    truncated = True
                    break
                found = self.store.lookup(key)
                if found is not None:
                    contents.append(found)
                    last = key

        def text(value: str) -> str:
            return escape(quote(value, safe="/") if encode else value)

        parts = [
            f'<ListBucketResult xmlns="{_XMLNS}">',
            f"<Name>{escape(self.store.bucket)}</Name>",
            f"<Prefix>{text(prefix)}</Prefix>",
            f"<MaxKeys>{limit}</MaxKeys>",
            f"<KeyCount>{len(contents) + len(prefixes)}</KeyCount>",
            f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>",
        ]
        if delimiter:
            parts.append(f"<Delimiter>{text(delimiter)}</Delimiter>")
        if encode:
            parts.append("<EncodingType>url</EncodingType>")
        if "continuation-token" in query:
            parts.append(
                f"<ContinuationToken>{escape(query['continuation-token'])}</ContinuationToken>"
            )
        if truncated:
            parts.append(f"<NextContinuationToken>{escape(last)}</NextContinuationToken>")
        for found in contents:
            modified = datetime.fromtimestamp(found.modified, UTC).strftime(_ISO)
            parts.append(
                f"<Contents><Key>{text(found.key)}</Key><LastModified>{modified}</LastModified>"
                f"<ETag>{escape(found.etag)}</ETag><Size>{found.size}</Size>"
                "<StorageClass>STANDARD</StorageClass></Contents>"
            )
        parts += [f"<CommonPrefixes><Prefix>{text(p)}</Prefix></CommonPrefixes>" for p in prefixes]
        parts.append("</ListBucketResult>")
        self._xml(200, "".join(parts))

    # -- replies ---------------------------------------------------------------------------------

    def _drain(self) -> None:
        """Read the request's body, if any, so the connection stays usable."""
        length = int(self.headers.get("Content-Length") or 0)
        while length > 0:
            got = self.rfile.read(min(length, _CHUNK))
            if not got:
                break
            length -= len(got)

    def _reply(self, status: int, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()

    def _xml(self, status: int, document: str, body: bool = True) -> None:
        data = ('<?xml version="1.0" encoding="UTF-8"?>\n' + document).encode()
        self._reply(status, {"Content-Type": "application/xml", "Content-Length": str(len(data))})
        if body:
            self.wfile.write(data)

    def _error(self, status: int, code: str, message: str, body: bool = True) -> None:
        resource = escape(urlsplit(self.path).path)
        document = (
            f"<Error><Code>{code}</Code><Message>{escape(message)}</Message>"
            f"<Resource>{resource}</Resource><RequestId>static</RequestId></Error>"
        )
        if not body:  # HEAD: the status says it all, as S3's own HEAD errors do
            self._reply(status, {"Content-Length": "0"})
            return
        self._xml(status, document)


def _span(header: str, size: int) -> tuple[int, int] | None:
    """[start, end) of a ``Range: bytes=a-b`` header on an object of ``size`` bytes, or
    None when it asks for nothing the object has (S3 answers 416)."""
    match = _RANGE.match(header.strip())
    if match is None or match.group(1) == match.group(2) == "":
        return None
    first, last = match.groups()
    if first == "":  # the last N bytes
        count = int(last)
        return (max(0, size - count), size) if count > 0 and size > 0 else None
    start = int(first)
    end = size if last == "" else min(int(last) + 1, size)
    return (start, end) if start < size and start < end else None
