"""Conversion on a Dask cluster (issue 16, item 4): a real LocalCluster of separate worker
processes writes the data shards, this process the index; the output is byte for byte the
one-process output with the same shards (index included), TensorFlow reads it, a worker
killed in the middle of its shard changes nothing (the task is run again, the part it left
is never published), and a source on the loopback S3 server works as a local one.

The cluster tests are marked slow (make check leaves them out) and skipped without Dask."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import TRANSFORMING_MAP, file_digests, same_bits
from test_remote import bucket, download, s3_endpoint, upload  # noqa: F401  (fixtures)
from typer.testing import CliRunner

import ckptmigrate
from ckptmigrate.cli import app
from ckptmigrate.conversion import ConvertOptions, ShardPolicy
from ckptmigrate.conversion.dask_out import DaskInputs, ShardTask, write_shard
from ckptmigrate.errors import CkptMigrateError
from ckptmigrate.formats.bundle_writer import PARTS_DIR, BundleWriter

MAP = TRANSFORMING_MAP
NUM_TENSORS = 24


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint of 24 float32 matrices, an int64 step and a string, and the map."""
    root = tmp_path_factory.mktemp("dask-source")
    rng = np.random.default_rng(7)
    with BundleWriter(root / "src", "model.ckpt", big_endian=False) as writer:
        for i in range(NUM_TENSORS):
            writer.add_array(f"w_{i}", rng.standard_normal((32, 32)).astype("f4"))
        writer.add_array("global_step", np.array(3, np.int64))
        writer.add_array("vocab", np.array([b"a", b"bc", b""], dtype=object))
        writer.commit()
    (root / "m.yaml").write_text(MAP)
    return root


@pytest.fixture(scope="module")
def single(source: Path) -> Path:
    """The one-process output with two shards: what every cluster run must equal."""
    out = source / "single"
    ckptmigrate.convert(source / "src", source / "m.yaml", out, num_shards=2)
    return out


@pytest.fixture(scope="module")
def client(s3_endpoint: str) -> Iterator[Any]:  # noqa: F811
    """Two worker processes, one thread each; started after the S3 server so the workers
    inherit its FSSPEC_S3_* variables."""
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as the_client,
    ):
        yield the_client


@pytest.mark.slow
def test_a_local_cluster_writes_the_one_process_output_byte_for_byte(
    source: Path, single: Path, client: Any, tmp_path: Path
) -> None:
    out = tmp_path / "parent" / "out"
    result = ckptmigrate.convert(source / "src", source / "m.yaml", out, dask=client)
    # Two workers, no sharding option: one shard per worker, so the two-shard output.
    assert file_digests(out) == file_digests(single)
    assert {"model.ckpt.data-00000-of-00002", "model.ckpt.data-00001-of-00002"} <= set(
        file_digests(out)
    )
    assert (result.transformed, result.initialised, result.copied) == (NUM_TENSORS, 1, 2)
    assert sorted(p.name for p in out.parent.iterdir()) == ["out"]  # staging gone


@pytest.mark.slow
def test_more_shards_than_workers_and_tensorflow_reads_them(
    source: Path, client: Any, tmp_path: Path, tf: Any
) -> None:
    ckptmigrate.convert(source / "src", source / "m.yaml", tmp_path / "one", num_shards=5)
    ckptmigrate.convert(
        source / "src", source / "m.yaml", tmp_path / "dask", num_shards=5, dask=client
    )
    assert file_digests(tmp_path / "dask") == file_digests(tmp_path / "one")
    ours = tf.train.load_checkpoint(str(tmp_path / "dask"))
    theirs = tf.train.load_checkpoint(str(tmp_path / "one"))
    names = sorted(ours.get_variable_to_shape_map())
    assert names == sorted(theirs.get_variable_to_shape_map())
    assert "layer_0/kernel" in names
    assert "extra/bias" in names
    for name in names:
        assert same_bits(ours.get_tensor(name), theirs.get_tensor(name)), name
    original = tf.train.load_checkpoint(str(source / "src"))
    assert same_bits(ours.get_tensor("layer_3/kernel"), original.get_tensor("w_3").astype("f2"))


