"""Interrupted and cut-off writes: what the store or the directory holds afterwards.

Uploads run against moto's S3 server on loopback behind a small TCP proxy that cuts a
connection after a chosen number of bytes, or sends SIGTERM to the converting CLI process
when the upload reaches a chosen byte; after every trial the store must hold either nothing
(the state before) or the complete new checkpoint, never an index without its data, and no
unfinished multipart upload, with one clean message. ``CKPTMIGRATE_FAULT_TRIALS`` sets the
number of trials of each kind (``make soak``: 60); the normal suite runs a handful.
"""

from __future__ import annotations

import contextlib
import os
import random
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_remote import bucket, listing, s3, s3_endpoint  # noqa: F401 (fixtures)

import ckptmigrate
from ckptmigrate.formats.bundle_writer import BundleWriter

TRIALS_ENV = "CKPTMIGRATE_FAULT_TRIALS"
PART = 5 << 20  # S3's smallest multipart part: the 12 MiB output shard goes up in 3 parts
BIG = 6 << 20  # float32 elements: a 24 MiB source, cast to a 12 MiB float16 output


def trials(default: int) -> int:
    return int(os.environ.get(TRIALS_ENV, default))


class Proxy:
    """A TCP proxy on 127.0.0.1 in front of the S3 server. Armed with a byte count, it acts
    when the client-to-server stream (every connection together) passes that byte: it cuts
    the connection carrying it (a TCP reset) or calls ``on_byte`` (to send a signal).
    Connections after that pass through. Every socket has a timeout; ``close`` stops it."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.sent = 0
        self.fire_at: int | None = None
        self.on_byte: Callable[[], None] | None = None
        self.fired = False
        self.outage = self.down_until = 0.0
        self.stopping = threading.Event()
        self.sockets: set[socket.socket] = set()
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def arm(
        self, at: int | None, on_byte: Callable[[], None] | None = None, outage: float = 0.0
    ) -> None:
        """Act at byte ``at``: call ``on_byte``, or cut the connection carrying it; with an
        ``outage``, cut every open connection and refuse new ones for that many seconds."""
        with self.lock:
            self.sent, self.fire_at, self.on_byte, self.fired = 0, at, on_byte, False
            self.outage, self.down_until = outage, 0.0

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if time.monotonic() < self.down_until:
                _reset(client)
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.sockets |= {client, server}
            thread = threading.Thread(target=self._pump, args=(client, server), daemon=True)
            thread.start()
            self.threads.append(thread)

    def _pump(self, client: socket.socket, server: socket.socket) -> None:
        deadline = time.monotonic() + 120  # bounded, whatever the peers do
        try:
            while not self.stopping.is_set() and time.monotonic() < deadline:
                ready, _, _ = select.select([client, server], [], [], 0.2)
                for sock in ready:
                    data = sock.recv(1 << 16)
                    if not data:
                        return
                    if sock is client and self._passes(len(data)):
                        return
                    (server if sock is client else client).sendall(data)
        except (OSError, ValueError):  # ValueError: an outage closed the socket under us
            return
        finally:
            for sock in (client, server):
                _reset(sock)
                with self.lock:
                    self.sockets.discard(sock)

    def _passes(self, size: int) -> bool:
        """Count ``size`` upload bytes; True when this connection is to be cut here."""
        with self.lock:
            self.sent += size
            if self.fired or self.fire_at is None or self.sent < self.fire_at:
                return False
            self.fired = True
            on_byte = self.on_byte
            if on_byte is None and self.outage:
                self.down_until = time.monotonic() + self.outage
                for sock in list(self.sockets):
                    _reset(sock)
        if on_byte is None:
            return True
        on_byte()
        return False

    def close(self) -> None:
        self.stopping.set()
        self.listener.close()
        with self.lock:
            for sock in list(self.sockets):
                _reset(sock)
        for thread in self.threads:
            thread.join(timeout=5)


def _reset(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


@pytest.fixture(scope="module")
def proxy(s3_endpoint: str) -> Iterator[Proxy]:  # noqa: F811
    host, port = s3_endpoint.removeprefix("http://").split(":")
    running = Proxy((host, int(port)))
    try:
        yield running
    finally:
        running.close()


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A local 24 MiB checkpoint (written without TensorFlow) and a map casting it to
    float16, so the output is written here and uploaded (a 12 MiB shard: multipart)."""
    root = tmp_path_factory.mktemp("interrupted")
    rng = np.random.default_rng(0)
    with BundleWriter(root / "big", "model.ckpt-7") as writer:
        writer.add_array("big/kernel", rng.standard_normal(BIG, dtype=np.float32))
        writer.add_array("small/bias", np.arange(4, dtype=np.float32))
        writer.add_array("global_step", np.array(7, np.int64))
        writer.commit()
    cast = root / "cast.yaml"
    cast.write_text(
        "version: 1\nrules:\n  - match: '(big|small)/.*'\n"
        "    cast: {dtype: float16, allow_precision_loss: true}\n"
    )
    return root / "big" / "model.ckpt-7", cast


