"""A path that is not a checkpoint is answered with what is there instead (issue 10.7)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ckptmigrate import CheckpointNotFoundError, open_checkpoint


def _diagnosis(path: Path) -> str:
    with pytest.raises(CheckpointNotFoundError) as error:
        open_checkpoint(path)
    return str(error.value)


def test_a_tf_serving_base_directory_names_its_versions(tmp_path: Path) -> None:
    for version in ("1", "12", "3"):
        (tmp_path / version / "variables").mkdir(parents=True)
        (tmp_path / version / "saved_model.pb").write_bytes(b"")
    text = _diagnosis(tmp_path)
    assert "TF Serving model base directory" in text
    assert "1, 3, 12" in text
    assert str(tmp_path / "12") in text  # the latest, to pass


def test_checkpoints_one_level_down_are_pointed_at(tmp_path: Path) -> None:
    (tmp_path / "run1").mkdir()
    (tmp_path / "run1" / "model.ckpt-5.index").write_bytes(b"")
    assert "subdirectories run1 hold checkpoints" in _diagnosis(tmp_path)


def test_a_directory_of_graphs_says_the_values_are_missing(tmp_path: Path) -> None:
    (tmp_path / "model.ckpt-9.meta").write_bytes(b"")
    (tmp_path / "graph.pbtxt").write_text("")
    text = _diagnosis(tmp_path)
    assert "holds only graphs (graph.pbtxt, model.ckpt-9.meta)" in text
    assert "target" in text


def test_an_empty_directory_says_so_and_others_list_what_they_hold(tmp_path: Path) -> None:
    assert "it is empty" in _diagnosis(tmp_path)
    (tmp_path / "notes.txt").write_text("x")
    assert "it holds notes.txt" in _diagnosis(tmp_path)


def test_a_missing_file_is_a_missing_file(tmp_path: Path) -> None:
    (tmp_path / "model.ckpt-1.meta").write_bytes(b"")
    text = _diagnosis(tmp_path / "nothere.meta")
    assert ": no such file" in text
    assert "no checkpoint at this path" not in text
    assert "model.ckpt-1.meta" not in _diagnosis(tmp_path / "missing" / "x.meta")
