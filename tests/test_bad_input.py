"""Bad input gets one clear paragraph naming the file, exit code 2, never a traceback."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import tf_save
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from ckptmigrate import CkptMigrateError, inspect_checkpoint, open_checkpoint
from ckptmigrate.cli import app

runner = CliRunner()


def run_cli(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def assert_clean_error(args: list[str], *fragments: str) -> str:
    code, out, err = run_cli(*args)
    assert code == 2, (code, out, err)
    assert out == ""
    assert "Traceback" not in err
    message = " ".join(err.split())  # Rich may wrap; compare as one paragraph
    assert message.startswith("error: ")
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


@pytest.fixture
def small_ckpt(tf: Any, tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    return tf_save(
        tf,
        tmp_path / "model.ckpt-200",
        {
            "dense/kernel": rng.standard_normal((4, 3)).astype(np.float32),
            "dense/bias": np.zeros(3, np.float32),
            "global_step": np.array(200, np.int64),
        },
    )


def test_not_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello, I am not a checkpoint\n" * 10)
    assert_clean_error(["inspect", str(path)], str(path), "not a TensorFlow checkpoint")


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "model.ckpt"
    path.write_bytes(b"")
    assert_clean_error(["inspect", str(path)], str(path), "the file is empty")


def test_empty_index(small_ckpt: Path) -> None:
    index = small_ckpt.with_name(small_ckpt.name + ".index")
    index.write_bytes(b"")
    assert_clean_error(["inspect", str(small_ckpt)], str(index), "the index file is empty")


def test_truncated_index(small_ckpt: Path) -> None:
    index = small_ckpt.with_name(small_ckpt.name + ".index")
    index.write_bytes(index.read_bytes()[:-20])
    assert_clean_error(["inspect", str(small_ckpt)], str(index), "truncated")


def test_wrong_magic(small_ckpt: Path) -> None:
    index = small_ckpt.with_name(small_ckpt.name + ".index")
    data = bytearray(index.read_bytes())
    data[-1] ^= 0xFF
    index.write_bytes(bytes(data))
    assert_clean_error(["inspect", str(small_ckpt)], str(index), "magic number")


def test_flipped_byte_in_a_tensor(small_ckpt: Path) -> None:
    with open_checkpoint(small_ckpt) as checkpoint:
        info = checkpoint.reader.info("dense/kernel")
    assert info.offset is not None
    data_file = small_ckpt.with_name(small_ckpt.name + ".data-00000-of-00001")
    data = bytearray(data_file.read_bytes())
    data[info.offset + 5] ^= 0x01
    data_file.write_bytes(bytes(data))
    # Listing does not read values; --verify does, and names the tensor.
    assert run_cli("inspect", str(small_ckpt))[0] == 0
    assert_clean_error(
        ["inspect", "--verify", str(small_ckpt)], str(data_file), "'dense/kernel'", "CRC32C"
    )


def test_missing_shard(small_ckpt: Path) -> None:
    data_file = small_ckpt.with_name(small_ckpt.name + ".data-00000-of-00001")
    data_file.unlink()
    assert_clean_error(
        ["inspect", str(small_ckpt)], str(data_file), "data shard 0 of 1 is missing", "3 tensors"
    )


def test_truncated_shard(small_ckpt: Path) -> None:
    data_file = small_ckpt.with_name(small_ckpt.name + ".data-00000-of-00001")
    data_file.write_bytes(data_file.read_bytes()[:10])
    assert_clean_error(["inspect", str(small_ckpt)], str(data_file), "truncated")


def test_state_file_pointing_at_missing_checkpoint(small_ckpt: Path) -> None:
    state = small_ckpt.parent / "checkpoint"
    state.write_text('model_checkpoint_path: "model.ckpt-300"\n')
    message = assert_clean_error(
        ["inspect", str(state)],
        str(state),
        "this is the checkpoint state file; it points at model.ckpt-300, which is missing",
    )
    assert "model.ckpt-200" in message  # the hint names what is actually there


def test_state_file_is_followed_when_valid(small_ckpt: Path) -> None:
    state = small_ckpt.parent / "checkpoint"
    state.write_text('model_checkpoint_path: "model.ckpt-200"\n')
    report = inspect_checkpoint(state)
    assert report.prefix == str(small_ckpt)


def test_data_shard_path_resolves_to_prefix(small_ckpt: Path) -> None:
    shard = small_ckpt.with_name(small_ckpt.name + ".data-00000-of-00001")
    assert inspect_checkpoint(shard).prefix == str(small_ckpt)
    assert inspect_checkpoint(str(small_ckpt) + ".index").prefix == str(small_ckpt)


def test_data_shard_without_index(small_ckpt: Path) -> None:
    small_ckpt.with_name(small_ckpt.name + ".index").unlink()
    shard = small_ckpt.with_name(small_ckpt.name + ".data-00000-of-00001")
    assert_clean_error(["inspect", str(shard)], "index model.ckpt-200.index is missing")
    assert_clean_error(["inspect", str(small_ckpt)], "index model.ckpt-200.index is missing")


def test_meta_without_checkpoint(tmp_path: Path) -> None:
    meta = tmp_path / "model.ckpt-5.meta"
    meta.write_bytes(b"\x0a\x00")
    assert_clean_error(["inspect", str(meta)], "MetaGraph", "model.ckpt-5.index")


def test_meta_resolves_to_its_checkpoint(small_ckpt: Path) -> None:
    meta = small_ckpt.with_name(small_ckpt.name + ".meta")
    meta.write_bytes(b"\x0a\x00")
    assert inspect_checkpoint(meta).prefix == str(small_ckpt)


def test_typo_in_prefix_suggests_the_real_one(small_ckpt: Path) -> None:
    assert_clean_error(
        ["inspect", str(small_ckpt.parent / "model.ckpt-20")],
        "no checkpoint at this path",
        "did you mean",
        "model.ckpt-200",
    )


def test_hdf5_file_is_named_as_such(tmp_path: Path) -> None:
    path = tmp_path / "model.h5"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    assert_clean_error(["inspect", str(path)], "HDF5")


def test_directory_with_several_checkpoints_and_no_state(tf: Any, tmp_path: Path) -> None:
    for step in (1, 2):
        tf_save(tf, tmp_path / f"model.ckpt-{step}", {"w": np.zeros(2, np.float32)})
    assert_clean_error(["inspect", str(tmp_path)], "2 checkpoints", "model.ckpt-2")


def test_bad_filter_regex(small_ckpt: Path) -> None:
    assert_clean_error(
        ["inspect", str(small_ckpt), "--filter", "dense/(kernel"], "not a valid regular expression"
    )


def test_real_process_exit_code_and_stderr(tmp_path: Path) -> None:
    path = tmp_path / "nothing-here"
    proc = subprocess.run(
        [sys.executable, "-m", "ckptmigrate", "inspect", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    assert str(path) in proc.stderr


@pytest.fixture(scope="module")
def pristine_index(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    import tensorflow as tf

    directory = tmp_path_factory.mktemp("fuzz")
    rng = np.random.default_rng(1)
    prefix = tf_save(
        tf,
        directory / "ckpt",
        {f"layer_{i}/kernel": rng.standard_normal((3, i + 1)).astype(np.float32) for i in range(6)}
        | {"names": np.array([b"a", b"bc"], dtype=object)},
    )
    return prefix, prefix.with_name("ckpt.index").read_bytes()


@settings(
    max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_fuzzed_index_raises_only_our_errors(
    pristine_index: tuple[Path, bytes], tmp_path: Path, data: st.DataObject
) -> None:
    prefix, original = pristine_index
    mutated = bytearray(original)
    for _ in range(data.draw(st.integers(1, 8))):
        action = data.draw(st.sampled_from(["flip", "truncate", "insert", "delete"]))
        if not mutated:
            break
        pos = data.draw(st.integers(0, len(mutated) - 1))
        if action == "flip":
            mutated[pos] ^= data.draw(st.integers(1, 255))
        elif action == "truncate":
            del mutated[pos:]
        elif action == "insert":
            mutated[pos:pos] = data.draw(st.binary(min_size=1, max_size=8))
        else:
            del mutated[pos : pos + data.draw(st.integers(1, 8))]
    work = tmp_path / "w"
    work.mkdir(exist_ok=True)
    shutil.copy(prefix.with_name("ckpt.data-00000-of-00001"), work / "ckpt.data-00000-of-00001")
    (work / "ckpt.index").write_bytes(bytes(mutated))
    try:
        with open_checkpoint(work / "ckpt") as checkpoint:
            for key in checkpoint.reader.variable_keys():
                checkpoint.reader.read(key)
    except CkptMigrateError:
        pass
