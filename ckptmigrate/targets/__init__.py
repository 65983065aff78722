"""Resolve ``--target`` (or a live object) into an Inventory. One loader per kind; detection
ends in an error listing what was tried, never in a fall-through."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import CheckpointNotFoundError, CkptMigrateError
from ..formats.remote import is_url
from ..inventory import Inventory
from .checkpoint import load_checkpoint_inventory
from .keras_h5 import load_keras_archive, load_keras_h5
from .live import inventory_of_object, is_builder_spec, load_builder
from .metagraph import load_metagraph
from .spec import SPEC_SUFFIXES, load_spec

TRIED = (
    "a checkpoint (directory, prefix, .index/.data file)",
    "a TF1 .meta graph",
    "a SavedModel directory",
    "a Keras .keras/.weights.h5/.h5 file",
    "a builder (pkg.module:function or file.py:function)",
    "a spec file (.yaml/.json)",
)


def load_target(target: str | Path | Any) -> Inventory:
    """The inventory of what a restore into ``target`` needs."""
    if not isinstance(target, str | Path):
        return inventory_of_object(target)
    if isinstance(target, str) and is_url(target):  # Path() would fold the '//' of s3://
        if target.lower().endswith((".meta", ".keras", ".h5", ".hdf5", *SPEC_SUFFIXES)):
            raise CkptMigrateError(
                "only checkpoints (and SavedModels' variables) are read from URLs as targets",
                path=target,
                hint="download the file and pass its local path.",
            )
        return load_checkpoint_inventory(target)
    text = str(target)
    path = Path(text).expanduser()
    if not path.exists() and is_builder_spec(text):
        return load_builder(text)
    name = path.name.lower()
    if path.is_file():
        if name.endswith(SPEC_SUFFIXES):
            return load_spec(path)
        if name.endswith(".meta"):
            return load_metagraph(path)
        if name.endswith(".keras"):
            return load_keras_archive(path)
        if name.endswith((".h5", ".hdf5")):
            return load_keras_h5(path)
    if path.is_dir() and (path / "saved_model.pb").is_file():
        if not (path / "variables" / "variables.index").is_file():
            raise CkptMigrateError("this SavedModel has no variables to restore", path=path)
        return load_checkpoint_inventory(path, kind="saved_model")
    try:
        return load_checkpoint_inventory(path, kind="checkpoint")
    except CheckpointNotFoundError as e:
        raise CkptMigrateError(
            f"cannot use this as a target: {e.message}",
            path=path,
            hint=f"a target is one of: {'; '.join(TRIED)}.",
        ) from e