@pytest.mark.slow
def test_a_worker_killed_in_the_middle_of_its_shard_changes_nothing(
    source: Path, single: Path, client: Any, tmp_path: Path
) -> None:
    marker = tmp_path / "held"
    worker_pids = set(client.run(os.getpid).values())

    def hold_after_the_first_tensor(path: str) -> None:
        """On each worker: the first tensor any task writes is followed by a long pause,
        the worker's pid in ``path`` (later writes, on any worker, go on)."""
        from ckptmigrate.formats.bundle_writer import ShardWriter

        real = ShardWriter.add_array

        def add_array(self: Any, *args: Any, **kwargs: Any) -> None:
            real(self, *args, **kwargs)
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                return
            os.write(fd, str(os.getpid()).encode())
            os.close(fd)
            time.sleep(120)  # killed long before

        ShardWriter.add_array = add_array  # type: ignore[method-assign]

    client.run(hold_after_the_first_tensor, str(marker))
    out = tmp_path / "parent" / "out"
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(
                ckptmigrate.convert(
                    source / "src", source / "m.yaml", out, dask=client, num_shards=2
                )
            )
        except BaseException as e:  # reported by the main thread
            outcome.append(e)

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 30
    while not (marker.exists() and marker.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    pid = int(marker.read_text())
    assert pid in worker_pids
    parts = list(out.parent.glob(f".*/{PARTS_DIR}/*"))
    assert parts, "the held task has a part file in the staging"
    os.kill(pid, signal.SIGKILL)
    thread.join(60)
    assert not thread.is_alive()
    assert not isinstance(outcome[0], BaseException), outcome[0]
    assert file_digests(out) == file_digests(single)
    assert sorted(p.name for p in out.parent.iterdir()) == ["out"]
    assert not any(p.name.startswith(".") for p in out.iterdir())


@pytest.mark.slow
def test_a_source_on_a_store_converts_on_the_cluster(
    source: Path,
    single: Path,
    client: Any,
    bucket: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    upload(source / "src", f"{bucket}/src")
    out = tmp_path / "out"
    # Two shards named, as a killed worker (another test) may have left the cluster with one.
    ckptmigrate.convert(f"{bucket}/src", source / "m.yaml", out, dask=client, num_shards=2)
    assert file_digests(out) == file_digests(single)


@pytest.mark.slow
def test_an_output_on_a_store_is_written_on_the_cluster(
    source: Path,
    single: Path,
    client: Any,
    bucket: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    """A store output is staged on this machine, where a LocalCluster's workers write."""
    ckptmigrate.convert(
        source / "src", source / "m.yaml", f"{bucket}/out", dask=client, num_shards=2
    )
    assert file_digests(download(f"{bucket}/out", tmp_path / "got")) == file_digests(single)


@pytest.mark.slow
def test_the_command_line_starts_a_local_cluster(source: Path, tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    out = tmp_path / "out"
    args = ["convert", str(source / "src"), "-m", str(source / "m.yaml"), "-o", str(out)]
    ran = CliRunner().invoke(app, [*args, "--dask", "local:2", "--num-shards", "3", "--quiet"])
    assert ran.exit_code == 0, ran.output
    ckptmigrate.convert(source / "src", source / "m.yaml", tmp_path / "one", num_shards=3)
    assert file_digests(out) == file_digests(tmp_path / "one")


def test_without_dask_the_option_is_a_one_paragraph_error(
    source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # import fails as uninstalled
    args = ["convert", str(source / "src"), "-m", str(source / "m.yaml"), "-o"]
    ran = CliRunner().invoke(app, [*args, str(tmp_path / "out"), "--dask", "local:2"])
    assert ran.exit_code == 2
    assert "pip install 'ckptmigrate[dask]'" in ran.output
    assert "Traceback" not in ran.output
    with pytest.raises(CkptMigrateError, match=r"not installed.*dask="):
        ckptmigrate.convert(source / "src", source / "m.yaml", tmp_path / "o", dask="local:2")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--dask", "local:0"], "not a local cluster"),
        (["--dask", "remote"], "neither local:N nor a scheduler's address"),
        (["--scheduler", "host:8786"], "not a scheduler's address"),
        (["--dask", "local:2", "--scheduler", "tcp://h:1"], "give one"),
        (["--dask", "local:2", "--format", "keras"], "only a checkpoint output"),
    ],
)
def test_bad_cluster_options_exit_2(
    source: Path, tmp_path: Path, flags: list[str], expected: str
) -> None:
    args = ["convert", str(source / "src"), "-m", str(source / "m.yaml"), "-o"]
    ran = CliRunner().invoke(app, [*args, str(tmp_path / "out.weights.h5"), *flags])
    assert ran.exit_code == 2, ran.output
    assert expected in ran.output
    assert list(tmp_path.iterdir()) == []


def test_importing_and_help_do_not_import_dask() -> None:
    code = (
        "import sys\n"
        "import ckptmigrate, ckptmigrate.conversion.dask_out\n"
        "from typer.testing import CliRunner\n"
        "from ckptmigrate.cli import app\n"
        "assert CliRunner().invoke(app, ['convert', '--help']).exit_code == 0\n"
        "loaded = [m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def _task(source: Path, staging: Path, expected: tuple[Any, ...]) -> ShardTask:
    options = ConvertOptions(shards=ShardPolicy(num_shards=2))
    inputs = DaskInputs.of(source / "src", source / "m.yaml", None)
    return ShardTask(inputs, options, 0, 2, frozenset(), str(staging / "model.ckpt"), expected)


def test_a_task_whose_plan_differs_refuses_to_write(source: Path, tmp_path: Path) -> None:
    (tmp_path / PARTS_DIR).mkdir()
    task = _task(source, tmp_path, (("layer_0/kernel", (32, 32), "float32"),))
    with pytest.raises(CkptMigrateError, match="differs from the calling process's for shard 0"):
        write_shard(task)
    assert list((tmp_path / PARTS_DIR).iterdir()) == []
    assert [p.name for p in tmp_path.iterdir()] == [PARTS_DIR]


def test_a_task_that_cannot_see_the_staging_says_so(source: Path, tmp_path: Path) -> None:
    with pytest.raises(CkptMigrateError, match="cannot see the output's staging directory"):
        write_shard(_task(source, tmp_path / "elsewhere", ()))


def test_loaded_maps_and_live_targets_cannot_go_to_workers(source: Path) -> None:
    from ckptmigrate.mapping.schema import load_map

    with pytest.raises(CkptMigrateError, match="a loaded Map cannot be sent"):
        DaskInputs.of(source / "src", load_map(source / "m.yaml"), None)
    with pytest.raises(CkptMigrateError, match="a live object cannot be sent"):
        DaskInputs.of(source / "src", None, object())
