"""Sharded output (issue 16, item 3): --max-shard-size and --num-shards write several data
shards that TensorFlow reads bit for bit, with the same values as a one-shard output."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import same_bits, tf_save
from hypothesis import given, settings
from hypothesis import strategies as st
from models import save_sharded_checkpoint
from typer.testing import CliRunner

import ckptmigrate
from ckptmigrate.cli import app
from ckptmigrate.conversion import ShardPolicy, parse_size
from ckptmigrate.errors import CkptMigrateError

runner = CliRunner()


def _data_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.data-*"))


@pytest.fixture
def source(tf: Any, tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    tensors = {
        f"layer_{i}/kernel": rng.standard_normal((64, 16 * (i + 1))).astype("f4") for i in range(6)
    }
    tensors["step"] = np.array(7, np.int64)
    tensors["vocab"] = np.array([b"a", b"bb", b"\x00c"], dtype=object)
    return tf_save(tf, tmp_path / "src" / "model.ckpt", tensors), tensors


CAST_AND_RENAME = """version: 1
rules:
  - {match: 'layer_(\\d+)/kernel', rename: 'dense_{1}/kernel'}
  - {match: 'dense_[024]/kernel', cast: float64}
"""


def _tf_values(tf: Any, prefix: Path) -> dict[str, np.ndarray]:
    reader = tf.train.load_checkpoint(str(prefix))
    return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()}


@pytest.mark.parametrize(
    ("options", "shards"),
    [
        ({"max_shard_size": 20_000}, None),
        ({"max_shard_size": "10KiB"}, None),
        ({"num_shards": 3}, 3),
        ({"num_shards": 9}, 9),
    ],
)
def test_tensorflow_reads_every_layout_bit_for_bit(
    tf: Any,
    source: tuple[Path, dict[str, np.ndarray]],
    tmp_path: Path,
    options: dict[str, Any],
    shards: int | None,
) -> None:
    prefix, _ = source
    (tmp_path / "m.yaml").write_text(CAST_AND_RENAME)
    one = ckptmigrate.convert(prefix, tmp_path / "m.yaml", tmp_path / "one")
    many = ckptmigrate.convert(prefix, tmp_path / "m.yaml", tmp_path / "many", **options)
    files = _data_files(tmp_path / "many")
    assert len(_data_files(tmp_path / "one")) == 1
    assert len(files) == shards if shards else len(files) > 1
    if "max_shard_size" in options:
        limit = parse_size(options["max_shard_size"])
        too_big = [f for f in files if f.stat().st_size > limit]
        # Only a shard holding one tensor larger than the limit may exceed it.
        for f in too_big:
            held = [
                k
                for k, e in ckptmigrate.open_checkpoint(many.prefix).reader.entries.items()
                if e.shard_id == int(f.name.split("-")[1].split("-")[0])
            ]
            assert len(held) == 1, (f.name, held)
    expected = _tf_values(tf, one.prefix)
    got = _tf_values(tf, many.prefix)
    assert sorted(got) == sorted(expected)
    for key, value in expected.items():
        assert same_bits(got[key], value), key


def test_a_count_balances_the_shards_by_size() -> None:
    sizes = [("a", 100), ("b", 90), ("c", 50), ("d", 40), ("e", 10), ("f", 10)]
    groups = ShardPolicy(num_shards=2).spread(sizes)
    loads = sorted(sum(dict(sizes)[k] for k in group) for group in groups)
    assert loads == [150, 150]
    assert ShardPolicy(num_shards=4).spread([("a", 1)]) == [["a"], [], [], []]


@settings(max_examples=300, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 1000), max_size=40),
    limit=st.integers(1, 2000),
    count=st.integers(1, 12),
)
def test_every_tensor_lands_once_and_the_limits_hold(
    sizes: list[int], limit: int, count: int
) -> None:
    named = [(f"t{i}", size) for i, size in enumerate(sizes)]
    for policy in (ShardPolicy(max_shard_size=limit), ShardPolicy(num_shards=count), ShardPolicy()):
        groups = policy.spread(named)
        placed = [key for group in groups for key in group]
        assert sorted(placed) == sorted(key for key, _ in named)
        if policy.num_shards is not None:
            assert len(groups) == count
            loads = [sum(dict(named)[k] for k in g) for g in groups]
            # Largest-first to the emptiest: no shard exceeds the ideal by more than one tensor.
            assert max(loads) <= sum(sizes) / count + max(sizes, default=0)
        if policy.max_shard_size is not None:
            for group in groups:
                load = sum(dict(named)[k] for k in group)
                assert load <= limit or len(group) == 1
            assert [k for g in groups for k in g] == [k for k, _ in named]  # order kept


def test_shards_carried_over_whole_stay_linked(tf: Any, tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    prefix, values = save_sharded_checkpoint(tf, tmp_path / "src")
    (tmp_path / "m.yaml").write_text(
        "version: 1\nrules:\n"
        "  - {init: {name: extra/a, shape: [300], dtype: float32, fill: ones}}\n"
        "  - {init: {name: extra/b, shape: [300], dtype: float32, fill: zeros}}\n"
    )
    result = ckptmigrate.convert(prefix, tmp_path / "m.yaml", tmp_path / "out", num_shards=2)
    assert len(result.linked_shards) == 2  # both source shards carried over as they are
    assert len(_data_files(tmp_path / "out")) == 4
    got = _tf_values(tf, result.prefix)
    for key, value in values.items():
        assert same_bits(got[key], value)
    assert same_bits(got["extra/a"], np.ones(300, "f4"))


def test_a_tf2_checkpoint_sharded_restores_into_its_model(tf: Any, tmp_path: Path) -> None:
    module = tf.Module()
    module.w = [tf.Variable(np.full((50, 40), i, "f4")) for i in range(4)]
    module.step = tf.Variable(3, dtype=tf.int64)
    saved = tf.train.Checkpoint(model=module).write(str(tmp_path / "src" / "ckpt"))
    (tmp_path / "m.yaml").write_text(
        "version: 1\nrules:\n  - {match: 'model/w/.*', cast: float32}\n"
    )
    out = ckptmigrate.convert(saved, tmp_path / "m.yaml", tmp_path / "out", max_shard_size="9KB")
    assert len(_data_files(tmp_path / "out")) >= 4
    twin = tf.Module()
    twin.w = [tf.Variable(np.zeros((50, 40), "f4")) for _ in range(4)]
    twin.step = tf.Variable(0, dtype=tf.int64)
    tf.train.Checkpoint(model=twin).read(str(out.prefix)).assert_existing_objects_matched()
    assert [float(v.numpy()[0, 0]) for v in twin.w] == [0.0, 1.0, 2.0, 3.0]
    assert int(twin.step.numpy()) == 3


def test_the_cli_takes_sizes_and_refuses_nonsense(
    source: tuple[Path, dict[str, np.ndarray]], tmp_path: Path
) -> None:
    prefix, _ = source
    (tmp_path / "m.yaml").write_text(CAST_AND_RENAME)
    base = ["convert", str(prefix), "--map", str(tmp_path / "m.yaml"), "-q", "-o"]
    ok = runner.invoke(app, [*base, str(tmp_path / "a"), "--max-shard-size", "20kB"])
    assert ok.exit_code == 0, ok.output
    assert len(_data_files(tmp_path / "a")) > 1
    for extra, said in (
        (["--max-shard-size", "lots"], "is not a size"),
        (
            ["--max-shard-size", "1MB", "--num-shards", "2"],
            "--max-shard-size and --num-shards both",
        ),
        (["--num-shards", "0"], "--num-shards must be from 1"),
    ):
        bad = runner.invoke(app, [*base, str(tmp_path / "b"), *extra])
        assert bad.exit_code == 2, bad.output
        assert said in bad.stderr
        assert not (tmp_path / "b").exists()
    with pytest.raises(CkptMigrateError, match="max_shard_size= and num_shards= both"):
        ShardPolicy(1, 2)
