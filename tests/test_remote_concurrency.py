"""Concurrent reads from a store (issue 16, item 2), against moto's S3 server on loopback:
several ranged requests in flight (chunks of one large tensor, tensors read ahead of the
writer), transient failures retried with backoff, corrupt data never retried, and the
output byte for byte the one a local source gives."""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import file_digests, same_bits, tf_save
from hypothesis import given, settings
from hypothesis import strategies as st
from test_remote import big, bucket, s3_endpoint, upload  # noqa: F401  (fixtures)

import ckptmigrate
from ckptmigrate.errors import ChecksumMismatchError, CkptMigrateError, CorruptCheckpointError
from ckptmigrate.formats import remote
from ckptmigrate.formats.bundle_proto import BundleEntry
from ckptmigrate.formats.bundle_reader import BundleReader, RemoteBundleReader, _runs
from ckptmigrate.formats.remote import RemotePath


class InFlight:
    """Wraps the store client's ranged read: counts requests and the most at once."""

    def __init__(self, store: Any, monkeypatch: pytest.MonkeyPatch, delay: float = 0.02) -> None:
        self.now = self.most = self.requests = 0
        self._lock = threading.Lock()
        real = store.cat_file

        def cat_file(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                self.now += 1
                self.requests += 1
                self.most = max(self.most, self.now)
            try:
                time.sleep(delay)  # a store's latency, so requests overlap if they can
                return real(*args, **kwargs)
            finally:
                with self._lock:
                    self.now -= 1

        monkeypatch.setattr(store, "cat_file", cat_file)


@pytest.fixture
def many(tf: Any, tmp_path: Path, bucket: str) -> tuple[str, Path]:  # noqa: F811
    rng = np.random.default_rng(2)
    tensors = {f"layer_{i}/kernel": rng.standard_normal((16, 16)).astype("f4") for i in range(40)}
    tensors["names"] = np.array([b"a", b"b"], dtype=object)
    local = tmp_path / "many"
    local.mkdir()
    tf_save(tf, local / "model.ckpt", tensors)
    upload(local, f"{bucket}/many")
    return f"{bucket}/many/model.ckpt", local / "model.ckpt"


def test_tensors_are_read_ahead_concurrently_and_the_output_is_the_local_one(
    many: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, local = many
    (tmp_path / "m.yaml").write_text(
        "version: 1\nrules:\n  - {match: 'layer_(\\d+)/(.*)', rename: 'dense_{1}/{2}'}\n"
        "  - {name: dense_3/kernel, cast: float64}\n"
    )
    ckptmigrate.convert(local, tmp_path / "m.yaml", tmp_path / "from-local", workers=1)
    expected = file_digests(tmp_path / "from-local")
    # Neighbouring copies are fetched together: the 39 copied 1 KiB kernels in a few
    # requests with the default 8 MiB buffer, in about 20 concurrent ones with a 2 KiB one.
    together = InFlight(RemotePath.from_url(url).fs, monkeypatch)
    ckptmigrate.convert(url, tmp_path / "m.yaml", tmp_path / "together")
    assert file_digests(tmp_path / "together") == expected
    assert together.requests <= 6, together.requests
    monkeypatch.setenv(remote.READ_BUFFER_ENV, "2048")
    flight = InFlight(RemotePath.from_url(url).fs, monkeypatch)
    ckptmigrate.convert(url, tmp_path / "m.yaml", tmp_path / "from-store")
    assert file_digests(tmp_path / "from-store") == expected
    assert 4 <= flight.most <= remote.DEFAULT_CONCURRENCY, flight.most
    assert 20 <= flight.requests <= 26, flight.requests
    sequential = InFlight(RemotePath.from_url(url).fs, monkeypatch)
    ckptmigrate.convert(url, tmp_path / "m.yaml", tmp_path / "one-at-a-time", workers=1)
    assert sequential.most == 1
    assert file_digests(tmp_path / "one-at-a-time") == expected


def test_a_large_tensor_is_fetched_in_concurrent_chunks_in_order(
    big: tuple[str, dict[str, np.ndarray], Path],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, tensors, _ = big
    flight = InFlight(RemotePath.from_url(url).fs, monkeypatch)
    reader = RemoteBundleReader(RemotePath.from_url(url), read_buffer=1 << 18, concurrency=4)
    flight.requests = 0  # the index
    assert same_bits(reader.read("big/kernel"), tensors["big/kernel"])
    assert flight.most == 4
    assert flight.requests == -(-tensors["big/kernel"].nbytes // (1 << 18))


class AtServer:
    """Counts the ranged GETs moto's server holds at once (what reached it over the
    connections, not what the client queued), holding each ``delay`` seconds."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, delay: float = 0.2) -> None:
        from moto.moto_server import threaded_moto_server

        app = threaded_moto_server.DomainDispatcherApplication
        real = app.__call__
        self.now = self.most = 0
        lock = threading.Lock()

        def call(app: Any, environ: dict[str, Any], start_response: Any) -> Any:
            if "HTTP_RANGE" not in environ:
                return real(app, environ, start_response)
            with lock:
                self.now += 1
                self.most = max(self.most, self.now)
            try:
                time.sleep(delay)
                return real(app, environ, start_response)
            finally:
                with lock:
                    self.now -= 1

        monkeypatch.setattr(app, "__call__", call)


@pytest.mark.parametrize("configured", [None, 4])
def test_the_connection_pool_holds_every_request_in_flight(
    big: tuple[str, dict[str, np.ndarray], Path],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    configured: int | None,
) -> None:
    """botocore pools 10 connections unless told otherwise: 16 requests in flight must
    reach the store as 16, not 10 plus 6 waiting for a connection; a pool size the user
    configured for fsspec is kept."""
    import fsspec.config

    url, tensors, _ = big
    if configured is not None:
        conf = {**fsspec.config.conf["s3"], "config_kwargs": {"max_pool_connections": configured}}
        monkeypatch.setitem(fsspec.config.conf, "s3", conf)
    server = AtServer(monkeypatch)
    reader = RemoteBundleReader(RemotePath.from_url(url), read_buffer=1 << 16, concurrency=16)
    assert same_bits(reader.read("big/kernel"), tensors["big/kernel"])
    if configured is None:
        assert 10 < server.most <= remote.DEFAULT_CONCURRENCY, server.most
    else:
        assert server.most == configured


def test_transient_failures_are_retried_and_definitive_ones_are_not(
    big: tuple[str, dict[str, np.ndarray], Path],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, tensors, _ = big
    monkeypatch.setattr(remote, "RETRY_DELAYS", (0.0, 0.0, 0.0))
    store = RemotePath.from_url(url).fs
    real = store.cat_file
    reader = RemoteBundleReader(RemotePath.from_url(url), concurrency=1)
    failures = {"left": 2, "calls": 0}

    def flaky(*args: Any, **kwargs: Any) -> Any:
        failures["calls"] += 1
        if failures["left"]:
            failures["left"] -= 1
            raise ConnectionResetError("connection reset by peer")
        return real(*args, **kwargs)

    monkeypatch.setattr(store, "cat_file", flaky)
    assert same_bits(reader.read("small/bias"), tensors["small/bias"])
    assert failures["calls"] == 3

    def gone(*args: Any, **kwargs: Any) -> Any:
        failures["calls"] += 1
        raise FileNotFoundError("no such key")

    monkeypatch.setattr(store, "cat_file", gone)
    failures["calls"] = 0
    with pytest.raises(CkptMigrateError, match="cannot read from the store"):
        reader.read("small/bias")
    assert failures["calls"] == 1

    def always(*args: Any, **kwargs: Any) -> Any:
        failures["calls"] += 1
        raise TimeoutError("read timed out")

    monkeypatch.setattr(store, "cat_file", always)
    failures["calls"] = 0
    with pytest.raises(CkptMigrateError, match="TimeoutError"):
        reader.read("small/bias")
    assert failures["calls"] == 1 + len(remote.RETRY_DELAYS)


def test_the_concurrency_setting_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(remote.CONCURRENCY_ENV, "0")
    with pytest.raises(CkptMigrateError, match="CKPTMIGRATE_REMOTE_CONCURRENCY must be"):
        remote.remote_concurrency()
    monkeypatch.setenv(remote.CONCURRENCY_ENV, "3")
    assert remote.remote_concurrency() == 3


def test_neighbouring_tensors_are_checked_in_a_few_requests(
    many: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`inspect --check-crc` of a checkpoint of many small tensors on a store: one request
    per run of neighbours (up to the read buffer), not one round trip per tensor."""
    url, local = many
    with BundleReader(local) as here:
        expected = here.verify()
        packed = sum(e.size for k, e in here.entries.items() if e.dtype != 7)  # not strings
    for buffer, most in ((8 << 10, -(-packed // (8 << 10)) + 1), (None, 1)):
        reader = RemoteBundleReader(RemotePath.from_url(url), read_buffer=buffer, concurrency=4)
        flight = InFlight(RemotePath.from_url(url).fs, monkeypatch)
        seen: list[int] = []
        assert reader.verify(on_tensor=seen.append) == expected
        assert sum(seen) == expected
        assert len(seen) == len(reader.stored_keys())
        # the runs of packed tensors, then the string tensor alone
        assert flight.requests <= most + 1, (buffer, flight.requests)
        if buffer is not None:
            assert flight.most > 1


@pytest.fixture
def damaged(many: tuple[str, Path], tmp_path: Path, bucket: str) -> str:  # noqa: F811
    """``many`` with one bit of layer_17/kernel flipped, uploaded: its URL."""
    _, local = many
    copy = tmp_path / "damaged"
    copy.mkdir()
    for path in local.parent.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    with BundleReader(local) as here:
        entry = here.entries["layer_17/kernel"]
    data = copy / "model.ckpt.data-00000-of-00001"
    raw = bytearray(data.read_bytes())
    raw[entry.offset + entry.size // 2] ^= 0x40
    data.write_bytes(bytes(raw))
    upload(copy, f"{bucket}/damaged")
    return f"{bucket}/damaged/model.ckpt"


def test_run_reads_from_many_threads_fetch_each_run_once(
    many: tuple[str, Path], damaged: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """convert's read-ahead: tensors asked for from several threads, in any order, get
    their own bytes; each run is one request; a corrupt one is named."""
    url, local = many
    reader = RemoteBundleReader(RemotePath.from_url(url), read_buffer=4 << 10)
    keys = [k for k, e in reader.entries.items() if e.dtype != 7]
    reads = reader.in_runs(keys)
    order = list(keys)
    random.Random(3).shuffle(order)
    flight = InFlight(RemotePath.from_url(url).fs, monkeypatch)
    with BundleReader(local) as here, ThreadPoolExecutor(8) as pool:
        got = dict(zip(order, pool.map(reads.read_stored_bytes, order), strict=True))
        assert all(got[k] == here.read_stored_bytes(k) for k in keys)
    assert flight.requests == -(-len(keys) // 4)  # four 1 KiB kernels a request
    assert reads.read_stored_bytes(keys[0]) == got[keys[0]]  # again: read on its own

    broken = RemoteBundleReader(RemotePath.from_url(damaged), read_buffer=4 << 10)
    reads = broken.in_runs(keys)
    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(lambda k: _outcome(reads.read_stored_bytes, k), keys))
    failed = {k: outcome for k, outcome in zip(keys, outcomes, strict=True) if outcome}
    assert failed == {"layer_17/kernel": "layer_17/kernel"}


def _outcome(read: Any, key: str) -> str | None:
    """The variable a checksum failure names, reading ``key``; None if it reads."""
    try:
        read(key)
    except ChecksumMismatchError as e:
        return e.variable
    return None


def test_a_checksum_failure_inside_a_run_names_its_tensor(
    damaged: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = damaged
    with pytest.raises(ChecksumMismatchError) as failed:
        ckptmigrate.inspect_checkpoint(url, check_crc=True)
    assert failed.value.variable == "layer_17/kernel"

    # A store answering with fewer bytes than asked: the first tensor it cuts is named,
    # the last of the first run (four 1 KiB kernels side by side fill a 4 KiB request).
    reader = RemoteBundleReader(RemotePath.from_url(url), read_buffer=4 << 10, concurrency=2)
    packed = sorted(
        (e.offset, k) for k, e in reader.entries.items() if e.dtype != 7 and not e.slices
    )
    store = RemotePath.from_url(url).fs
    real = store.cat_file
    monkeypatch.setattr(store, "cat_file", lambda *a, **k: real(*a, **k)[:-10])
    with pytest.raises(CorruptCheckpointError, match="data ends before") as cut:
        reader.verify()
    assert cut.value.variable == packed[3][1]


@settings(max_examples=200, deadline=None)
@given(
    entries=st.lists(
        st.tuples(st.integers(0, 2), st.integers(0, 1 << 20), st.integers(0, 1 << 12)),
        max_size=60,
    ),
    most=st.integers(1 << 12, 1 << 16),
)
def test_runs_cover_every_tensor_once_within_one_shard_and_the_buffer(
    entries: list[tuple[int, int, int]], most: int
) -> None:
    named = [
        (f"t{i}", BundleEntry(1, (size // 4,), shard, offset, size, 0, (), False))
        for i, (shard, offset, size) in enumerate(entries)
    ]
    runs = _runs(named, most)
    members = [key for run in runs for key, _ in run.members]
    assert sorted(members) == sorted(key for key, _ in named)
    for run in runs:
        assert run.end - run.start <= most
        for _, entry in run.members:
            assert entry.shard_id == run.shard
            assert run.start <= entry.offset
            assert entry.offset + entry.size <= run.end


def test_a_store_failing_under_a_run_fails_the_convert_and_publishes_nothing(
    many: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A definitive failure of a request that fetches several tensors at once, while the
    copies are read ahead: the convert says which object and tensor, and leaves no output
    (nor anything staged beside where it would have been)."""
    url, _ = many
    (tmp_path / "m.yaml").write_text(
        "version: 1\nrules:\n  - {name: layer_3/kernel, cast: float64}\n"
    )
    store = RemotePath.from_url(url).fs
    real = store.cat_file
    ranged = {"calls": 0}

    def fail_the_third_run(path: str, start: int | None = None, **kwargs: Any) -> Any:
        if start is not None and str(path).endswith("-of-00001"):
            ranged["calls"] += 1
            if ranged["calls"] == 3:
                raise PermissionError("AccessDenied")
        return real(path, start=start, **kwargs)

    monkeypatch.setattr(store, "cat_file", fail_the_third_run)
    monkeypatch.setenv(remote.READ_BUFFER_ENV, "4096")  # runs of four 1 KiB kernels
    out = tmp_path / "out"
    with pytest.raises(CkptMigrateError, match="cannot read from the store") as failed:
        ckptmigrate.convert(url, tmp_path / "m.yaml", out)
    assert "data-00000-of-00001" in str(failed.value)
    assert failed.value.variable is not None
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.yaml", "many"]  # the source
