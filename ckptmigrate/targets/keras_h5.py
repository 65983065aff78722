"""Keras weight files as targets: Keras 3 ``.weights.h5`` and legacy tf-keras ``.h5``, named
and read with h5py by ``formats/keras_h5.py`` (as when they are a source); a full legacy
model is loaded with Keras where it can be. A ``.keras`` archive is loaded with Keras and
inventoried as a model.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import CkptMigrateError
from ..formats.keras_h5 import KERAS3_NOTE, H5Listing, list_keras_h5
from ..inventory import Inventory, Scheme, VariableSpec
from ..names import Role

_ROLES = {"model": Role.MODEL, "optimizer": Role.OPTIMIZER, "step": Role.STEP}


def _inventory(path: Path, listing: H5Listing) -> Inventory:
    variables = {
        w.key: VariableSpec(w.key, w.shape, w.dtype, _ROLES[w.role], w.original)
        for w in listing.weights
    }
    if listing.legacy:
        note = (
            "legacy Keras .h5: compared as tf-keras model.load_weights(CKPT) restores into the "
            "model it holds, by object path (layer_with_weights-N/<weight>), inferred from the "
            "layers' order"
        )
        return Inventory("keras", str(path), Scheme.TF2, variables, (note,))
    return Inventory("keras", str(path), Scheme.KERAS3, variables, (KERAS3_NOTE,))


def _load_legacy_model(path: Path, keras3: bool) -> tuple[Any, str | None]:
    """The full model a legacy ``.h5`` holds, loaded with the Keras that wrote it (tf-keras,
    or Keras 3 for an ``.h5`` Keras 3 saved), or why it could not be."""
    from .._tf import import_tf_keras, tf_keras_safe_mode

    if keras3:
        try:
            return load_keras_model(path), None
        except CkptMigrateError as e:
            return None, e.message
    try:
        tf_keras = import_tf_keras()
        # A Lambda layer's marshalled Python ran on load: `check --target old.h5` executed
        # code from the file. Refused here, the model's paths are inferred instead.
        with tf_keras_safe_mode():
            return tf_keras.models.load_model(str(path), compile=False), None
    except CkptMigrateError as e:
        return None, e.message
    except Exception as e:  # custom layers, a newer format: Keras says which
        return None, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"


def _legacy_model(path: Path, inferred: Inventory, keras3: bool) -> Inventory:
    """A full legacy ``.h5`` model: its keys as TensorFlow saves the model Keras loads, so
    exactly what ``load_model(h5).load_weights(CKPT)`` looks up; the inferred paths when
    Keras cannot load it (said in a note)."""
    from .live import inventory_of_object

    loader = "Keras 3" if keras3 else "tf-keras"
    model, failure = _load_legacy_model(path, keras3)
    if model is None:
        note = f"{loader} could not load the model ({failure}); object paths were inferred"
        return replace(inferred, notes=(*inferred.notes, note))
    loaded = inventory_of_object(model, str(path))
    note = (
        f"legacy Keras .h5 model, loaded with {loader}: keys are what "
        "tf.train.Checkpoint(<model>) restores"
        + ("" if keras3 else " (tf-keras model.load_weights(CKPT))")
    )
    return replace(loaded, kind="keras", notes=(note,))


def load_keras_h5(path: Path) -> Inventory:
    listing = list_keras_h5(path)
    inventory = _inventory(path, listing)
    return _legacy_model(path, inventory, listing.keras3_wrote) if listing.full_model else inventory


def load_keras_model(path: Path) -> Any:
    """A `.keras` archive as a live Keras model (architecture and values)."""
    from .._tf import import_keras

    keras = import_keras()
    try:
        return keras.saving.load_model(str(path), compile=False)
    except Exception as e:
        raise CkptMigrateError(
            f"Keras cannot load this model: {type(e).__name__}: {str(e).splitlines()[0]}",
            path=path,
            hint="custom layers must be importable; a builder function can construct it.",
        ) from e


def load_keras_archive(path: Path, *, keras_weights: bool = False) -> Inventory:
    """The model a ``.keras`` file holds, as a target (``keras_weights``: as for
    :func:`~ckptmigrate.targets.live.inventory_of_object`)."""
    from .live import inventory_of_object

    model = load_keras_model(path)
    return replace(inventory_of_object(model, str(path), keras_weights=keras_weights), kind="keras")