COMPLETE = [
    "checkpoint",
    "ckptmigrate-provenance.json",
    "model.ckpt-7.data-00000-of-00001",
    "model.ckpt-7.index",
]


def multipart_uploads(url: str) -> list[str]:
    fs = s3()
    bucket_name, _, prefix = url.removeprefix("s3://").partition("/")
    found = fs.call_s3("list_multipart_uploads", Bucket=bucket_name, Prefix=prefix)
    return [u["Key"] for u in found.get("Uploads", [])]


def assert_all_or_nothing(url: str, returncode: int, stderr: str) -> str:
    """The invariant after any trial; returns which state the store is in."""
    objects = listing(url)
    assert multipart_uploads(url) == [], "an unfinished multipart upload was left"
    assert "Traceback" not in stderr, stderr
    assert "never retrieved" not in stderr, stderr
    # Progress lines (a log gets one every few seconds) are not messages.
    lines = [x for x in stderr.strip().splitlines() if not x.startswith("converting: ")]
    assert len(lines) <= 2, stderr
    if any(name.endswith(".index") for name in objects):
        # Never an index without all its data: the checkpoint reads and every CRC holds.
        with ckptmigrate.open_checkpoint(f"{url}/model.ckpt-7") as ckpt:
            assert ckpt.reader.verify() > 0
    if returncode == 0:
        assert objects == COMPLETE, (objects, stderr)
        return "written"
    if (
        returncode == 130
        and lines
        and lines[0].startswith(f"interrupted: {url}/model.ckpt-7 was written")
    ):
        assert objects == COMPLETE, (objects, stderr)
        return "written, then interrupted"
    assert objects == [], (returncode, objects, stderr)
    if returncode == 130:
        assert lines == ["interrupted; nothing was written"], stderr
        return "interrupted, nothing left"
    assert returncode == 2, (returncode, stderr)
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: "), stderr
    return "failed, nothing left"


def convert_cli(
    source: tuple[Path, Path], output: str, endpoint: str, **popen: Any
) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "FSSPEC_S3_ENDPOINT_URL": endpoint,
        "CKPTMIGRATE_UPLOAD_PART_SIZE": str(PART),
    }
    prefix, cast = source
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ckptmigrate",
            "convert",
            str(prefix),
            "-m",
            str(cast),
            "-o",
            output,
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def upload_size(source: tuple[Path, Path], bucket: str, proxy: Proxy) -> int:  # noqa: F811
    """Bytes a whole conversion sends through the proxy (it must succeed)."""
    proxy.arm(None)
    done = convert_cli(source, f"{bucket}/measure", proxy.endpoint)
    _, stderr = done.communicate(timeout=120)
    assert done.returncode == 0, stderr
    assert listing(f"{bucket}/measure") == COMPLETE
    assert multipart_uploads(f"{bucket}/measure") == []
    return proxy.sent


