"""A checkpoint as an inventory (either side of a comparison), read without TensorFlow."""

from __future__ import annotations

from pathlib import Path

from ..checkpoint import Checkpoint, open_checkpoint
from ..inventory import Inventory, Scheme, VariableSpec


def inventory_of(
    checkpoint: Checkpoint, kind: str = "checkpoint", source: str | None = None
) -> Inventory:
    variables = {}
    for key in checkpoint.reader.variable_keys():
        info = checkpoint.reader.info(key)
        aliases = tuple(a for a in checkpoint.aliases.get(key, ()) if a != key)
        variables[key] = VariableSpec(
            key,
            info.shape,
            info.dtype.name,
            checkpoint.role(key),
            checkpoint.original_names.get(key),
            aliases,
        )
    scheme = Scheme.TF2 if checkpoint.is_object_based else Scheme.TF1
    notes = checkpoint.location.notes
    return Inventory(kind, source or str(checkpoint.location.given), scheme, variables, notes)


def load_checkpoint_inventory(path: str | Path, kind: str = "checkpoint") -> Inventory:
    with open_checkpoint(path) as checkpoint:
        return inventory_of(checkpoint, kind, str(path))
