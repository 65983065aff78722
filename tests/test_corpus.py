"""Real checkpoints written by other people (../shared/corpus): inspect agrees with
tf.train.list_variables on every one, values match TF's reader, and a rewrite reads back
bit-exactly. Skipped when the corpus is absent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import CORPUS
from helpers import same_bits

from ckptmigrate import inspect_checkpoint, open_checkpoint, rewrite_checkpoint
from ckptmigrate.formats.locate import locate

V1_FILES = [
    "tf0.7-v1-basiclstm-seqrnn/commit-0548b37/model.ckpt",
    "tf0.7-v1-basiclstm-seqrnn/commit-86e6d26/model.ckpt",
    "tf1-v1format-mnist-alenma/model.ckpt",
    "tfserving-bad_half_plus_two-v1/export",
    "tfserving-v1-sessionbundle-half_plus_two/v1-commit-27a9c358/export",
]


def _corpus_prefixes() -> list[str]:
    if not CORPUS.is_dir():
        return []
    v2 = sorted(str(p.relative_to(CORPUS))[: -len(".index")] for p in CORPUS.rglob("*.index"))
    return v2 + V1_FILES


@pytest.fixture(params=_corpus_prefixes() or ["(corpus absent)"])
def corpus_prefix(request: pytest.FixtureRequest, corpus: Path) -> Path:
    return corpus / request.param


def _tf_inventory(tf: Any, prefix: Path) -> dict[str, tuple[list[int], str]]:
    reader = tf.train.load_checkpoint(str(prefix))
    dtypes = reader.get_variable_to_dtype_map()
    listed = dict(tf.train.list_variables(str(prefix)))
    names = {"half": "float16"}
    return {
        k: (list(shape), names.get(dtypes[k].name, dtypes[k].name)) for k, shape in listed.items()
    }


@pytest.mark.corpus
def test_inspect_agrees_with_list_variables(tf: Any, corpus_prefix: Path) -> None:
    report = inspect_checkpoint(corpus_prefix)
    ours = {row.key: (list(row.shape), row.dtype) for row in report.rows}
    assert ours == _tf_inventory(tf, corpus_prefix)
    tf_reader = tf.train.load_checkpoint(str(corpus_prefix))
    with open_checkpoint(corpus_prefix) as checkpoint:
        for key in ours:
            assert same_bits(checkpoint.reader.read(key), tf_reader.get_tensor(key)), key


@pytest.mark.corpus
def test_rewrite_reads_back_bit_exactly(tf: Any, corpus_prefix: Path, tmp_path: Path) -> None:
    result = rewrite_checkpoint(corpus_prefix, tmp_path / "out")
    assert _tf_inventory(tf, result.prefix) == _tf_inventory(tf, corpus_prefix)
    original = tf.train.load_checkpoint(str(corpus_prefix))
    rewritten = tf.train.load_checkpoint(str(result.prefix))
    for key in original.get_variable_to_shape_map():
        assert same_bits(rewritten.get_tensor(key), original.get_tensor(key)), key
    if locate(corpus_prefix).format == "v2":  # copied in layout order: shards byte-identical
        shards = sorted(corpus_prefix.parent.glob(corpus_prefix.name + ".data-*"))
        for shard in shards:
            copy = result.prefix.with_name(
                result.prefix.name + shard.name[len(corpus_prefix.name) :]
            )
            assert copy.read_bytes() == shard.read_bytes(), shard.name


@pytest.mark.corpus
def test_verify_passes_on_every_corpus_checkpoint(corpus_prefix: Path) -> None:
    report = inspect_checkpoint(corpus_prefix, check_crc=True)
    assert report.verified_bytes is not None
    if report.format == "v2":  # every stored byte was read and checksummed
        assert report.verified_bytes == sum(row.nbytes for row in report.rows)


@pytest.mark.corpus
def test_v1_files_are_detected_as_v1(corpus: Path) -> None:
    for relative in V1_FILES:
        assert locate(corpus / relative).format == "v1", relative


@pytest.mark.corpus
def test_snappy_compressed_index_is_read(corpus: Path) -> None:
    index = corpus / "tfserving-saved_model_half_plus_two_cpu/00000123/variables/variables.index"
    data = index.read_bytes()
    assert b"\x01" in data  # a block trailer with compression type 1 (Snappy)
    report = inspect_checkpoint(index)
    assert {row.key for row in report.rows} == {"a", "b", "c", "a2", "c2"}


@pytest.mark.corpus
def test_state_file_with_stale_absolute_path_resolves_beside_it(corpus: Path) -> None:
    location = locate(corpus / "tfserving-bad_half_plus_two-v1")
    assert location.prefix == corpus / "tfserving-bad_half_plus_two-v1" / "export"
    assert "missing" in location.notes[0]
