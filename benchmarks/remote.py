"""Remote throughput, sequential vs concurrent (issue 16, item 2), against two S3 stores on
loopback, each adding a fixed latency to every request as a store across a network does:

- moto's S3 server behind a proxy that holds every request for the latency. A ranged GET
  costs moto CPU in proportion to the whole object, not the range (1 MiB of a 64 MiB
  object: about 40 ms; of a 1 MiB object: 5 ms), so on a small machine these rows
  measure moto: server-bound.
- ``static_s3.py``: the same files served read-only by a server that does little per
  request (a ``pread``) and waits the latency in the request's own thread, so concurrent
  requests overlap their waits as on a network: these rows measure the client.

    .venv/bin/python benchmarks/remote.py [--latency-ms 20] [--tensors 512] [--tensor-kib 64]
        [--big-mib 128] [--runs 3] [--store moto|static|both]

Rows per store: a `convert` from the store renaming every tensor and casting one (a
request per copied tensor, read one at a time with `--workers 1` or ahead of the writer
by default; then the defaults, neighbouring copies fetched together, against the first),
and `inspect --check-crc` of one large tensor in 1 MiB requests (one at a time with
CKPTMIGRATE_REMOTE_CONCURRENCY=1, else 16 in flight) and of the many small tensors (a
request per tensor, one at a time, against the default: neighbours fetched together).
Times are of whole commands in fresh processes; each is also run on a checkpoint of one
tensor of the same size (start-up, listing, index: the fixed cost), and the data columns
count the rest only, which is what the number of requests in flight changes. Before
timing, each store's `convert` output is checked byte for byte against the one from the
local files.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import select
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ckptmigrate import BundleWriter

sys.path.insert(0, str(Path(__file__).resolve().parent))
from static_s3 import StaticS3Server

CREDENTIALS = {"key": "testing", "secret": "testing"}
BUCKET = "bench"


class LatencyProxy:
    """TCP on 127.0.0.1 to ``upstream``, holding every client-to-server send (a request,
    or a part of one) for ``latency`` seconds before passing it on."""

    def __init__(self, upstream: tuple[str, int], latency: float) -> None:
        self.upstream, self.latency = upstream, latency
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            client, _ = self.listener.accept()
            server = socket.create_connection(self.upstream)
            # Forward at once: with Nagle's algorithm a small reply waits for an ACK.
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()

    def _pump(self, client: socket.socket, server: socket.socket) -> None:
        try:
            while True:
                ready, _, _ = select.select([client, server], [], [])
                for sock in ready:
                    data = sock.recv(1 << 16)
                    if not data:
                        return
                    if sock is client:
                        time.sleep(self.latency)
                    (server if sock is client else client).sendall(data)
        except OSError:
            return
        finally:
            client.close()
            server.close()


class Store(NamedTuple):
    label: str
    env: dict[str, str]  # what points a CLI process at it


class Row(NamedTuple):
    store: str
    label: str
    seq: float
    con: float
    seq_fixed: float
    con_fixed: float
    data_bytes: int  # what the fixed-cost run does not read


def _checkpoints(root: Path, tensors: int, kib: int, big_mib: int) -> None:
    """Under ``root``: many (``tensors`` of ``kib`` KiB), big (one ``big_mib`` MiB tensor),
    and one-tensor versions of each (many1, big1) for the fixed cost."""
    rng = np.random.default_rng(0)
    for name, count in (("many", tensors), ("many1", 1)):
        with BundleWriter(root / name, "model.ckpt") as writer:
            for i in range(count):
                writer.add_array(f"layer_{i}/kernel", rng.standard_normal(kib * 256).astype("f4"))
            writer.commit()
    for name, mib in (("big", big_mib), ("big1", 1)):
        with BundleWriter(root / name, "model.ckpt") as writer:
            writer.add_array("big/kernel", rng.standard_normal(mib * 2**18).astype("f4"))
            writer.commit()


def _digests(directory: Path) -> dict[str, str]:
    """Each file's SHA-256, but the provenance record (it names the source)."""
    return {
        f.name: hashlib.sha256(f.read_bytes()).hexdigest()
        for f in sorted(directory.iterdir())
        if f.is_file() and f.name != "ckptmigrate-provenance.json"
    }