@pytest.mark.slow  # fault trials / a browser run: make test, not make check
def test_connections_cut_at_random_points_leave_all_or_nothing(
    source: tuple[Path, Path],
    bucket: str,  # noqa: F811
    proxy: Proxy,
) -> None:
    total = upload_size(source, bucket, proxy)
    rng = random.Random(os.environ.get("CKPTMIGRATE_FAULT_SEED", "cut"))
    outcomes: dict[str, int] = {}
    for trial in range(trials(3)):
        at = rng.randrange(1, total)
        # Every other trial the store is then unreachable for 5-15 s: the client's retries
        # run out (the upload fails), and the clean-up has to wait it out.
        proxy.arm(at, outage=rng.uniform(5, 15) if trial % 2 else 0.0)
        out = f"{bucket}/c{trial:06d}"
        run = convert_cli(source, out, proxy.endpoint)
        _, stderr = run.communicate(timeout=180)
        state = assert_all_or_nothing(out, run.returncode, stderr)
        outcomes[state] = outcomes.get(state, 0) + 1
    print(f"connection cuts: {outcomes}")


@pytest.mark.slow  # fault trials / a browser run: make test, not make check
def test_sigterm_at_random_points_of_the_upload_leaves_all_or_nothing(
    source: tuple[Path, Path],
    bucket: str,  # noqa: F811
    proxy: Proxy,
) -> None:
    total = upload_size(source, bucket, proxy)
    rng = random.Random(os.environ.get("CKPTMIGRATE_FAULT_SEED", "sigterm"))
    outcomes: dict[str, int] = {}
    for trial in range(trials(4)):
        out = f"{bucket}/t{trial:06d}"  # as long as "measure": requests of the same size
        run = convert_cli(source, out, proxy.endpoint)
        # Mostly during the upload, at a random byte; sometimes right at its end.
        at = rng.randrange(1, total) if trial % 4 else total - rng.randrange(100, 3000)
        proxy.arm(at, lambda run=run: run.send_signal(signal.SIGTERM))
        _, stderr = run.communicate(timeout=180)
        time.sleep(0.5)  # a PUT still in flight would land by now
        state = assert_all_or_nothing(out, run.returncode, stderr)
        if not proxy.fired:  # requests vary by a few bytes: this one ended before `at`
            state = "finished before the signal"
        outcomes[state] = outcomes.get(state, 0) + 1
    print(f"SIGTERM trials: {outcomes}")


# -- replacing a local output (--force): the output is the old one or the new one --------


@pytest.fixture
def two_sources(tmp_path: Path) -> tuple[Path, Path, Path]:
    """Two small checkpoints, 'old' (w = 0..3) and 'new' (w = 10..13), and a cast map."""
    for name, start in (("old", 0), ("new", 10)):
        with BundleWriter(tmp_path / name, "model.ckpt-1") as writer:
            writer.add_array("w", np.arange(start, start + 4, dtype=np.float32))
            writer.commit()
    cast = tmp_path / "cast.yaml"
    cast.write_text("version: 1\nrules:\n  - match: 'w'\n    cast: float64\n")
    return tmp_path / "old" / "model.ckpt-1", tmp_path / "new" / "model.ckpt-1", cast


def output_is(out: Path) -> str:
    """Which complete checkpoint ``out`` holds: 'old' or 'new' (anything else fails)."""
    assert out.is_dir(), f"{out} is missing"
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoint",
        "ckptmigrate-provenance.json",
        "model.ckpt-1.data-00000-of-00001",
        "model.ckpt-1.index",
    ]
    with ckptmigrate.open_checkpoint(out) as ckpt:
        assert ckpt.reader.verify() == 32
        first = float(ckpt.reader.read("w")[0])
    return {0.0: "old", 10.0: "new"}[first]


