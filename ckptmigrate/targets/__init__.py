"""Resolve ``--target`` (or a live object) into an Inventory. One loader per kind; detection
ends in an error listing what was tried, never in a fall-through."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import CheckpointNotFoundError, CkptMigrateError
from ..inventory import Inventory
from .checkpoint import load_checkpoint_inventory
from .detect import TargetKind, detect_target

# Each loader is imported in its branch: a checkpoint-vs-checkpoint check (the common,
# latency-sensitive case) then loads none of the HDF5, graph, spec or live-object readers.


def load_target(target: str | Path | Any, *, keras_weights: bool = False) -> Inventory:
    """The inventory of what a restore into ``target`` needs.

    ``keras_weights``: the checkpoint is a Keras 3 weights file (``.weights.h5``,
    ``.keras``), so a Keras 3 model target restores it with ``load_weights``, by its
    ``.weights.h5`` paths (on the JAX, PyTorch and NumPy backends it always does).

    Raises:
        CkptMigrateError: the target cannot be read, or is none of the kinds a target is.
    """
    detected = detect_target(target)
    path = detected.path
    match detected.kind:
        case TargetKind.LIVE:
            from .live import inventory_of_object

            return inventory_of_object(target, keras_weights=keras_weights)
        case TargetKind.BUILDER:
            from .live import load_builder

            return load_builder(str(target), keras_weights=keras_weights)
        case TargetKind.SPEC:
            assert path is not None
            from .spec import load_spec

            return load_spec(path)
        case TargetKind.GRAPH_TEXT:
            assert path is not None
            from .graph_text import load_graph_text

            return load_graph_text(path)
        case TargetKind.METAGRAPH:
            assert path is not None
            from .metagraph import load_metagraph

            return load_metagraph(path)
        case TargetKind.KERAS_ARCHIVE:
            assert path is not None
            from .keras_h5 import load_keras_archive

            return load_keras_archive(path, keras_weights=keras_weights)
        case TargetKind.KERAS_H5:
            assert path is not None
            from .keras_h5 import load_keras_h5

            return load_keras_h5(path)
        case TargetKind.SAVED_MODEL:
            assert path is not None
            if not (path / "variables" / "variables.index").is_file():
                raise CkptMigrateError("this SavedModel has no variables to restore", path=path)
            return load_checkpoint_inventory(path, kind="saved_model")
        case TargetKind.CHECKPOINT:
            if path is None:  # a URL
                return load_checkpoint_inventory(str(target))
            try:
                return load_checkpoint_inventory(path, kind="checkpoint")
            except CheckpointNotFoundError as e:
                kinds = "; ".join(k.value for k in TargetKind if k is not TargetKind.LIVE)
                raise CkptMigrateError(
                    f"cannot use this as a target: {e.message}",
                    path=path,
                    hint=f"a target is one of: {kinds}.",
                ) from e
