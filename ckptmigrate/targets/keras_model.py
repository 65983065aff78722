"""A Keras 3 model as ``model.load_weights`` sees it, on any backend.

Keras 3 keeps a model's weights in a ``.weights.h5`` (alone, or inside a ``.keras``
archive) by the dataset paths its saving walk gives them (``layers/dense_1/vars/0``), and
``load_weights`` reads them back by the same paths on every backend (TensorFlow, JAX,
PyTorch, NumPy). Those paths are the target's keys here, found by Keras itself
(:func:`~ckptmigrate.targets.keras_layout.keras_layout`), and each variable's ``path``
(``sequential/dense/kernel``) is its original name. No TensorFlow is imported: on the
JAX, PyTorch and NumPy backends these are the only keys the model restores by.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._tf import keras_backend
from ..inventory import Inventory, Scheme, VariableSpec
from ..names import Role

if TYPE_CHECKING:
    from ..formats.keras_weights import KerasLayout

__all__ = ["keras_weights_inventory", "layout_inventory", "on_tensorflow"]


def on_tensorflow() -> bool:
    """Whether TensorFlow holds Keras 3 models' variables in this process (Keras has one
    backend per process, fixed at import), so ``tf.train.Checkpoint`` can save and restore
    them as well as ``load_weights``."""
    return keras_backend() == "tensorflow"


def layout_inventory(
    layout: KerasLayout,
    kind: str,
    source: str,
    notes: tuple[str, ...],
    aliases: dict[str, tuple[str, ...]] | None = None,
) -> Inventory:
    """The inventory of a model's ``.weights.h5`` layout: one variable per dataset, named
    by its path in the file, its variable's path as the original name; ``aliases`` (by
    variable path) the checkpoint keys the same variable has, when known."""
    aliases = aliases or {}
    variables = {
        e.h5_path: VariableSpec(
            e.h5_path,
            e.shape,
            e.dtype,
            Role.OPTIMIZER if e.h5_path.startswith("optimizer/") else Role.MODEL,
            e.variable_path,
            aliases.get(e.variable_path, ()),
        )
        for e in layout.entries
    }
    return Inventory(kind, source, Scheme.KERAS3, variables, notes)


def keras_weights_inventory(model: Any, source: str, kind: str = "model") -> Inventory:
    """What ``model.load_weights(file)`` looks up in a ``.weights.h5`` or ``.keras`` file.

    Raises:
        CkptMigrateError: not a built Keras 3 model, or Keras cannot save its weights.
    """
    from .keras_layout import keras_layout

    backend = keras_backend()
    note = (
        "Keras 3 weight paths, found by saving the target with Keras: model.load_weights "
        "reads a .weights.h5 or .keras file by these paths"
    )
    if backend != "tensorflow":
        note += (
            f" (the {backend} backend: the model restores Keras weight files, not "
            "TensorFlow checkpoints)"
        )
    with keras_layout(model) as layout:
        return layout_inventory(layout, kind, source, (note,))