def hidden(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def convert_force(source: Path, cast: Path, out: Path) -> Any:
    from typer.testing import CliRunner

    from ckptmigrate.cli import app

    return CliRunner().invoke(
        app, ["convert", str(source), "-m", str(cast), "-o", str(out), "--force"]
    )


def sigterm() -> None:
    """A real SIGTERM to this process: the CLI turns it into KeyboardInterrupt at the
    next bytecode, i.e. right where the caller stands."""
    os.kill(os.getpid(), signal.SIGTERM)


def once(action: Callable[[], None]) -> Callable[[], None]:
    done: list[bool] = []

    def run() -> None:
        if not done:
            done.append(True)
            action()

    return run


WRITTEN = "interrupted: {out}/model.ckpt-1 was written"
NOTHING = "interrupted; nothing was written"


def _window_cases() -> dict[str, tuple[str, str]]:
    """Each window of publish_dir, the output it must leave, and what must be said."""
    return {
        "before the exchange": ("old", NOTHING),
        "right after the exchange": ("new", "interrupted: {out} was written"),
        "while the old output is deleted": ("new", "interrupted: {out} was written"),
        "after publish_dir returned": ("new", WRITTEN),
        "between the two renames (no exchange)": ("old", NOTHING),
        "right after the second rename (no exchange)": ("new", "interrupted: {out} was written"),
    }


@pytest.mark.parametrize("window", list(_window_cases()))
def test_a_signal_in_each_window_of_replacing_leaves_the_old_or_the_new_output(
    two_sources: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch, window: str
) -> None:
    from ckptmigrate import fs
    from ckptmigrate.formats import bundle_writer

    old, new, cast = two_sources
    out = old.parent.parent / "out"
    assert convert_force(old, cast, out).exit_code == 0
    assert output_is(out) == "old"
    real_rename, real_publish = os.rename, bundle_writer.publish_dir
    # getattr: the test runs against the code before the exchange too (it must fail there)
    real_exchange = getattr(fs, "rename_exchange", None)
    real_discard = getattr(fs, "discard_staging", None)
    signal_once = once(sigterm)

    def exchange(first: Path, second: Path) -> bool:
        if window == "before the exchange":
            signal_once()
        assert real_exchange is not None
        swapped = real_exchange(first, second)
        if window == "right after the exchange":
            signal_once()
        return swapped

    def rename(source: Any, target: Any) -> None:
        real_rename(source, target)
        moved_aside = str(target).endswith(".replaced")
        if moved_aside and window.startswith("between the two renames"):
            signal_once()
        if Path(target) == out and window.startswith("right after the second rename"):
            signal_once()

    def discard(staging: Path) -> None:
        if window == "while the old output is deleted":
            signal_once()
        assert real_discard is not None
        real_discard(staging)

    def publish(*args: Any, **kwargs: Any) -> None:
        real_publish(*args, **kwargs)
        if window == "after publish_dir returned":
            signal_once()

    if "no exchange" in window:
        monkeypatch.setattr(fs, "rename_exchange", lambda first, second: False, raising=False)
        monkeypatch.setattr(os, "rename", rename)
    else:
        monkeypatch.setattr(fs, "rename_exchange", exchange, raising=False)
    monkeypatch.setattr(fs, "discard_staging", discard, raising=False)
    monkeypatch.setattr(bundle_writer, "publish_dir", publish)
    result = convert_force(new, cast, out)
    expected, message = _window_cases()[window]
    assert result.exit_code == 130, result.output
    assert result.output.strip().startswith(message.format(out=out)), result.output
    assert output_is(out) == expected
    assert hidden(out.parent) == []  # no staging, owner record or replaced output left


@pytest.mark.parametrize("step", ["the exchange", "the second rename (no exchange)"])
def test_a_failed_rename_leaves_the_old_output(
    two_sources: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    from ckptmigrate import fs

    old, new, cast = two_sources
    out = old.parent.parent / "out"
    assert convert_force(old, cast, out).exit_code == 0
    real_rename = os.rename

    def failing_exchange(first: Path, second: Path) -> bool:
        raise OSError(5, "Input/output error")

    def rename(source: Any, target: Any) -> None:
        if Path(target) == out and not str(source).endswith(".replaced"):
            raise OSError(5, "Input/output error")
        real_rename(source, target)

    if step == "the exchange":
        monkeypatch.setattr(fs, "rename_exchange", failing_exchange, raising=False)
    else:
        monkeypatch.setattr(fs, "rename_exchange", lambda first, second: False, raising=False)
        monkeypatch.setattr(os, "rename", rename)
    result = convert_force(new, cast, out)
    assert result.exit_code == 2, result.output
    assert "Input/output error" in result.output
    assert output_is(out) == "old"
    assert hidden(out.parent) == []


# -- SIGKILL: what the next run to that output finds and cleans -----------------------------

KILLED_CHILD = """
import os, signal, sys
from pathlib import Path
import numpy as np
from ckptmigrate import fs, rewrite_checkpoint
from ckptmigrate.formats import bundle_writer
source, out, where = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
real_rename = os.rename
def kill(*args):
    os.kill(os.getpid(), signal.SIGKILL)
def rename(a, b):
    real_rename(a, b)
    if str(b).endswith(".replaced"):
        kill()
if where == "between the two renames":
    fs.rename_exchange = lambda first, second: False
    os.rename = rename
else:  # while the checkpoint is staged
    bundle_writer.BundleWriter.commit = kill
rewrite_checkpoint(source, out, overwrite=True)
"""


def killed_run(source: Path, out: Path, where: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", KILLED_CHILD, str(source), str(out), where],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr


def test_the_next_run_cleans_up_after_a_killed_one(
    two_sources: tuple[Path, Path, Path],
) -> None:
    from ckptmigrate import rewrite_checkpoint

    old, new, cast = two_sources
    out = old.parent.parent / "out"
    assert convert_force(old, cast, out).exit_code == 0

    # Killed while staging: its staging directory and owner record stay behind...
    killed_run(new, out, "while staged")
    left = hidden(out.parent)
    assert len(left) == 2, left
    assert all(".ckptmigrate-dir-" in name for name in left)
    # ...until the next run to that output, which deletes them (their owner is gone).
    assert convert_force(old, cast, out).exit_code == 0
    assert hidden(out.parent) == []
    assert output_is(out) == "old"

    # Killed between the two renames of a replacement without an exchange: the output is
    # missing and the old one is in a hidden directory; the next run puts it back.
    killed_run(new, out, "between the two renames")
    assert not out.exists()
    assert any(name.endswith(".replaced") for name in hidden(out.parent))
    with pytest.raises(ckptmigrate.CkptMigrateError, match="already exists"):
        rewrite_checkpoint(new, out)
    assert output_is(out) == "old"
    assert hidden(out.parent) == []


def test_a_live_runs_staging_is_left_alone(two_sources: tuple[Path, Path, Path]) -> None:
    from ckptmigrate import fs

    old, _, _ = two_sources
    out = old.parent.parent / "out"
    staging = fs.make_staging_dir(out)  # this process: alive
    other_host = out.parent / ".out.ckptmigrate-dir-0123456789ab.owner"
    other_host.write_text('{"pid": 1, "host": "elsewhere", "output": "out"}')
    assert fs.clean_stale_staging(out) == []
    assert staging.is_dir()
    assert other_host.exists()
    fs.discard_staging(staging)
    assert hidden(out.parent) == [other_host.name]


def test_an_interrupted_force_upload_says_the_old_output_is_gone(
    bucket: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ckptmigrate.errors import InterruptedLeavingChanges
    from ckptmigrate.formats.remote import RemotePath

    out = f"{bucket}/replaced"

    def write() -> None:
        with BundleWriter(out, "model.ckpt-1", overwrite=True) as writer:
            writer.add_array("w", np.arange(4, dtype=np.float32))
            writer.commit()

    write()
    real_upload = RemotePath.upload

    def interrupted_upload(self: RemotePath, source: Path) -> None:
        if self.name.endswith(".index"):
            raise KeyboardInterrupt
        real_upload(self, source)

    monkeypatch.setattr(RemotePath, "upload", interrupted_upload)
    with pytest.raises(InterruptedLeavingChanges, match="old contents had been deleted"):
        write()
    assert listing(out) == []
