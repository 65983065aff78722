"""Every output kind is published with the modes a plain ``open()`` / ``mkdir`` gets under
the umask, so a serving job running as another user can read it (tempfile's 0600 / 0700
would lock it out)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import tf_save
from models import keras3_model

from ckptmigrate import check, rewrite_checkpoint, suggest
from ckptmigrate.errors import OutputError
from ckptmigrate.formats.keras_weights import write_keras_archive, write_weights_h5
from ckptmigrate.fs import staged_file
from ckptmigrate.html_report import write_html
from ckptmigrate.suggestion import write_map
from ckptmigrate.targets.keras_layout import keras_layout

UMASK = 0o027  # unusual on purpose: neither tempfile's modes nor the common 022


@pytest.fixture
def umask() -> Iterator[int]:
    previous = os.umask(UMASK)
    try:
        yield UMASK
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def assert_plain_modes(root: Path, umask: int) -> None:
    paths = [root, *root.rglob("*")] if root.is_dir() else [root]
    for path in paths:
        expected = (0o777 if path.is_dir() else 0o666) & ~umask
        assert mode(path) == expected, f"{path}: {oct(mode(path))} != {oct(expected)}"


@pytest.fixture
def checkpoint(tf: Any, tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    return tf_save(
        tf,
        tmp_path / "src" / "model.ckpt",
        {"dense/kernel": rng.standard_normal((3, 4)).astype("f4"), "dense/bias": np.ones(4, "f4")},
    )


def test_checkpoint_directories_and_their_files(
    checkpoint: Path, tmp_path: Path, umask: int
) -> None:
    out = tmp_path / "out"
    rewrite_checkpoint(checkpoint, out)
    assert_plain_modes(out, umask)
    # Replacing keeps the same modes (the staged directory is what lands).
    rewrite_checkpoint(checkpoint, out, overwrite=True)
    assert_plain_modes(out, umask)


def test_suggested_map_and_html_report(checkpoint: Path, tmp_path: Path, umask: int) -> None:
    assert_plain_modes(write_map(suggest(checkpoint, checkpoint), tmp_path / "map.yaml"), umask)
    assert_plain_modes(write_html(check(checkpoint, checkpoint), tmp_path / "r.html"), umask)


def test_keras_weights_and_archive(tmp_path: Path, umask: int) -> None:
    model = keras3_model(train=False)
    model.save(tmp_path / "template.keras")
    with keras_layout(model) as layout:
        weights = write_weights_h5(
            layout, lambda entry: np.zeros(entry.shape, entry.dtype), tmp_path / "w.weights.h5"
        )
    assert_plain_modes(weights, umask)
    archive = write_keras_archive(tmp_path / "template.keras", weights, tmp_path / "new.keras")
    assert_plain_modes(archive, umask)


def test_staged_file_leaves_nothing_on_failure_and_refuses_existing(tmp_path: Path) -> None:
    out = tmp_path / "x.txt"

    def fail_midway() -> None:
        with staged_file(out, overwrite=False) as staged:
            staged.write_text("half")
            raise RuntimeError

    with pytest.raises(RuntimeError):
        fail_midway()
    assert list(tmp_path.iterdir()) == []
    with staged_file(out, overwrite=False) as staged:
        staged.write_text("whole")
    assert out.read_text() == "whole"
    with pytest.raises(OutputError) as error, staged_file(out, overwrite=False):
        pass
    # The API names its own keyword; the CLI spells the same hint with its flag.
    assert "overwrite=True" in str(error.value)
    assert "--force" in error.value.render({"overwrite": "--force"})
    assert out.read_text() == "whole"
    assert [p.name for p in tmp_path.iterdir()] == ["x.txt"]