def _run(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def _env(endpoint: str) -> dict[str, str]:
    return {
        **os.environ,
        "FSSPEC_S3_ENDPOINT_URL": endpoint,
        "FSSPEC_S3_KEY": CREDENTIALS["key"],
        "FSSPEC_S3_SECRET": CREDENTIALS["secret"],
        "AWS_DEFAULT_REGION": "us-east-1",
    }


def _measure(store: Store, work: Path, args: argparse.Namespace) -> list[Row]:
    cli = str(Path(sys.executable).with_name("ckptmigrate"))
    rename = str(work / "rename.yaml")
    out = str(work / "out")

    def convert(source: str, *flags: str) -> list[str]:
        return [cli, "convert", source, "--map", rename, "-o", out, "-q", "--force", *flags]

    def inspect(name: str) -> list[str]:
        return [cli, "inspect", f"s3://{BUCKET}/src/{name}", "--check-crc", "-q"]

    # Correctness first, unmeasured (it also warms the page cache and the server): the
    # output from the store is the one from the local files, and every CRC matches.
    _run(convert(str(work / "store" / "src" / "many"), "--workers", "1"), store.env)
    expected = _digests(Path(out))
    for flags in (("--workers", "1"), ()):
        _run(convert(f"s3://{BUCKET}/src/many", *flags), store.env)
        if _digests(Path(out)) != expected:
            raise SystemExit(f"{store.label}: convert {flags} differs from the local output")
    _run(inspect("big"), store.env)  # exits 1 on a CRC mismatch, which check=True raises

    one = {**store.env, "CKPTMIGRATE_REMOTE_CONCURRENCY": "1"}
    chunked = {**store.env, "CKPTMIGRATE_READ_BUFFER": str(1 << 20)}
    per_tensor = {**store.env, "CKPTMIGRATE_READ_BUFFER": str(args.tensor_kib << 10)}
    # Each: (sequential argv, env), (concurrent argv, env).
    cases = {
        # A request per tensor (a read buffer of one tensor), so that only the number in
        # flight differs: the copies read one at a time vs ahead of the writer.
        "convert": (
            (convert(f"s3://{BUCKET}/src/many", "--workers", "1"), per_tensor),
            (convert(f"s3://{BUCKET}/src/many"), per_tensor),
        ),
        "convert1": (
            (convert(f"s3://{BUCKET}/src/many1", "--workers", "1"), per_tensor),
            (convert(f"s3://{BUCKET}/src/many1"), per_tensor),
        ),
        # A request per tensor one at a time vs the defaults: neighbouring copies fetched
        # together, ahead of the writer.
        "convert_runs": (
            (convert(f"s3://{BUCKET}/src/many", "--workers", "1"), per_tensor),
            (convert(f"s3://{BUCKET}/src/many"), store.env),
        ),
        "convert_runs1": (
            (convert(f"s3://{BUCKET}/src/many1", "--workers", "1"), per_tensor),
            (convert(f"s3://{BUCKET}/src/many1"), store.env),
        ),
        "inspect": (
            (inspect("big"), {**chunked, **one}),
            (inspect("big"), {**chunked, "CKPTMIGRATE_REMOTE_CONCURRENCY": "16"}),
        ),
        "inspect1": (
            (inspect("big1"), {**chunked, **one}),
            (inspect("big1"), {**chunked, "CKPTMIGRATE_REMOTE_CONCURRENCY": "16"}),
        ),
        # Many small tensors: a request per tensor, one at a time (a read buffer of one
        # tensor: what every remote --check-crc did before neighbours were fetched
        # together) vs the defaults (runs of neighbours in 8 MiB requests, 16 in flight).
        "inspect_many": (
            (inspect("many"), {**per_tensor, **one}),
            (inspect("many"), store.env),
        ),
        "inspect_many1": (
            (inspect("many1"), {**per_tensor, **one}),
            (inspect("many1"), store.env),
        ),
    }
    times: dict[tuple[str, int], list[float]] = {}
    for _ in range(args.runs):  # interleaved, so a busy moment spreads over every case
        for name, pair in cases.items():
            for mode, (argv, env) in enumerate(pair):
                times.setdefault((name, mode), []).append(_run(argv, env))
    med = {key: statistics.median(values) for key, values in times.items()}
    kib = args.tensor_kib
    return [
        Row(
            store.label,
            f"`convert` rename, {args.tensors} tensors of {kib} KiB, a request each",
            med["convert", 0],
            med["convert", 1],
            med["convert1", 0],
            med["convert1", 1],
            (args.tensors - 1) * kib * 1024,
        ),
        Row(
            store.label,
            f"`convert` rename, {args.tensors} tensors of {kib} KiB: a request per tensor "
            "vs neighbours together",
            med["convert_runs", 0],
            med["convert_runs", 1],
            med["convert_runs1", 0],
            med["convert_runs1", 1],
            (args.tensors - 1) * kib * 1024,
        ),
        Row(
            store.label,
            f"`inspect --check-crc`, one {args.big_mib} MiB tensor in 1 MiB requests",
            med["inspect", 0],
            med["inspect", 1],
            med["inspect1", 0],
            med["inspect1", 1],
            (args.big_mib - 1) << 20,
        ),
        Row(
            store.label,
            f"`inspect --check-crc`, {args.tensors} tensors of {kib} KiB: a request per "
            "tensor vs neighbours together",
            med["inspect_many", 0],
            med["inspect_many", 1],
            med["inspect_many1", 0],
            med["inspect_many1", 1],
            (args.tensors - 1) * kib * 1024,
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--tensors", type=int, default=512)
    parser.add_argument("--tensor-kib", type=int, default=64)
    parser.add_argument("--big-mib", type=int, default=128)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--store", choices=["moto", "static", "both"], default="both")
    args = parser.parse_args()
    latency = args.latency_ms / 1000

    import logging

    import s3fs
    from moto.server import ThreadedMotoServer

    rows: list[Row] = []
    peaks: list[str] = []
    with tempfile.TemporaryDirectory(prefix="ckptmigrate-remote-bench-") as tmp:
        work = Path(tmp)
        _checkpoints(work / "store" / "src", args.tensors, args.tensor_kib, args.big_mib)
        # One tensor cast, so the shard is not carried over whole: every other tensor is
        # copied on its own, one ranged request each.
        (work / "rename.yaml").write_text(
            "version: 1\nrules:\n  - {match: 'layer_(\\d+)/(.*)', rename: 'dense_{1}/{2}'}\n"
            "  - {name: dense_0/kernel, cast: float64}\n"
        )
        if args.store in {"moto", "both"}:
            logging.getLogger("werkzeug").setLevel(logging.WARNING)
            moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
            moto.start()
            host, port = moto.get_host_and_port()
            direct = s3fs.S3FileSystem(
                client_kwargs={"endpoint_url": f"http://{host}:{port}"}, **CREDENTIALS
            )
            direct.mkdir(BUCKET)
            direct.put(str(work / "store" / "src"), f"{BUCKET}/src", recursive=True)
            proxy = LatencyProxy((host, port), latency)
            env = _env(f"http://127.0.0.1:{proxy.port}")
            rows += _measure(Store("moto + delaying proxy", env), work, args)
            moto.stop()
        if args.store in {"static", "both"}:
            static = StaticS3Server(work / "store", BUCKET, latency)
            store = Store("static server", _env(static.start()))
            rows += _measure(store, work, args)
            peaks.append(f"the static server held at most {static.peak} requests at once")
            static.stop()
    print(
        f"**Store latency {args.latency_ms:g} ms per request** · median of {args.runs} "
        f"interleaved runs · {os.cpu_count()} CPUs" + "".join(f" · {p}" for p in peaks)
    )
    print()
    print(
        "| store | measurement | one request at a time | concurrent (16) | speed-up "
        "| fixed cost (1 tensor), one / 16 | data only: speed-up | data only: throughput |"
    )
    print("|---|---|--:|--:|--:|--:|--:|--:|")
    for r in rows:
        seq_data, con_data = r.seq - r.seq_fixed, r.con - r.con_fixed
        data_ratio = f"{seq_data / con_data:.1f}×" if con_data > 0 else "—"
        rate = f"{r.data_bytes / con_data / 2**20:.0f} MiB/s" if con_data > 0 else "—"
        print(
            f"| {r.store} | {r.label} | {r.seq:.2f} s | {r.con:.2f} s | {r.seq / r.con:.1f}× "
            f"| {r.seq_fixed:.2f} / {r.con_fixed:.2f} s | {data_ratio} | {rate} |"
        )


if __name__ == "__main__":
    main()
