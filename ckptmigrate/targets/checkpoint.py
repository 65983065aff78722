"""A checkpoint as an inventory (either side of a comparison), read without TensorFlow."""

from __future__ import annotations

from pathlib import Path

from .. import dtypes
from ..checkpoint import Checkpoint, open_checkpoint
from ..formats.bundle_reader import BundleReader
from ..formats.protowire import paused_gc
from ..inventory import Inventory, Scheme, VariableSpec


def inventory_of(
    checkpoint: Checkpoint, kind: str = "checkpoint", source: str | None = None
) -> Inventory:
    reader = checkpoint.reader
    all_aliases = checkpoint.aliases
    original_names = checkpoint.original_names
    # A V2 index entry holds the shape and dtype that reader.info would wrap in a TensorInfo
    # per key: read them directly (10,000-variable checkpoints are listed twice per check).
    entries = reader.entries if isinstance(reader, BundleReader) else None
    dtype_names: dict[int, str] = {}
    variables = {}
    keys = reader.variable_keys()
    with paused_gc():
        for key, role in zip(keys, checkpoint.roles(keys), strict=True):
            if entries is not None:
                entry = entries[key]
                shape = entry.shape
                dtype = dtype_names.get(entry.dtype)
                if dtype is None:
                    dtype = dtype_names[entry.dtype] = dtypes.from_enum(entry.dtype).name
            else:
                info = reader.info(key)
                shape, dtype = info.shape, info.dtype.name
            found = all_aliases.get(key)
            # Most variables are reachable only by their key's own path: no aliases.
            if found and (len(found) > 1 or found[0] != key):
                aliases = tuple(a for a in found if a != key)
            else:
                aliases = ()
            variables[key] = VariableSpec(
                key,
                shape,
                dtype,
                role,
                original_names.get(key),
                aliases,
            )
    scheme = Scheme.TF2 if checkpoint.is_object_based else Scheme.TF1
    if reader.format == "keras_h5":  # object paths, or a Keras 3 file's positions
        from ..formats.keras_h5 import KerasH5Reader  # only here: HDF5 costs start-up time

        assert isinstance(reader, KerasH5Reader)
        scheme = Scheme.TF2 if reader.listing.legacy else Scheme.KERAS3
    notes = checkpoint.location.notes
    return Inventory(
        kind,
        source or str(checkpoint.location.given),
        scheme,
        variables,
        notes,
        checkpoint_format=checkpoint.location.format,
    )


def load_checkpoint_inventory(path: str | Path, kind: str = "checkpoint") -> Inventory:
    with open_checkpoint(path) as checkpoint:
        return inventory_of(checkpoint, kind, str(path))
