"""A .meta file is data, but its initialisers are ops: convert --target runs them to learn
a TF1 target's initial values only when they do nothing but initialise (issue 12, medium 4);
check runs nothing at all."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import tf_save

import ckptmigrate
from ckptmigrate.errors import CkptMigrateError


def _meta(tf: Any, path: Path, marker: Path | None) -> Path:
    graph = tf.Graph()
    with graph.as_default():
        if marker is None:
            tf.compat.v1.get_variable("dense/kernel", shape=(3, 2))
        else:
            # The initial value is computed after writing a file: running it writes.
            with tf.control_dependencies([tf.io.write_file(str(marker), "ran")]):
                initial = tf.zeros((3, 2))
            tf.compat.v1.get_variable("dense/kernel", initializer=initial)
        tf.compat.v1.train.export_meta_graph(str(path))
    return path


@pytest.fixture
def source(tf: Any, tmp_path: Path) -> Path:
    return tf_save(tf, tmp_path / "src" / "model.ckpt", {"dense/kernel": np.ones((3, 2), "f4")})


def test_an_initialiser_that_writes_a_file_is_never_run(
    tf: Any, source: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    meta = _meta(tf, tmp_path / "hostile.meta", marker)
    assert ckptmigrate.check(source, meta).ok  # check reads the graph, runs nothing
    with pytest.raises(CkptMigrateError, match="WriteFile") as error:
        ckptmigrate.convert(source, None, tmp_path / "out", target=meta)
    assert "will not run them" in str(error.value)
    assert not marker.exists()
    assert not (tmp_path / "out").exists()


def test_a_plain_graph_is_still_initialised_and_converted(
    tf: Any, source: Path, tmp_path: Path
) -> None:
    meta = _meta(tf, tmp_path / "plain.meta", None)
    result = ckptmigrate.convert(source, None, tmp_path / "out", target=meta, verify=True)
    assert result.verification is not None
    assert result.verification.ok
