"""Remote throughput, sequential vs concurrent (issue 16, item 2): moto's S3 server on
loopback behind a proxy that adds a fixed latency to every request, as a store across a
network has. Prints a Markdown table of wall times and ratios.

    .venv/bin/python benchmarks/remote.py [--latency-ms 20] [--tensors 256] [--tensor-kib 256]

Rows: a `convert` from the store renaming every tensor and casting one (copied tensors
read one at a time with `--workers 1`, ahead of the writer by default) and
`inspect --check-crc` of one large tensor (chunks one at a time with
CKPTMIGRATE_REMOTE_CONCURRENCY=1, else 16 in flight).
"""

from __future__ import annotations

import argparse
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

import numpy as np

from ckptmigrate import BundleWriter

CREDENTIALS = {"key": "testing", "secret": "testing"}


class LatencyProxy:
    """TCP on 127.0.0.1 to ``upstream``, holding every client-to-server send (a request,
    or a part of one) for ``latency`` seconds before passing it on."""

    def __init__(self, upstream: tuple[str, int], latency: float) -> None:
        self.upstream, self.latency = upstream, latency
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            client, _ = self.listener.accept()
            server = socket.create_connection(self.upstream)
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


def _checkpoint(directory: Path, tensors: int, kib: int, big_mib: int) -> None:
    rng = np.random.default_rng(0)
    with BundleWriter(directory / "many", "model.ckpt") as writer:
        for i in range(tensors):
            writer.add_array(f"layer_{i}/kernel", rng.standard_normal(kib * 256).astype("f4"))
        writer.commit()
    with BundleWriter(directory / "big", "model.ckpt") as writer:
        writer.add_array("big/kernel", rng.standard_normal(big_mib * 2**18).astype("f4"))
        writer.commit()


def _timed(argv: list[str], env: dict[str, str], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--tensors", type=int, default=256)
    parser.add_argument("--tensor-kib", type=int, default=256)
    parser.add_argument("--big-mib", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    import logging

    import s3fs
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    proxy = LatencyProxy((host, port), args.latency_ms / 1000)
    direct = s3fs.S3FileSystem(
        client_kwargs={"endpoint_url": f"http://{host}:{port}"}, **CREDENTIALS
    )
    direct.mkdir("bench")
    cli = str(Path(sys.executable).with_name("ckptmigrate"))
    with tempfile.TemporaryDirectory(prefix="ckptmigrate-remote-bench-") as tmp:
        work = Path(tmp)
        _checkpoint(work / "src", args.tensors, args.tensor_kib, args.big_mib)
        direct.put(str(work / "src"), "bench/src", recursive=True)
        # One tensor cast, so the shard is not carried over whole: every other tensor is
        # copied on its own, one ranged request each.
        (work / "rename.yaml").write_text(
            "version: 1\nrules:\n  - {match: 'layer_(\\d+)/(.*)', rename: 'dense_{1}/{2}'}\n"
            "  - {name: dense_0/kernel, cast: float64}\n"
        )
        env = {
            **os.environ,
            "FSSPEC_S3_ENDPOINT_URL": f"http://127.0.0.1:{proxy.port}",
            "FSSPEC_S3_KEY": CREDENTIALS["key"],
            "FSSPEC_S3_SECRET": CREDENTIALS["secret"],
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        counter = iter(range(10**6))

        def convert(*flags: str) -> list[str]:
            out = str(work / f"out{next(counter)}")
            return [
                cli,
                "convert",
                "s3://bench/src/many",
                "--map",
                str(work / "rename.yaml"),
                "-o",
                out,
                "-q",
                "--force",  # the same output every run
                *flags,
            ]

        total = args.tensors * args.tensor_kib * 1024
        rows = []
        seq = _timed(convert("--workers", "1"), env, args.runs)
        con = _timed(convert(), env, args.runs)
        rows.append(
            (
                f"convert rename from the store, {args.tensors} tensors of {args.tensor_kib} KiB",
                seq,
                con,
                total,
            )
        )
        inspect = [cli, "inspect", "s3://bench/src/big", "--check-crc", "-q"]
        chunked = {**env, "CKPTMIGRATE_READ_BUFFER": str(1 << 20)}
        seq = _timed(inspect, {**chunked, "CKPTMIGRATE_REMOTE_CONCURRENCY": "1"}, args.runs)
        con = _timed(inspect, {**chunked, "CKPTMIGRATE_REMOTE_CONCURRENCY": "16"}, args.runs)
        rows.append(
            (
                f"inspect --check-crc of one {args.big_mib} MiB tensor in 1 MiB requests",
                seq,
                con,
                args.big_mib << 20,
            )
        )
    server.stop()
    print(
        f"**Store latency {args.latency_ms:g} ms per request** (moto S3 on loopback behind a "
        f"delaying proxy) · median of {args.runs} runs · {os.cpu_count()} CPUs"
    )
    print()
    print("| measurement | one request at a time | concurrent (16) | speed-up | throughput |")
    print("|---|--:|--:|--:|--:|")
    for label, seq, con, nbytes in rows:
        rate = nbytes / con / 2**20
        print(f"| {label} | {seq:.2f} s | {con:.2f} s | {seq / con:.1f}× | {rate:.1f} MiB/s |")


if __name__ == "__main__":
    main()
