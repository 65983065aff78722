"""The writer: atomic publication, no partial output, byte order, partitioned variables."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import same_bits, tf_save

from ckptmigrate import BundleReader, BundleWriter, OutputError, rewrite_checkpoint
from ckptmigrate.dtypes import BY_NAME
from ckptmigrate.formats.bundle_proto import Extent, TensorSlice
from ckptmigrate.formats.ordered_code import decode_slice_key, encode_slice_key


def test_nothing_at_destination_until_commit(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with BundleWriter(out, "ckpt") as writer:
        writer.add_array("w", np.ones(3, np.float32))
        assert not out.exists()
        writer.commit()
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoint",
        "ckpt.data-00000-of-00001",
        "ckpt.index",
    ]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # staging removed


def test_exception_midway_leaves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"

    def write_then_fail() -> None:
        with BundleWriter(out, "ckpt") as writer:
            writer.add_array("w", np.ones(3, np.float32))
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        write_then_fail()
    assert list(tmp_path.iterdir()) == []


def test_existing_output_is_refused_then_replaced_with_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "old-file").write_text("x")
    with pytest.raises(OutputError, match="already exists"):
        BundleWriter(out, "ckpt")
    with BundleWriter(out, "ckpt", overwrite=True) as writer:
        writer.add_array("w", np.ones(3, np.float32))
        writer.commit()
    assert not (out / "old-file").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_full_disk_is_an_output_error_and_cleans_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    class FullDisk(io.RawIOBase):
        def write(self, data: Any) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

    out = tmp_path / "out"
    writer = BundleWriter(out, "ckpt")
    monkeypatch.setattr(writer, "_shard_file", lambda shard: FullDisk())
    with pytest.raises(OutputError, match="the disk is full"), writer:
        writer.add_array("b", np.ones(3, np.float32))
    assert list(tmp_path.iterdir()) == []


def test_file_size_limit_mid_write_is_a_clean_error(tf: Any, tmp_path: Path) -> None:
    # A real write failure from the kernel (EFBIG under RLIMIT_FSIZE, no root needed)
    # in a real process, hitting the same path as a full disk.
    source = tf_save(
        tf, tmp_path / "src", {f"v{i}": np.ones((256, 256), np.float32) for i in range(4)}
    )
    out = tmp_path / "out"
    script = textwrap.dedent(f"""
        import resource, sys
        from ckptmigrate import rewrite_checkpoint, CkptMigrateError
        resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, 300_000))
        import signal; signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        try:
            rewrite_checkpoint({str(source)!r}, {str(out)!r})
        except CkptMigrateError as e:
            print("ERR", e); sys.exit(2)
        sys.exit(0)
    """)
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "cannot write" in proc.stdout or "disk is full" in proc.stdout
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []


def test_sigterm_and_ctrl_c_mid_write_leave_nothing(tf: Any, tmp_path: Path) -> None:
    source = tf_save(tf, tmp_path / "src", {"v": np.ones(4, np.float32)})
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    for sig in (signal.SIGTERM, signal.SIGINT):
        out = tmp_path / f"out-{sig.name}"
        # A writer that pauses mid-checkpoint, run through the CLI's signal handling.
        script = textwrap.dedent(f"""
            import time
            import numpy as np
            import typer
            from ckptmigrate.cli import _run
            from ckptmigrate import BundleWriter
            def work():
                with BundleWriter({str(out)!r}, "ckpt") as w:
                    w.add_array("a", np.ones(1000, np.float32))
                    print("started", flush=True)
                    time.sleep(60)
                    w.commit()
            try:
                _run(work)
            except typer.Exit as e:
                raise SystemExit(e.exit_code)
        """)
        proc = subprocess.Popen(
            [sys.executable, "-c", script],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "started"
        time.sleep(0.2)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        assert "interrupted; nothing was written" in err
        assert not out.exists()
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(f".{out.name}")]
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    assert after == {k: v for k, v in before.items() if k in after}  # source untouched
    assert source.with_name("src.index").exists()


@pytest.mark.parametrize(
    "dtype", ["float32", "float64", "int32", "int64", "uint16", "float16", "bfloat16", "string"]
)
def test_big_endian_checkpoints_are_byte_swapped(tf: Any, tmp_path: Path, dtype: str) -> None:
    rng = np.random.default_rng(3)
    if dtype == "string":
        value = np.array([b"abc", b"", b"z" * 300], dtype=object)
    else:
        value = rng.standard_normal((3, 4)).astype(tf.as_dtype(dtype).as_numpy_dtype)
    with BundleWriter(tmp_path / "be", "ckpt", big_endian=True) as writer:
        writer.add_array("v", value)
        prefix = writer.commit()
    raw = prefix.with_name("ckpt.data-00000-of-00001").read_bytes()
    if dtype != "string":
        assert raw == value.astype(value.dtype.newbyteorder(">")).tobytes() or dtype == "bfloat16"
    with BundleReader(prefix) as reader:
        assert reader.big_endian
        assert same_bits(reader.read("v"), value)
    # TensorFlow itself swaps big-endian bundles on read: it is the oracle here too.
    assert same_bits(tf.train.load_checkpoint(str(prefix)).get_tensor("v"), value)
    # An unchanged rewrite keeps the byte order and the bytes.
    copy = rewrite_checkpoint(prefix, tmp_path / "copy").prefix
    with BundleReader(copy) as reader:
        assert reader.big_endian
        assert same_bits(reader.read("v"), value)


def test_partitioned_variable_we_write_restores_into_a_partitioned_tf_variable(
    tf: Any, tmp_path: Path
) -> None:
    full = np.arange(30, dtype=np.float32).reshape(10, 3)
    bounds = [(0, 4), (4, 3), (7, 3)]
    slices = tuple(TensorSlice((Extent(start, length), Extent(0, 3))) for start, length in bounds)
    with BundleWriter(tmp_path / "out", "ckpt") as writer:
        writer.add_partitioned("pv", BY_NAME["float32"], (10, 3), slices)
        for start, length in bounds:
            key = encode_slice_key("pv", [(start, length), (0, 3)])
            writer.add_array(key, full[start : start + length])
        prefix = writer.commit()
    assert tf.train.list_variables(str(prefix)) == [("pv", [10, 3])]
    graph = tf.Graph()
    with graph.as_default():
        var = tf.compat.v1.get_variable(
            "pv", shape=[10, 3], partitioner=tf.compat.v1.fixed_size_partitioner(3)
        )
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session(graph=graph) as session:
            saver.restore(session, str(prefix))
            assert same_bits(session.run(tf.concat(list(var), 0)), full)


def test_slice_keys_round_trip() -> None:
    for extents in ([(0, None)], [(5, 7), (0, None)], [(2**40, 3), (-1, 100000)]):
        key = encode_slice_key("scope/名/v\x00\xff", extents)
        assert decode_slice_key(key) == ("scope/名/v\x00\xff", extents)


def test_source_is_never_modified_by_a_rewrite(tf: Any, tmp_path: Path) -> None:
    source = tf_save(tf, tmp_path / "src" / "ckpt", {"v": np.ones(4, np.float32)})
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in source.parent.iterdir()}
    rewrite_checkpoint(source, tmp_path / "out")
    after = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in source.parent.iterdir()}
    assert before == after
    assert os.path.exists(tmp_path / "out" / "ckpt.index")


def test_variant_tensors_pass_through_opaquely(tf: Any, tmp_path: Path) -> None:
    prefix = tmp_path / "v"
    tensor_list = tf.raw_ops.TensorListFromTensor(
        tensor=tf.constant([[1.0, 2.0], [3.0, 4.0]]), element_shape=tf.constant([2])
    )
    tf.raw_ops.SaveV2(
        prefix=str(prefix), tensor_names=["tl"], shape_and_slices=[""], tensors=[tensor_list]
    )
    with BundleReader(prefix) as reader:
        assert reader.info("tl").dtype.name == "variant"
        blobs = reader.read("tl")  # serialized VariantTensorDataProto, kept opaque
        assert b"tensorflow::TensorList" in bytes(blobs.reshape(-1)[0])
    copied = rewrite_checkpoint(prefix, tmp_path / "copy").prefix
    with BundleWriter(tmp_path / "rebuilt", "ckpt") as writer:
        writer.add_array("tl", blobs, BY_NAME["variant"])
        rebuilt = writer.commit()
    for path in (copied, rebuilt):
        (restored,) = tf.raw_ops.RestoreV2(
            prefix=str(path), tensor_names=["tl"], shape_and_slices=[""], dtypes=[tf.variant]
        )
        stacked = tf.raw_ops.TensorListStack(
            input_handle=restored, element_dtype=tf.float32, element_shape=[2]
        )
        assert stacked.numpy().tolist() == [[1.0, 2.0], [3.0, 4.0]]


def test_rewrite_of_a_corrupt_tensor_fails_and_leaves_nothing(tf: Any, tmp_path: Path) -> None:
    from ckptmigrate import ChecksumMismatchError

    source = tf_save(
        tf, tmp_path / "src" / "ckpt", {f"v{i}": np.full((64, 64), i, np.float32) for i in range(8)}
    )
    data_file = source.with_name("ckpt.data-00000-of-00001")
    data = bytearray(data_file.read_bytes())
    data[-3] ^= 0x40  # inside the last tensor in layout order
    data_file.write_bytes(bytes(data))
    with pytest.raises(ChecksumMismatchError, match="CRC32C"):
        rewrite_checkpoint(source, tmp_path / "out", check_crc=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]
